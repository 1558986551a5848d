"""The gate's decision, as a pure function.

``evaluate(snapshot, request, switches, counters)`` decides one tool call from data only:
the agent's policy snapshot (``rollout.snapshots.build_snapshot``), the engaged kill
switches in scope, and the recent call counters. No database, no clock, no I/O — so it is
testable on its own, replayable against any policy version, and fast.

Order of evaluation (first match wins), each with its reason code:
kill_switch → agent_inactive → tool_forbidden → tool_unknown → argument_limit →
rate_limited → the rule and tier table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

RISKS = ("low", "medium", "high", "critical")
PROBE_TOOL = "airlock.probe"  # the drill probe: only drill switches match it

DEFAULT_RISK_RULES: dict[str, Any] = {
    "production_environments": ["production", "prod"],
    "production_min": "medium",
    "irreversible_min": "high",
    "high_amount": 1000,
    "high_count": 100,
    "critical_amount": 10000,
    "critical_count": 10000,
}

DEFAULT_APPROVAL_MATRIX: dict[str, dict[str, Any]] = {
    "low": {"approvals": 1, "critical_approver": False},
    "medium": {"approvals": 1, "critical_approver": False},
    "high": {"approvals": 2, "critical_approver": False},
    "critical": {"approvals": 2, "critical_approver": True},
}

DEFAULT_PENDING_TTL_SECONDS = {"low": 86400, "medium": 28800, "high": 14400, "critical": 3600}

LIMIT_OPERATORS = ("<=", "<", ">=", ">", "==", "!=", "in", "not_in", "max_length", "matches")


@dataclass(frozen=True)
class GateRequest:
    tool: str
    arguments: dict
    blast_radius: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SwitchState:
    id: int
    scope: str  # global | agent | tool
    target: str
    is_drill: bool = False


@dataclass(frozen=True)
class Counters:
    """Gate calls made in the last minute, before this one."""

    agent_last_minute: int = 0
    tool_last_minute: int = 0


@dataclass(frozen=True)
class GateDecision:
    outcome: str  # allowed | denied | shadowed | pending
    reason_code: str
    reasons: list[str]
    risk: str
    effect: str = ""
    required_approvals: int = 0
    needs_critical_approver: bool = False
    ttl_seconds: int | None = None
    switch_id: int | None = None


def risk_at_least(current: str, floor: str) -> str:
    return RISKS[max(RISKS.index(current), RISKS.index(floor))]


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def assess_risk(
    base_risk: str, blast_radius: dict, rules: dict | None = None
) -> tuple[str, list[str]]:
    """The tool's base risk, raised (never lowered) by the declared blast radius."""
    rules = {**DEFAULT_RISK_RULES, **(rules or {})}
    risk = base_risk if base_risk in RISKS else "high"
    why: list[str] = []
    radius = blast_radius if isinstance(blast_radius, dict) else {}

    environment = str(radius.get("environment") or "").strip().lower()
    if environment in {e.lower() for e in rules["production_environments"]}:
        raised = risk_at_least(risk, rules["production_min"])
        if raised != risk:
            why.append(f"production environment raises risk to {raised}")
        risk = raised
    if radius.get("reversible") is False:
        raised = risk_at_least(risk, rules["irreversible_min"])
        if raised != risk:
            why.append(f"irreversible action raises risk to {raised}")
        risk = raised

    amount = radius.get("amount")
    amount_value = _number(amount.get("value")) if isinstance(amount, dict) else _number(amount)
    counts = [
        n
        for n in (_number(radius.get("records_affected")), _number(radius.get("users_affected")))
        if n is not None
    ]
    largest_count = max(counts) if counts else None
    for level, amount_key, count_key in (
        ("critical", "critical_amount", "critical_count"),
        ("high", "high_amount", "high_count"),
    ):
        hit = (amount_value is not None and amount_value >= Decimal(str(rules[amount_key]))) or (
            largest_count is not None and largest_count >= Decimal(str(rules[count_key]))
        )
        if hit:
            raised = risk_at_least(risk, level)
            if raised != risk:
                why.append(
                    f"declared blast radius (amount or records/users affected) raises risk to {raised}"
                )
            risk = raised
            break
    return risk, why


def _lookup(arguments: dict, path: str) -> tuple[bool, Any]:
    current: Any = arguments
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        else:
            return False, None
    return True, current


