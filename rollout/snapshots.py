"""Building the immutable policy snapshot the gate evaluates."""

from rollout.access import live_access
from rollout.models import Agent
from rollout.policy import DEFAULT_APPROVAL_MATRIX, DEFAULT_RISK_RULES


def build_snapshot(agent: Agent) -> dict:
    """Everything ``rollout.policy.evaluate`` needs about ``agent``, as plain data, and who
    holds which per-agent right (``access``: versioned with the policy, ignored by the
    gate)."""
    return {
        "agent": {
            "slug": agent.slug,
            "active": agent.active,
            "rate_limit_per_minute": agent.rate_limit_per_minute,
        },
        "tier": agent.tier.as_policy(),
        "tools": {rule.tool: rule.as_policy() for rule in agent.tool_rules.order_by("tool")},
        "risk_rules": dict(DEFAULT_RISK_RULES),
        "approval_matrix": dict(DEFAULT_APPROVAL_MATRIX),
        "access": live_access(agent),
    }
