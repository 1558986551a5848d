"""In-process decision time: ``rollout.policy.evaluate`` versus Cedar (``cedarpy``) for an
equivalent policy set, both working from the same agent snapshot, both timed the same way
(a plain loop of single decisions, after a warm-up).

The Cedar side is generated from the snapshot, data-driven like ours: one entity for the
agent (active flag, rate limit, its tier's outcome per effect) and one per tool rule
(effect, rule, an amount limit when the rule has ``amount <= N``); the policies forbid
inactive agents, forbidden tools, broken amount limits and rate-limited calls, and permit
by rule and tier — the permitting policy's ``@id`` tells ``allowed`` from ``pending``
(requires approval). Unknown tools are Cedar's default deny. The policy set and the
entities are parsed once and reused as handles.

Cedar does less than ours per decision: it does not assess risk from the blast radius,
pick the approval quorum, nor the expiry; it answers allow/deny plus the matching
policies. Both include building the request and reading the answer into an outcome.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from rollout.policy import Counters, GateRequest, evaluate

CEDAR_POLICIES = """
@id("agent_inactive")
forbid (principal, action, resource) unless { principal.active };

@id("tool_forbidden")
forbid (principal, action == Action::"call", resource)
when { resource.rule == "forbidden" };

@id("argument_limit")
forbid (principal, action == Action::"call", resource)
when {
    resource has max_amount &&
    !(context has amount && context.amount.lessThanOrEqual(resource.max_amount))
};

@id("rate_limited")
forbid (principal, action, resource)
when { context.agent_last_minute >= principal.rate_limit_per_minute };

@id("allowed")
permit (principal, action == Action::"call", resource)
when {
    resource.agent == principal && resource.rule == "allowed" &&
    ((resource.effect == "read" && principal.tier_read == "allow") ||
     (resource.effect == "draft" && principal.tier_draft == "allow") ||
     (resource.effect == "write" && principal.tier_write == "allow"))
};

@id("tier_requires_approval")
permit (principal, action == Action::"call", resource)
when {
    resource.agent == principal && resource.rule == "allowed" &&
    ((resource.effect == "read" && principal.tier_read == "pending") ||
     (resource.effect == "draft" && principal.tier_draft == "pending") ||
     (resource.effect == "write" && principal.tier_write == "pending"))
};

