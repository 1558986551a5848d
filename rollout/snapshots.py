"""Building the immutable policy snapshot the gate evaluates."""

from core.hooks import Hook
from rollout.models import Agent
from rollout.policy import DEFAULT_APPROVAL_MATRIX, DEFAULT_RISK_RULES

# Who holds which per-agent right is governed like the rest of the policy and versioned with
# it, but access grants (and the escalation route, stored by approvals) belong to the
# governance workflow above: it answers here (``governance.apps``).
current_access = Hook(
    "current_access",
    """current_access(agent) -> {right: {"user:<name>" | "group:<name>": True}}: the
    agent's per-agent grants right now, every right present (maybe empty); answered by
    ``governance.access.live_access``.""",
)


def build_snapshot(agent: Agent) -> dict:
    """Everything ``rollout.policy.evaluate`` needs about ``agent``, as plain data, and who
    holds which per-agent right (``access``: versioned with the policy, ignored by the
    gate). ``environments`` ({name: {"tier"?, "tools"?}}) is present only when the agent's
    policy differs in some environment (``rollout.policy.effective_snapshot``)."""
    snapshot = {
        "agent": {
            "slug": agent.slug,
            "active": agent.active,
            "rate_limit_per_minute": agent.rate_limit_per_minute,
        },
        "tier": agent.tier.as_policy(),
        "tools": {rule.tool: rule.as_policy() for rule in agent.tool_rules.order_by("tool")},
        "risk_rules": dict(DEFAULT_RISK_RULES),
        "approval_matrix": dict(DEFAULT_APPROVAL_MATRIX),
        "access": current_access(agent),
    }
    overrides = {
        override.environment: override.as_policy()
        for override in agent.environment_overrides.select_related("tier").order_by("environment")
    }
    overrides = {environment: policy for environment, policy in overrides.items() if policy}
    if overrides:
        # Only when some environment differs: snapshots of agents without overrides stay
        # as they were, so their policy versions compare equal.
        snapshot["environments"] = overrides
    return snapshot