def validate_limit(limit: Any) -> str | None:
    """Why ``limit`` is not a usable argument limit, or None when it is."""
    if not isinstance(limit, dict):
        return "an argument limit must be an object {field, op, value}"
    if not isinstance(limit.get("field"), str) or not limit["field"].strip():
        return "an argument limit needs a field name"
    op = limit.get("op")
    if op not in LIMIT_OPERATORS:
        return f"unknown operator {op!r}; use one of {', '.join(LIMIT_OPERATORS)}"
    value = limit.get("value")
    if op in {"<=", "<", ">=", ">", "max_length"} and _number(value) is None:
        return f"{op} needs a number"
    if op in {"in", "not_in"} and not isinstance(value, list):
        return f"{op} needs a list of values"
    if op == "matches":
        try:
            re.compile(str(value))
        except re.error as exc:
            return f"invalid pattern: {exc}"
    return None


def check_argument_limits(arguments: dict, limits: list[dict]) -> list[str]:
    """Every limit the arguments break, as readable reasons. A limited field that is
    missing, or of the wrong type, breaks its limit (fail closed)."""
    broken: list[str] = []
    for limit in limits or []:
        problem = validate_limit(limit)
        if problem:
            broken.append(f"unusable argument limit ({problem})")
            continue
        name, op, bound = limit["field"], limit["op"], limit["value"]
        present, value = _lookup(arguments, name)
        if not present:
            broken.append(f"argument {name!r} is required by its limit {op} {bound!r}")
            continue
        ok: bool
        if op in {"<=", "<", ">=", ">"}:
            number, limit_number = _number(value), _number(bound)
            if number is None:
                broken.append(f"argument {name!r} must be a number")
                continue
            ok = {
                "<=": number <= limit_number,
                "<": number < limit_number,
                ">=": number >= limit_number,
                ">": number > limit_number,
            }[op]
        elif op == "==":
            ok = _same(value, bound)
        elif op == "!=":
            ok = not _same(value, bound)
        elif op == "in":
            ok = any(_same(value, item) for item in bound)
        elif op == "not_in":
            ok = not any(_same(value, item) for item in bound)
        elif op == "max_length":
            ok = isinstance(value, str | list | dict) and len(value) <= int(_number(bound))
        else:  # matches
            ok = isinstance(value, str) and re.fullmatch(str(bound), value) is not None
        if not ok:
            broken.append(f"argument {name!r} must satisfy {op} {bound!r}")
    return broken