@id("requires_approval")
permit (principal, action == Action::"call", resource)
when {
    resource.agent == principal && resource.rule == "requires_approval" &&
    (principal.tier_write == "pending" || principal.tier_write == "auto")
};
"""
PENDING_POLICY_IDS = {"requires_approval", "tier_requires_approval"}


def _cedar_decimal(value: Any) -> dict:
    """A Cedar ``decimal`` (at most 4 fraction digits) as a JSON extension escape."""
    text = format(Decimal(str(value)).quantize(Decimal("0.0001")), "f")
    return {"__extn": {"fn": "decimal", "arg": text}}


def cedar_entities(snapshot: dict) -> list[dict]:
    agent = snapshot["agent"]
    outcomes = snapshot["tier"]["outcomes"]
    slug = agent["slug"]
    entities = [
        {
            "uid": {"type": "Agent", "id": slug},
            "attrs": {
                "active": bool(agent.get("active", True)),
                "rate_limit_per_minute": int(agent.get("rate_limit_per_minute") or 2**62),
                "tier": snapshot["tier"]["name"],
                "tier_read": outcomes["read"],
                "tier_draft": outcomes["draft"],
                "tier_write": outcomes["write"],
            },
            "parents": [],
        }
    ]
    for tool, rule in snapshot["tools"].items():
        attrs: dict[str, Any] = {
            "agent": {"__entity": {"type": "Agent", "id": slug}},
            "effect": rule["effect"],
            "rule": rule["rule"],
        }
        for limit in rule.get("argument_limits") or []:
            if limit.get("field") == "amount" and limit.get("op") == "<=":
                attrs["max_amount"] = _cedar_decimal(limit["value"])
        entities.append(
            {"uid": {"type": "Tool", "id": f"{slug}/{tool}"}, "attrs": attrs, "parents": []}
        )
    return entities


class CedarGate:
    """Cedar deciding the same calls, with the policy set and entities parsed once."""

    def __init__(self, snapshot: dict) -> None:
        import cedarpy

        self.cedarpy = cedarpy
        self.slug = snapshot["agent"]["slug"]
        self.policies = cedarpy.PolicySet.from_str(CEDAR_POLICIES)
        self.entities = cedarpy.Entities.from_json_str(json.dumps(cedar_entities(snapshot)))

    def request(self, tool: str, arguments: dict, counters: Counters) -> dict:
        context: dict[str, Any] = {"agent_last_minute": counters.agent_last_minute}
        amount = arguments.get("amount")
        if isinstance(amount, int | float) and not isinstance(amount, bool):
            context["amount"] = _cedar_decimal(amount)
        return {
            "principal": f'Agent::"{self.slug}"',
            "action": 'Action::"call"',
            "resource": {"type": "Tool", "id": f"{self.slug}/{tool}"},
            "context": context,
        }

    def outcome(self, result: Any) -> str:
        if not result.allowed:
            return "denied"
        names = result.diagnostics.id_annotations_by_reason.values()
        return "pending" if PENDING_POLICY_IDS.intersection(names) else "allowed"

    def decide(self, tool: str, arguments: dict, counters: Counters) -> str:
        result = self.cedarpy.is_authorized(
            self.request(tool, arguments, counters), self.policies, self.entities
        )
        return self.outcome(result)

    def decide_batch(self, requests: list[dict]) -> list[str]:
        results = self.cedarpy.is_authorized_batch(requests, self.policies, self.entities)
        return [self.outcome(r) for r in results]


# The two timed decisions, plus cases only checked for agreement.
READ_ARGS = {"order_id": "ORD-7711"}
REFUND_ARGS = {"order_id": "ORD-7711", "amount": 42.18, "currency": "EUR", "reason": "late"}
REFUND_RADIUS = {
    "environment": "production",
    "reversible": True,
    "amount": {"value": 42.18, "currency": "EUR"},
    "users_affected": 1,
}
AGREEMENT_CASES = [
    ("get_order_status", READ_ARGS, {}),
    ("create_refund_request", REFUND_ARGS, REFUND_RADIUS),
    ("create_refund_request", {**REFUND_ARGS, "amount": 20000}, {}),
    ("create_refund_request", {"order_id": "ORD-1"}, {}),
    ("approve_refund", {"order_id": "ORD-1"}, {}),
    ("delete_customer_record", {"id": 1}, {}),
    ("send_email", {"to": "a@example.com"}, {}),
    ("create_ticket_draft", {"title": "x"}, {}),
    ("no_such_tool", {}, {}),
]


def _per_call_us(fn: Callable[[], Any], calls: int) -> float:
    for _ in range(min(2000, calls)):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def run(snapshot: dict, calls: int = 100_000) -> dict:
    """Time both engines; returns every figure (µs per decision) and the agreement check."""
    cedar = CedarGate(snapshot)
    no_counters = Counters()

    disagreements = []
    for tool, args, radius in AGREEMENT_CASES:
        ours = evaluate(snapshot, GateRequest(tool, args, radius), [], no_counters).outcome
        theirs = cedar.decide(tool, args, no_counters)
        if ours != theirs:
            disagreements.append(f"{tool} {args}: ours {ours}, cedar {theirs}")
    over = Counters(agent_last_minute=10**12)
    if cedar.decide("get_order_status", READ_ARGS, over) != "denied":
        disagreements.append("cedar ignores the rate limit")

    read_request = GateRequest("get_order_status", READ_ARGS, {})
    refund_request = GateRequest("create_refund_request", REFUND_ARGS, REFUND_RADIUS)
    assert evaluate(snapshot, read_request, [], no_counters).outcome == "allowed"
    assert evaluate(snapshot, refund_request, [], no_counters).outcome == "pending"

    figures: dict[str, Any] = {"calls": calls, "disagreements": disagreements}
    figures["ours_read_us"] = _per_call_us(
        lambda: evaluate(snapshot, read_request, [], no_counters), calls
    )
    figures["ours_refund_us"] = _per_call_us(
        lambda: evaluate(snapshot, refund_request, [], no_counters), calls
    )
    figures["cedar_read_us"] = _per_call_us(
        lambda: cedar.decide("get_order_status", READ_ARGS, no_counters), calls
    )
    figures["cedar_refund_us"] = _per_call_us(
        lambda: cedar.decide("create_refund_request", REFUND_ARGS, no_counters), calls
    )
    # Cedar's best case: many requests per call into Rust (not how a gate decides one call).
    batch = 1000
    read_batch = [cedar.request("get_order_status", READ_ARGS, no_counters)] * batch
    refund_batch = [cedar.request("create_refund_request", REFUND_ARGS, no_counters)] * batch
    rounds = max(1, calls // batch // 2)
    figures["cedar_batch_read_us"] = (
        _per_call_us(lambda: cedar.decide_batch(read_batch), rounds) / batch
    )
    figures["cedar_batch_refund_us"] = (
        _per_call_us(lambda: cedar.decide_batch(refund_batch), rounds) / batch
    )
    return figures