def _same(a: Any, b: Any) -> bool:
    """Equality for limits, where ``true`` is not ``1``."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _switch_applies(switch: SwitchState, slug: str, tool: str) -> bool:
    if switch.is_drill:
        return tool == PROBE_TOOL and switch.scope == "agent" and switch.target == slug
    if switch.scope == "global":
        return True
    if switch.scope == "agent":
        return switch.target == slug
    return switch.scope == "tool" and switch.target == tool


def evaluate(
    snapshot: dict,
    request: GateRequest,
    switches: list[SwitchState] | tuple[SwitchState, ...] = (),
    counters: Counters = Counters(),
) -> GateDecision:
    """Decide one tool call. See the module docstring for the order."""
    agent = snapshot["agent"]
    slug = agent["slug"]
    tool = request.tool
    tools: dict = snapshot.get("tools", {})
    rule = tools.get(tool)
    if tool == PROBE_TOOL and rule is None:
        rule = {"effect": "read", "rule": "allowed", "base_risk": "low", "argument_limits": []}
    base_risk = rule["base_risk"] if rule else "low"
    effect = rule["effect"] if rule else ""

    risk, risk_reasons = assess_risk(base_risk, request.blast_radius, snapshot.get("risk_rules"))

    def answer(outcome: str, code: str, reasons: list[str], **extra: Any) -> GateDecision:
        return GateDecision(outcome, code, reasons, risk, effect, **extra)

    for switch in switches:
        if _switch_applies(switch, slug, tool):
            where = "everything" if switch.scope == "global" else f"{switch.scope} {switch.target}"
            return answer(
                "denied", "kill_switch", [f"kill switch engaged on {where}"], switch_id=switch.id
            )
    if not agent.get("active", True):
        return answer("denied", "agent_inactive", [f"agent {slug} is inactive"])
    if rule and rule["rule"] == "forbidden":
        return answer("denied", "tool_forbidden", [f"tool {tool} is forbidden for {slug}"])
    if rule is None:
        return answer(
            "denied", "tool_unknown", [f"tool {tool} has no rule for {slug} (default deny)"]
        )
    broken = check_argument_limits(request.arguments, rule.get("argument_limits") or [])
    if broken:
        return answer("denied", "argument_limit", broken)
    agent_limit = agent.get("rate_limit_per_minute")
    if agent_limit is not None and counters.agent_last_minute >= agent_limit:
        return answer("denied", "rate_limited", [f"{slug} is over {agent_limit} calls per minute"])
    tool_limit = rule.get("rate_limit_per_minute")
    if tool_limit is not None and counters.tool_last_minute >= tool_limit:
        return answer("denied", "rate_limited", [f"{tool} is over {tool_limit} calls per minute"])

    tier = snapshot["tier"]
    outcomes = tier["outcomes"]
    matrix = {**DEFAULT_APPROVAL_MATRIX, **(snapshot.get("approval_matrix") or {})}
    ttls = {**DEFAULT_PENDING_TTL_SECONDS, **(tier.get("pending_ttl_seconds") or {})}

    def pending(code: str, reasons: list[str]) -> GateDecision:
        need = matrix[risk]
        return answer(
            "pending",
            code,
            reasons + risk_reasons,
            required_approvals=int(need["approvals"]),
            needs_critical_approver=bool(need["critical_approver"]),
            ttl_seconds=int(ttls[risk]),
        )

    tier_name = tier["name"]
    if rule["rule"] not in ("allowed", "requires_approval"):
        # A rule kind this engine does not know is not permission: fail closed.
        return answer(
            "denied", "tool_forbidden", [f"tool {tool} has an unrecognised rule {rule['rule']!r}"]
        )
    if rule["rule"] == "requires_approval":
        # Never auto-approved: the tier only decides whether a human sees it at all.
        write_outcome = outcomes["write"]
        if write_outcome == "shadow":
            return answer(
                "shadowed",
                "tier_shadow",
                [f"{tool} requires approval; tier {tier_name} only shadows"],
            )
        if write_outcome == "deny":
            return answer(
                "denied", "tier_denies", [f"{tool} requires approval; tier {tier_name} denies it"]
            )
        return pending("requires_approval", [f"{tool} always requires human approval"])

    outcome = outcomes.get(effect, "deny")
    if outcome == "allow":
        return answer("allowed", "allowed", [f"tier {tier_name} allows {effect} tools"])
    if outcome == "shadow":
        return answer("shadowed", "tier_shadow", [f"tier {tier_name} shadows {effect} tools"])
    if outcome == "pending":
        return pending(
            "tier_requires_approval", [f"tier {tier_name} requires approval for {effect} tools"]
        )
    if outcome == "auto":
        limit = tier.get("auto_approve_max_risk") or "low"
        if limit in RISKS and RISKS.index(risk) <= RISKS.index(limit):
            return answer(
                "allowed",
                "auto_approved",
                [
                    f"risk {risk} is within tier {tier_name}'s auto-approve limit ({limit})",
                    *risk_reasons,
                ],
            )
        return pending(
            "risk_above_auto_limit",
            [f"risk {risk} is above tier {tier_name}'s auto-approve limit ({limit})"],
        )
    return answer("denied", "tier_denies", [f"tier {tier_name} denies {effect} tools"])


def assess_edit(snapshot: dict, tool: str, arguments: dict, blast_radius: dict) -> GateDecision:
    """A reviewer's edit of a pending action, judged as the gate would judge it under
    ``snapshot`` with no switch engaged and no rate counted; an outcome the gate would allow
    is still ``pending`` with the matrix's requirements for its risk (a person is deciding
    it anyway)."""
    decision = evaluate(snapshot, GateRequest(tool, arguments, blast_radius))
    if decision.outcome == "allowed":
        need = {**DEFAULT_APPROVAL_MATRIX, **(snapshot.get("approval_matrix") or {})}[decision.risk]
        return GateDecision(
            "pending",
            decision.reason_code,
            decision.reasons,
            decision.risk,
            decision.effect,
            required_approvals=int(need["approvals"]),
            needs_critical_approver=bool(need["critical_approver"]),
        )
    return decision
