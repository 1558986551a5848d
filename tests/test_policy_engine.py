"""The gate's policy engine (rollout.policy), tested as the pure function it is: plain
snapshot dicts in, a GateDecision out. No database, no clock, no I/O.

Snapshots are built here from the default tier ladder in rollout.reference (TIERS,
TTL_BY_RISK) exactly as Tier.as_policy() would build them, so the tests follow the data;
the expected outcomes are written out by hand from DESIGN.md ("Rollout tiers", "The gate:
order of evaluation"), never computed by the engine's own logic.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from rollout.policy import (
    DEFAULT_APPROVAL_MATRIX,
    DEFAULT_RISK_RULES,
    LIMIT_OPERATORS,
    PROBE_TOOL,
    RISKS,
    Counters,
    GateDecision,
    GateRequest,
    SwitchState,
    assess_risk,
    check_argument_limits,
    evaluate,
    validate_limit,
)
from rollout.reference import TIERS, TTL_BY_RISK

SLUG = "support-assistant"
OTHER_SLUG = "other-agent"
TOOL = "do_thing"
OTHER_TOOL = "other_thing"
TIER_NAMES = ("shadow", "read_only", "draft_only", "supervised", "autonomous")
EFFECTS = ("read", "draft", "write")


# ----------------------------------------------------------------------------- builders


def tier_policy(tier_name: str) -> dict:
    """The tier dict as Tier.as_policy() returns it for the row of TIERS named tier_name
    (the data migration stores pending_ttl_seconds=TTL_BY_RISK on every tier)."""
    for name, rank, read, draft, write, auto, _description, _exit_criteria in TIERS:
        if name == tier_name:
            return {
                "name": name,
                "rank": rank,
                "outcomes": {"read": read, "draft": draft, "write": write},
                "auto_approve_max_risk": auto,
                "pending_ttl_seconds": dict(TTL_BY_RISK),
            }
    raise LookupError(f"no tier {tier_name!r} in rollout.reference.TIERS")


def rule(
    effect: str = "read",
    kind: str = "allowed",
    base_risk: str = "low",
    limits: list[dict] | None = None,
    rate: int | None = None,
) -> dict:
    """A tool rule as ToolRule.as_policy() returns it."""
    return {
        "effect": effect,
        "rule": kind,
        "base_risk": base_risk,
        "argument_limits": limits or [],
        "rate_limit_per_minute": rate,
    }


def snapshot(tier_name: str, tools: dict, active: bool = True, rate: int | None = 600) -> dict:
    """A policy snapshot shaped like rollout.snapshots.build_snapshot's."""
    return {
        "agent": {"slug": SLUG, "active": active, "rate_limit_per_minute": rate},
        "tier": tier_policy(tier_name),
        "tools": tools,
        "risk_rules": dict(DEFAULT_RISK_RULES),
        "approval_matrix": dict(DEFAULT_APPROVAL_MATRIX),
    }


def call(
    tool: str = TOOL,
    arguments: dict | None = None,
    blast_radius: dict | None = None,
    drill_probe: bool = False,
) -> GateRequest:
    return GateRequest(
        tool=tool,
        arguments=arguments or {},
        blast_radius=blast_radius or {},
        drill_probe=drill_probe,
    )


PROBE = "drill-probe"  # the recognised probe of a running drill (GateRequest.drill_probe)


def decide(snap: dict, request: GateRequest | None = None, switches=(), counters=None):
    return evaluate(snap, request or call(), list(switches), counters or Counters())


# ------------------------------------------------------------------- the reference data


def test_reference_ladder__default_tiers__match_design_table():
    # Given the ladder as DESIGN.md draws it, when we read TIERS, then they agree: the
    # table-driven tests below build their snapshots from TIERS and rely on it.
    ladder = {name: tier_policy(name)["outcomes"] for name in TIER_NAMES}
    assert ladder == {
        "shadow": {"read": "allow", "draft": "shadow", "write": "shadow"},
        "read_only": {"read": "allow", "draft": "deny", "write": "deny"},
        "draft_only": {"read": "allow", "draft": "allow", "write": "deny"},
        "supervised": {"read": "allow", "draft": "allow", "write": "pending"},
        "autonomous": {"read": "allow", "draft": "allow", "write": "auto"},
    }
    assert [row[0] for row in TIERS] == list(TIER_NAMES)
    assert tier_policy("autonomous")["auto_approve_max_risk"] == "low"


# ------------------------------------------------------------- tier x effect x rule kind

# (tier, effect, rule kind) -> (outcome, reason_code); base risk low, no blast radius.
TIER_TABLE = {
    ("shadow", "read", "allowed"): ("allowed", "allowed"),
    ("shadow", "draft", "allowed"): ("shadowed", "tier_shadow"),
    ("shadow", "write", "allowed"): ("shadowed", "tier_shadow"),
    ("shadow", "read", "requires_approval"): ("shadowed", "tier_shadow"),
    ("shadow", "draft", "requires_approval"): ("shadowed", "tier_shadow"),
    ("shadow", "write", "requires_approval"): ("shadowed", "tier_shadow"),
    ("read_only", "read", "allowed"): ("allowed", "allowed"),
    ("read_only", "draft", "allowed"): ("denied", "tier_denies"),
    ("read_only", "write", "allowed"): ("denied", "tier_denies"),
    ("read_only", "read", "requires_approval"): ("denied", "tier_denies"),
    ("read_only", "draft", "requires_approval"): ("denied", "tier_denies"),
    ("read_only", "write", "requires_approval"): ("denied", "tier_denies"),
    ("draft_only", "read", "allowed"): ("allowed", "allowed"),
    ("draft_only", "draft", "allowed"): ("allowed", "allowed"),
    ("draft_only", "write", "allowed"): ("denied", "tier_denies"),
    ("draft_only", "read", "requires_approval"): ("denied", "tier_denies"),
    ("draft_only", "draft", "requires_approval"): ("denied", "tier_denies"),
    ("draft_only", "write", "requires_approval"): ("denied", "tier_denies"),
    ("supervised", "read", "allowed"): ("allowed", "allowed"),
    ("supervised", "draft", "allowed"): ("allowed", "allowed"),
    ("supervised", "write", "allowed"): ("pending", "tier_requires_approval"),
    ("supervised", "read", "requires_approval"): ("pending", "requires_approval"),
    ("supervised", "draft", "requires_approval"): ("pending", "requires_approval"),
    ("supervised", "write", "requires_approval"): ("pending", "requires_approval"),
    ("autonomous", "read", "allowed"): ("allowed", "allowed"),
    ("autonomous", "draft", "allowed"): ("allowed", "allowed"),
    ("autonomous", "write", "allowed"): ("allowed", "auto_approved"),
    ("autonomous", "read", "requires_approval"): ("pending", "requires_approval"),
    ("autonomous", "draft", "requires_approval"): ("pending", "requires_approval"),
    ("autonomous", "write", "requires_approval"): ("pending", "requires_approval"),
}


def test_tier_table__covers__every_tier_effect_and_rule_kind():
    assert set(TIER_TABLE) == {
        (tier, effect, kind)
        for tier in TIER_NAMES
        for effect in EFFECTS
        for kind in ("allowed", "requires_approval")
    }


@pytest.mark.parametrize(
    ("tier", "effect", "kind", "expected"),
    [(*key, value) for key, value in TIER_TABLE.items()],
    ids=["-".join(key) for key in TIER_TABLE],
)
def test_evaluate__tier_effect_rule_kind__matches_design_table(tier, effect, kind, expected):
    # Given an agent in `tier` with a low-risk `effect` tool ruled `kind`
    snap = snapshot(tier, {TOOL: rule(effect, kind)})
    # When it calls the tool with no blast radius
    decision = decide(snap)
    # Then the ladder decides, and the decision carries the tool's effect and risk
    assert (decision.outcome, decision.reason_code) == expected
    assert decision.effect == effect
    assert decision.risk == "low"
    assert decision.reasons


@pytest.mark.parametrize(
    ("base_risk", "expected"),
    [
        ("low", ("allowed", "auto_approved")),
        ("medium", ("pending", "risk_above_auto_limit")),
        ("high", ("pending", "risk_above_auto_limit")),
        ("critical", ("pending", "risk_above_auto_limit")),
    ],
)
def test_evaluate__autonomous_write_by_base_risk__auto_approved_only_up_to_low(base_risk, expected):
    snap = snapshot("autonomous", {TOOL: rule("write", base_risk=base_risk)})
    decision = decide(snap)
    assert (decision.outcome, decision.reason_code) == expected
    assert decision.risk == base_risk


@pytest.mark.parametrize(
    "blast_radius",
    [
        {"environment": "production"},
        {"reversible": False},
        {"amount": 1000},
        {"records_affected": 100},
    ],
    ids=["production", "irreversible", "amount", "records"],
)
def test_evaluate__autonomous_low_write_with_escalating_blast_radius__pending_above_auto_limit(
    blast_radius,
):
    # Given a low-risk write tool in autonomous, when the declared blast radius raises the
    # risk above the auto-approve limit (low), then a human must approve it.
    snap = snapshot("autonomous", {TOOL: rule("write")})
    decision = decide(snap, call(blast_radius=blast_radius))
    assert (decision.outcome, decision.reason_code) == ("pending", "risk_above_auto_limit")
    assert decision.risk != "low"
    assert decision.required_approvals >= 1


@pytest.mark.parametrize("base_risk", RISKS)
@pytest.mark.parametrize("effect", EFFECTS)
def test_evaluate__requires_approval_in_autonomous_any_risk__never_auto_approved(effect, base_risk):
    snap = snapshot("autonomous", {TOOL: rule(effect, "requires_approval", base_risk)})
    decision = decide(snap)
    assert (decision.outcome, decision.reason_code) == ("pending", "requires_approval")


# ----------------------------------------------------------------- forbidden and unknown


@pytest.mark.parametrize("effect", EFFECTS)
@pytest.mark.parametrize("tier", TIER_NAMES)
def test_evaluate__forbidden_tool_in_any_tier__denied_tool_forbidden(tier, effect):
    snap = snapshot(tier, {TOOL: rule(effect, "forbidden")})
    decision = decide(snap)
    assert (decision.outcome, decision.reason_code) == ("denied", "tool_forbidden")


@pytest.mark.parametrize("tier", TIER_NAMES)
def test_evaluate__unknown_tool_in_any_tier__denied_tool_unknown(tier):
    # Given rules for other tools only, when the agent calls a tool without a rule, then
    # default deny.
    snap = snapshot(tier, {OTHER_TOOL: rule("read")})
    decision = decide(snap, call(TOOL))
    assert (decision.outcome, decision.reason_code) == ("denied", "tool_unknown")
    assert decision.effect == ""


# ------------------------------------------------------------------- order of evaluation

ORDER = (
    "kill_switch",
    "agent_inactive",
    "tool_forbidden",
    "tool_unknown",
    "argument_limit",
    "rate_limited",
)


def gate_case(conditions: set[str], tier: str = "autonomous"):
    """A call that, on its own, would be allowed (a low-risk read in `tier`), made to trip
    each of `conditions`."""
    limits = [{"field": "amount", "op": "<=", "value": 100}]
    tools = {TOOL: rule("read", "forbidden" if "tool_forbidden" in conditions else "allowed")}
    if "tool_unknown" in conditions:
        tools = {OTHER_TOOL: rule("read")}
    if "argument_limit" in conditions:
        for tool_rule in tools.values():
            tool_rule["argument_limits"] = limits
    snap = snapshot(tier, tools, active="agent_inactive" not in conditions, rate=10)
    request = call(TOOL, {"amount": 500 if "argument_limit" in conditions else 50})
    switches = [SwitchState(7, "agent", SLUG)] if "kill_switch" in conditions else []
    counters = Counters(agent_last_minute=10 if "rate_limited" in conditions else 0)
    return snap, request, switches, counters


# A tool is either forbidden or has no rule, never both; a tool without a rule has no
# argument limits. Every other pair of conditions can hold at once.
ORDER_PAIRS = [
    (first, second)
    for i, first in enumerate(ORDER)
    for second in ORDER[i + 1 :]
    if {first, second}
    not in ({"tool_forbidden", "tool_unknown"}, {"tool_unknown", "argument_limit"})
]


@pytest.mark.parametrize(("first", "second"), ORDER_PAIRS, ids=[f"{a}>{b}" for a, b in ORDER_PAIRS])
def test_evaluate__two_checks_apply__earlier_one_wins(first, second):
    # Given a call that trips both checks, when the gate decides, then the earlier wins.
    decision = evaluate(*gate_case({first, second}))
    assert (decision.outcome, decision.reason_code) == ("denied", first)


@pytest.mark.parametrize(
    "path",
    [
        ("kill_switch", "agent_inactive", "tool_forbidden", "argument_limit", "rate_limited"),
        ("kill_switch", "agent_inactive", "tool_unknown", "rate_limited"),
    ],
    ids=["forbidden-path", "unknown-path"],
)
def test_evaluate__peeling_checks_off_one_by_one__each_wins_in_design_order(path):
    # Given a call that trips every check on the path, when we clear the winner each time,
    # then the next one in the DESIGN order wins, and finally the call is allowed.
    remaining = set(path)
    for expected in path:
        decision = evaluate(*gate_case(remaining))
        assert (decision.outcome, decision.reason_code) == ("denied", expected)
        remaining.discard(expected)
    assert evaluate(*gate_case(remaining)).outcome == "allowed"


@pytest.mark.parametrize(
    ("tier", "effect"), [("read_only", "write"), ("shadow", "write"), ("supervised", "write")]
)
def test_evaluate__rate_limited_and_tier_table_apply__rate_limited_wins(tier, effect):
    snap = snapshot(tier, {TOOL: rule(effect)}, rate=5)
    decision = decide(snap, counters=Counters(agent_last_minute=5))
    assert (decision.outcome, decision.reason_code) == ("denied", "rate_limited")


def test_evaluate__kill_switch_on_unknown_tool__kill_switch_not_tool_unknown():
    snap = snapshot("autonomous", {})
    decision = decide(snap, call("no_such_tool"), [SwitchState(1, "global", "")])
    assert (decision.outcome, decision.reason_code) == ("denied", "kill_switch")


# --------------------------------------------------------------------------- kill switch


@pytest.mark.parametrize(
    ("switch", "tool", "expected"),
    [
        (SwitchState(1, "global", ""), TOOL, ("denied", "kill_switch")),
        (SwitchState(1, "agent", SLUG), TOOL, ("denied", "kill_switch")),
        (SwitchState(1, "agent", OTHER_SLUG), TOOL, ("allowed", "allowed")),
        (SwitchState(1, "tool", TOOL), TOOL, ("denied", "kill_switch")),
        (SwitchState(1, "tool", OTHER_TOOL), TOOL, ("allowed", "allowed")),
        # A drill switch stops only the recognised probe of its own agent ...
        (SwitchState(1, "agent", SLUG, is_drill=True), TOOL, ("allowed", "allowed")),
        (SwitchState(1, "agent", SLUG, is_drill=True), PROBE, ("denied", "kill_switch")),
        (SwitchState(1, "agent", OTHER_SLUG, is_drill=True), PROBE, ("allowed", "allowed")),
        # ... while a real switch in scope stops the probe too.
        (SwitchState(1, "global", ""), PROBE, ("denied", "kill_switch")),
        (SwitchState(1, "agent", SLUG), PROBE, ("denied", "kill_switch")),
        (None, PROBE, ("allowed", "allowed")),
    ],
    ids=[
        "global",
        "agent-matching",
        "agent-other",
        "tool-matching",
        "tool-other",
        "drill-real-tool",
        "drill-probe",
        "drill-other-agent-probe",
        "global-probe",
        "agent-probe",
        "no-switch-probe",
    ],
)
def test_evaluate__kill_switch_scope__stops_only_calls_in_scope(switch, tool, expected):
    # Given an agent allowed to call TOOL (and no rule at all for the probe)
    snap = snapshot("autonomous", {TOOL: rule("read")})
    # When the switch is engaged and the agent calls `tool`
    switches = [switch] if switch else []
    request = call(PROBE_TOOL, drill_probe=True) if tool == PROBE else call(tool)
    decision = decide(snap, request, switches)
    # Then only a switch whose scope covers the call denies it, naming itself
    assert (decision.outcome, decision.reason_code) == expected
    assert decision.switch_id == (1 if expected[1] == "kill_switch" else None)


def test_evaluate__several_switches__reports_the_one_in_scope():
    snap = snapshot("autonomous", {TOOL: rule("read")})
    switches = [SwitchState(1, "agent", OTHER_SLUG), SwitchState(2, "tool", TOOL)]
    decision = decide(snap, call(TOOL), switches)
    assert (decision.reason_code, decision.switch_id) == ("kill_switch", 2)


@pytest.mark.parametrize("tier", TIER_NAMES)
def test_evaluate__recognised_drill_probe__allowed_low_in_every_tier(tier):
    decision = decide(snapshot(tier, {}), call(PROBE_TOOL, drill_probe=True))
    assert (decision.outcome, decision.reason_code, decision.risk) == ("allowed", "allowed", "low")


@pytest.mark.parametrize(
    "request_",
    [
        call(PROBE_TOOL),
        call(PROBE_TOOL, {"probe": True}),
        call(PROBE_TOOL, blast_radius={"reversible": False}),
        call(PROBE_TOOL, {"probe": True}, drill_probe=True),
    ],
    ids=["agent-token", "agent-token-arguments", "agent-token-radius", "drill-with-arguments"],
)
@pytest.mark.parametrize("tier", TIER_NAMES)
def test_evaluate__probe_tool_not_recognised__unknown_default_deny(tier, request_):
    # Issue 16 class 10: for agents the probe's name is an unknown tool like any other.
    decision = decide(snapshot(tier, {}), request_)
    assert (decision.outcome, decision.reason_code) == ("denied", "tool_unknown")


def test_evaluate__drill_switch__does_not_stop_an_agents_own_probe_named_tool():
    snap = snapshot("autonomous", {PROBE_TOOL: rule("read")})
    decision = decide(snap, call(PROBE_TOOL), [SwitchState(1, "agent", SLUG, is_drill=True)])
    assert (decision.outcome, decision.reason_code) == ("allowed", "allowed")


# ---------------------------------------------------------------------------------- risk

SMALL_RADIUS = {
    "environment": "staging",
    "reversible": True,
    "amount": 1,
    "records_affected": 1,
    "users_affected": 1,
}

RISK_CASES = [
    # (base risk, declared blast radius, expected risk)
    ("low", {}, "low"),
    ("low", {"environment": "production"}, "medium"),
    ("low", {"environment": "prod"}, "medium"),
    ("low", {"environment": " Production "}, "medium"),
    ("low", {"environment": "staging"}, "low"),
    ("medium", {"environment": "production"}, "medium"),
    ("high", {"environment": "production"}, "high"),
    ("low", {"reversible": False}, "high"),
    ("medium", {"reversible": False}, "high"),
    ("critical", {"reversible": False}, "critical"),
    ("low", {"reversible": True}, "low"),
    ("low", {"reversible": None}, "low"),
    ("low", {"amount": 999.99}, "low"),
    ("low", {"amount": 1000}, "high"),
    ("low", {"amount": 9999}, "high"),
    ("low", {"amount": 9999.99}, "high"),
    ("low", {"amount": 10000}, "critical"),
    ("low", {"amount": "1500"}, "high"),
    ("low", {"amount": {"value": 999.99, "currency": "EUR"}}, "low"),
    ("low", {"amount": {"value": 1000, "currency": "EUR"}}, "high"),
    ("low", {"amount": {"value": "10000.00", "currency": "USD"}}, "critical"),
    ("low", {"records_affected": 99}, "low"),
    ("low", {"records_affected": 100}, "high"),
    ("low", {"records_affected": 9999}, "high"),
    ("low", {"records_affected": 10000}, "critical"),
    ("low", {"users_affected": 99}, "low"),
    ("low", {"users_affected": 100}, "high"),
    ("low", {"users_affected": 9999}, "high"),
    ("low", {"users_affected": 10000}, "critical"),
    ("low", {"records_affected": 5, "users_affected": 150}, "high"),
    ("low", {"environment": "production", "reversible": False}, "high"),
    ("low", {"environment": "production", "amount": 10000}, "critical"),
    ("medium", {"records_affected": 100}, "high"),
    ("low", SMALL_RADIUS, "low"),
    ("medium", SMALL_RADIUS, "medium"),
    ("high", SMALL_RADIUS, "high"),
    ("critical", SMALL_RADIUS, "critical"),
    ("critical", {"amount": 5000}, "critical"),
    ("critical", {"records_affected": 100}, "critical"),
    ("critical", {"environment": "production", "users_affected": 500}, "critical"),
    ("high", {"amount": 0, "records_affected": 0, "users_affected": 0}, "high"),
    ("critical", {"amount": -5}, "critical"),
    ("unknown-level", {}, "high"),  # an unreadable base risk fails safe
]


@pytest.mark.parametrize(
    ("base_risk", "blast_radius", "expected"),
    RISK_CASES,
    ids=[f"{base}-{radius}" for base, radius, _ in RISK_CASES],
)
def test_assess_risk__declared_blast_radius__raises_to_expected_never_lowers(
    base_risk, blast_radius, expected
):
    risk, why = assess_risk(base_risk, blast_radius)
    assert risk == expected
    # A reason is given exactly when the blast radius raised a (known) base risk.
    if base_risk in RISKS:
        assert bool(why) == (expected != base_risk)


@pytest.mark.parametrize("blast_radius", [None, "production", ["amount", 10000]])
def test_assess_risk__blast_radius_not_an_object__base_risk_kept(blast_radius):
    assert assess_risk("medium", blast_radius) == ("medium", [])


@pytest.mark.parametrize(
    ("base_risk", "blast_radius", "expected"),
    [
        ("low", {"amount": 10000}, "critical"),
        ("high", SMALL_RADIUS, "high"),
        ("critical", SMALL_RADIUS, "critical"),
    ],
)
def test_evaluate__blast_radius__decision_carries_assessed_risk(base_risk, blast_radius, expected):
    snap = snapshot("supervised", {TOOL: rule("read", base_risk=base_risk)})
    decision = decide(snap, call(blast_radius=blast_radius))
    assert decision.outcome == "allowed"
    assert decision.risk == expected


# ------------------------------------------------------------------------ approval matrix


@pytest.mark.parametrize(
    ("base_risk", "approvals", "critical_approver", "ttl"),
    [
        ("low", 1, False, 86400),
        ("medium", 1, False, 28800),
        ("high", 2, False, 14400),
        ("critical", 2, True, 3600),
    ],
)
def test_evaluate__pending_by_risk__approval_matrix_and_default_ttl(
    base_risk, approvals, critical_approver, ttl
):
    snap = snapshot("supervised", {TOOL: rule("write", base_risk=base_risk)})
    decision = decide(snap)
    assert decision.outcome == "pending"
    assert decision.required_approvals == approvals
    assert decision.needs_critical_approver is critical_approver
    assert decision.ttl_seconds == ttl


@pytest.mark.parametrize(
    ("base_risk", "ttl"), [("low", 11), ("medium", 22), ("high", 33), ("critical", 44)]
)
def test_evaluate__pending__ttl_comes_from_tiers_pending_ttl_seconds(base_risk, ttl):
    # Given a tier whose pending TTLs differ from the defaults
    snap = snapshot("supervised", {TOOL: rule("write", base_risk=base_risk)})
    snap["tier"]["pending_ttl_seconds"] = {"low": 11, "medium": 22, "high": 33, "critical": 44}
    # Then the pending action expires after the tier's TTL for its risk
    assert decide(snap).ttl_seconds == ttl


@pytest.mark.parametrize(
    ("tier", "kind", "blast_radius", "approvals", "critical_approver", "ttl"),
    [
        ("supervised", "allowed", {"amount": 10000}, 2, True, 3600),
        ("supervised", "allowed", {"records_affected": 100}, 2, False, 14400),
        ("autonomous", "allowed", {"environment": "production"}, 1, False, 28800),
        ("autonomous", "requires_approval", {"reversible": False}, 2, False, 14400),
    ],
)
def test_evaluate__pending_with_escalated_risk__matrix_follows_escalated_risk(
    tier, kind, blast_radius, approvals, critical_approver, ttl
):
    snap = snapshot(tier, {TOOL: rule("write", kind)})
    decision = decide(snap, call(blast_radius=blast_radius))
    assert decision.outcome == "pending"
    assert (
        decision.required_approvals,
        decision.needs_critical_approver,
        decision.ttl_seconds,
    ) == (approvals, critical_approver, ttl)


@pytest.mark.parametrize(
    ("tier", "effect", "kind"),
    [
        ("autonomous", "read", "allowed"),
        ("draft_only", "write", "allowed"),
        ("shadow", "write", "allowed"),
        ("read_only", "write", "requires_approval"),
        ("supervised", "write", "forbidden"),
    ],
)
def test_evaluate__not_pending__no_approvals_and_no_ttl(tier, effect, kind):
    decision = decide(snapshot(tier, {TOOL: rule(effect, kind, "critical")}))
    assert decision.outcome != "pending"
    assert (decision.required_approvals, decision.needs_critical_approver) == (0, False)
    assert decision.ttl_seconds is None


# ------------------------------------------------------------------------ argument limits

LIMIT_CASES = [
    # (field, op, bound, arguments, passes)
    ("amount", "<=", 100, {"amount": 100}, True),
    ("amount", "<=", 100, {"amount": 100.01}, False),
    ("amount", "<", 100, {"amount": 99}, True),
    ("amount", "<", 100, {"amount": 100}, False),
    ("amount", ">=", 10, {"amount": 10}, True),
    ("amount", ">=", 10, {"amount": 9}, False),
    ("amount", ">", 10, {"amount": 11}, True),
    ("amount", ">", 10, {"amount": 10}, False),
    ("amount", "<=", 100, {"amount": "50"}, True),  # a numeric string is a number
    ("env", "==", "staging", {"env": "staging"}, True),
    ("env", "==", "staging", {"env": "production"}, False),
    ("env", "!=", "production", {"env": "staging"}, True),
    ("env", "!=", "production", {"env": "production"}, False),
    ("env", "in", ["staging", "dev"], {"env": "dev"}, True),
    ("env", "in", ["staging", "dev"], {"env": "production"}, False),
    ("env", "not_in", ["production"], {"env": "staging"}, True),
    ("env", "not_in", ["production"], {"env": "production"}, False),
    ("subject", "max_length", 5, {"subject": "hello"}, True),
    ("subject", "max_length", 5, {"subject": "hello!"}, False),
    ("to", "max_length", 3, {"to": ["a", "b", "c"]}, True),
    ("to", "max_length", 3, {"to": ["a", "b", "c", "d"]}, False),
    ("subject", "max_length", 5, {"subject": 12345}, False),  # not sized: fails closed
    ("ticket", "matches", r"[A-Z]{3}-\d+", {"ticket": "ABC-12"}, True),
    ("ticket", "matches", r"[A-Z]{3}-\d+", {"ticket": "abc-12"}, False),
    ("ticket", "matches", r"[A-Z]{3}-\d+", {"ticket": "ABC-12 and more"}, False),  # full match
    ("ticket", "matches", r"\d+", {"ticket": 123}, False),  # not a string
    # nested field paths
    ("order.amount", "<=", 100, {"order": {"amount": 50}}, True),
    ("order.amount", "<=", 100, {"order": {"amount": 500}}, False),
    ("order.amount", "<=", 100, {"order": 50}, False),
    ("order.amount", "<=", 100, {"amount": 50}, False),
    ("a.b.c", "==", "x", {"a": {"b": {"c": "x"}}}, True),
    # non-numeric values for numeric operators fail
    ("amount", "<=", 100, {"amount": "abc"}, False),
    ("amount", "<=", 100, {"amount": "NaN"}, False),
    ("amount", "<=", 100, {"amount": float("nan")}, False),
    ("amount", ">=", 0, {"amount": float("inf")}, False),
    ("amount", "<=", 100, {"amount": None}, False),
    ("amount", "<=", 100, {"amount": [1]}, False),
    ("amount", "<=", 100, {"amount": {"value": 1}}, False),
    # booleans are not numbers
    ("amount", "<=", 100, {"amount": True}, False),
    ("amount", ">=", 0, {"amount": False}, False),
    ("amount", ">", 0, {"amount": True}, False),
    ("amount", "<", 2, {"amount": False}, False),
]


@pytest.mark.parametrize(
    ("field", "op", "bound", "arguments", "passes"),
    LIMIT_CASES,
    ids=[f"{f}-{op}-{b!r}-{a!r}" for f, op, b, a, _ in LIMIT_CASES],
)
def test_check_argument_limits__operator_and_value__passes_or_breaks(
    field, op, bound, arguments, passes
):
    broken = check_argument_limits(arguments, [{"field": field, "op": op, "value": bound}])
    assert (broken == []) is passes
    if not passes:
        assert len(broken) == 1 and repr(field) in broken[0]


def test_limit_cases__cover__every_operator_passing_and_failing():
    seen = {(op, passes) for _field, op, _bound, _args, passes in LIMIT_CASES}
    assert seen == {(op, passes) for op in LIMIT_OPERATORS for passes in (True, False)}


LIMIT_EXAMPLES = {
    "<=": 100,
    "<": 100,
    ">=": 0,
    ">": 0,
    "==": "staging",
    "!=": "production",
    "in": ["staging"],
    "not_in": ["production"],
    "max_length": 5,
    "matches": ".*",
}


@pytest.mark.parametrize("op", LIMIT_OPERATORS)
def test_check_argument_limits__limited_field_missing__fails_closed(op):
    # Given a limit on `amount`, when the call leaves it out, then the limit is broken
    # (even for != and not_in, which a missing value would otherwise "satisfy").
    limit = {"field": "amount", "op": op, "value": LIMIT_EXAMPLES[op]}
    broken = check_argument_limits({"other": 1}, [limit])
    assert len(broken) == 1 and "required" in broken[0]


def test_check_argument_limits__several_broken__reports_each():
    limits = [
        {"field": "amount", "op": "<=", "value": 100},
        {"field": "env", "op": "in", "value": ["staging"]},
        {"field": "subject", "op": "max_length", "value": 50},
    ]
    broken = check_argument_limits({"amount": 500, "env": "production", "subject": "hi"}, limits)
    assert len(broken) == 2


@pytest.mark.parametrize("limits", [[], None])
def test_check_argument_limits__no_limits__nothing_broken(limits):
    assert check_argument_limits({"anything": 1}, limits) == []


def test_check_argument_limits__unusable_limit__fails_closed():
    broken = check_argument_limits({"amount": 5}, [{"field": "amount", "op": "~", "value": 1}])
    assert len(broken) == 1 and broken[0].startswith("unusable argument limit")


@pytest.mark.parametrize("op", LIMIT_OPERATORS)
def test_validate_limit__every_operator_with_good_bound__accepted(op):
    assert validate_limit({"field": "amount", "op": op, "value": LIMIT_EXAMPLES[op]}) is None


@pytest.mark.parametrize(
    "limit",
    [
        "amount <= 100",
        ["amount", "<=", 100],
        {"op": "<=", "value": 100},
        {"field": "", "op": "<=", "value": 100},
        {"field": "   ", "op": "<=", "value": 100},
        {"field": 3, "op": "<=", "value": 100},
        {"field": "amount", "op": "=~", "value": 100},
        {"field": "amount", "op": "le", "value": 100},
        {"field": "amount", "op": None, "value": 100},
        {"field": "amount", "value": 100},
        {"field": "amount", "op": "<=", "value": "ten"},
        {"field": "amount", "op": "<", "value": None},
        {"field": "amount", "op": ">=", "value": True},
        {"field": "amount", "op": ">", "value": [1]},
        {"field": "amount", "op": "max_length", "value": "long"},
        {"field": "amount", "op": "max_length", "value": False},
        {"field": "env", "op": "in", "value": "staging"},
        {"field": "env", "op": "in", "value": {"staging": True}},
        {"field": "env", "op": "not_in", "value": "production"},
        {"field": "env", "op": "not_in", "value": None},
        {"field": "ticket", "op": "matches", "value": "[unclosed"},
        {"field": "ticket", "op": "matches", "value": "(?P<x"},
    ],
)
def test_validate_limit__bad_limit__rejected_with_reason(limit):
    problem = validate_limit(limit)
    assert isinstance(problem, str) and problem


def test_evaluate__argument_limit_broken__denied_with_each_reason():
    limits = [{"field": "amount", "op": "<=", "value": 100}]
    snap = snapshot("autonomous", {TOOL: rule("read", limits=limits)})
    allowed = decide(snap, call(arguments={"amount": 100}))
    denied = decide(snap, call(arguments={"amount": 101}))
    assert (allowed.outcome, allowed.reason_code) == ("allowed", "allowed")
    assert (denied.outcome, denied.reason_code) == ("denied", "argument_limit")
    assert len(denied.reasons) == 1 and "'amount'" in denied.reasons[0]


# ---------------------------------------------------------------------------- rate limits


@pytest.mark.parametrize(
    ("rate", "calls_before", "expected"),
    [
        (600, 0, ("allowed", "allowed")),
        (600, 599, ("allowed", "allowed")),
        (600, 600, ("denied", "rate_limited")),
        (600, 601, ("denied", "rate_limited")),
        (5, 4, ("allowed", "allowed")),
        (5, 5, ("denied", "rate_limited")),
        (None, 10**6, ("allowed", "allowed")),
    ],
)
def test_evaluate__agent_calls_last_minute__rate_limited_at_limit(rate, calls_before, expected):
    snap = snapshot("autonomous", {TOOL: rule("read")}, rate=rate)
    decision = decide(snap, counters=Counters(agent_last_minute=calls_before))
    assert (decision.outcome, decision.reason_code) == expected


@pytest.mark.parametrize(
    ("tool_rate", "calls_before", "expected"),
    [
        (10, 0, ("allowed", "allowed")),
        (10, 9, ("allowed", "allowed")),
        (10, 10, ("denied", "rate_limited")),
        (10, 50, ("denied", "rate_limited")),
        (None, 10**6, ("allowed", "allowed")),
    ],
)
def test_evaluate__tool_calls_last_minute__rate_limited_at_tool_limit(
    tool_rate, calls_before, expected
):
    # The agent itself is well under its own limit; only the tool's limit is in play.
    snap = snapshot("autonomous", {TOOL: rule("read", rate=tool_rate)})
    decision = decide(snap, counters=Counters(agent_last_minute=1, tool_last_minute=calls_before))
    assert (decision.outcome, decision.reason_code) == expected


# ----------------------------------------------------------------------- property: safety

tool_names = st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True)  # never PROBE_TOOL
# Weighted towards the escalation thresholds (1,000 / 10,000 amount; 100 / 10,000 count).
numbers = st.one_of(
    st.sampled_from([0, 1, 99, 100, 999.99, 1000, "1000", 9999, 9999.99, 10000, 10**6]),
    st.integers(min_value=-20000, max_value=20000),
    st.integers(min_value=-(10**7), max_value=10**7),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str),
)
scalars = st.one_of(st.text(max_size=12), st.integers(), st.floats(), st.booleans(), st.none())
arguments = st.dictionaries(
    st.sampled_from(["amount", "env", "subject", "order", "to", "x"]),
    st.one_of(scalars, st.dictionaries(st.sampled_from(["amount", "id"]), scalars, max_size=2)),
    max_size=5,
)
blast_radii = st.fixed_dictionaries(
    {},
    optional={
        "environment": st.one_of(
            st.sampled_from(["production", "prod", "Production", "staging", "dev"]), st.text()
        ),
        "reversible": st.one_of(st.booleans(), st.none()),
        "amount": st.one_of(
            numbers,
            st.fixed_dictionaries({"value": numbers, "currency": st.sampled_from(["EUR", "USD"])}),
        ),
        "records_affected": numbers,
        "users_affected": numbers,
    },
)
limit_sets = st.lists(
    st.sampled_from(
        [
            {"field": "amount", "op": "<=", "value": 1000},
            {"field": "env", "op": "in", "value": ["staging", "dev"]},
            {"field": "subject", "op": "max_length", "value": 8},
            {"field": "order.amount", "op": ">", "value": 0},
            {"field": "x", "op": "matches", "value": r"[a-z]+"},
        ]
    ),
    max_size=2,
)


def mostly(common: Any, *rare: st.SearchStrategy) -> st.SearchStrategy:
    """`common` three times in four, else one of `rare`: keeps the calls that reach the
    tier table frequent enough for the property to bite there too."""
    return st.one_of(st.just(common), st.just(common), st.just(common), *rare)


@st.composite
def gate_scenarios(draw: Any) -> dict:
    tool = draw(tool_names)
    rule_kinds = st.sampled_from(["allowed", "requires_approval", "forbidden"])
    tools = {
        name: rule(draw(st.sampled_from(EFFECTS)), draw(rule_kinds), draw(st.sampled_from(RISKS)))
        for name in draw(st.lists(tool_names, max_size=3))
        if name != tool
    }
    if draw(mostly(True, st.just(False))):  # else: the tool is unknown
        tools[tool] = rule(
            draw(st.sampled_from(EFFECTS)),
            draw(rule_kinds),
            draw(st.sampled_from(RISKS)),
            limits=draw(mostly([], limit_sets)),
            rate=draw(mostly(None, st.integers(0, 50))),
        )
    switch = st.builds(
        SwitchState,
        id=st.integers(1, 99),
        scope=st.sampled_from(["global", "agent", "tool"]),
        target=st.sampled_from([SLUG, OTHER_SLUG, tool, OTHER_TOOL, ""]),
        is_drill=st.booleans(),
    )
    return {
        "snapshot": snapshot(
            draw(st.sampled_from(TIER_NAMES)),
            tools,
            active=draw(mostly(True, st.just(False))),
            rate=draw(mostly(600, st.none(), st.integers(0, 700))),
        ),
        "request": GateRequest(tool, draw(arguments), draw(mostly({}, blast_radii))),
        "switches": draw(mostly([], st.lists(switch, min_size=1, max_size=3))),
        "counters": Counters(
            draw(mostly(0, st.integers(0, 800))), draw(mostly(0, st.integers(0, 100)))
        ),
    }


def real_switch_in_scope(switch: SwitchState, tool: str) -> bool:
    """DESIGN: a (non-drill) kill switch covers everything, one agent, or one tool."""
    return not switch.is_drill and (
        switch.scope == "global"
        or (switch.scope == "agent" and switch.target == SLUG)
        or (switch.scope == "tool" and switch.target == tool)
    )


@settings(max_examples=300, deadline=None, database=None)
@given(gate_scenarios())
def test_evaluate__any_call__never_allows_forbidden_unknown_or_killed_and_never_lowers_risk(
    scenario,
):
    snap, request = scenario["snapshot"], scenario["request"]
    decision: GateDecision = evaluate(snap, request, scenario["switches"], scenario["counters"])
    tool_rule = snap["tools"].get(request.tool)

    event(f"{decision.outcome}/{decision.reason_code}")
    assert decision.outcome in {"allowed", "denied", "shadowed", "pending"}
    if any(real_switch_in_scope(s, request.tool) for s in scenario["switches"]):
        assert (decision.outcome, decision.reason_code) == ("denied", "kill_switch")
    if tool_rule is None or tool_rule["rule"] == "forbidden":  # unknown or forbidden
        assert decision.outcome == "denied"
    elif tool_rule["rule"] == "requires_approval":
        assert decision.outcome != "allowed"  # never auto-approved
    if not snap["agent"]["active"]:
        assert decision.outcome == "denied"

    base_risk = tool_rule["base_risk"] if tool_rule else "low"
    assert RISKS.index(decision.risk) >= RISKS.index(base_risk)
    assert (decision.outcome == "pending") == (decision.required_approvals >= 1)


@settings(max_examples=300, deadline=None, database=None)
@given(
    base_risk=st.sampled_from(RISKS),
    blast_radius=st.one_of(blast_radii, st.none(), st.text(max_size=5), st.lists(numbers)),
)
def test_assess_risk__any_blast_radius__never_below_base_risk(base_risk, blast_radius):
    risk, why = assess_risk(base_risk, blast_radius)
    assert RISKS.index(risk) >= RISKS.index(base_risk)
    assert bool(why) == (risk != base_risk)


# ------------------------------------------------------------------- fail closed on odd data


def test_probe__an_explicit_rule_for_the_probe__is_honoured():
    snap = snapshot("supervised", {PROBE_TOOL: rule("read", "forbidden")})
    assert decide(snap, call(PROBE_TOOL)).reason_code == "tool_forbidden"


def test_rule_kind__unrecognised__denied_not_allowed():
    snap = snapshot("autonomous", {TOOL: {**rule("read", "allowed"), "rule": "sometimes"}})
    decision = decide(snap)
    assert (decision.outcome, decision.reason_code) == ("denied", "tool_forbidden")


def test_auto_limit__unrecognised__pending_not_crash():
    snap = snapshot("autonomous", {TOOL: rule("write", "allowed")})
    snap["tier"]["auto_approve_max_risk"] = "whatever"
    assert decide(snap).outcome == "pending"


@pytest.mark.parametrize(
    ("op", "bound", "value", "ok"),
    [
        ("==", 1, True, False),
        ("==", True, True, True),
        ("in", [1, 2], True, False),
        ("not_in", [0], False, True),
    ],
)
def test_limits__booleans_are_not_numbers_for_equality(op, bound, value, ok):
    broken = check_argument_limits({"flag": value}, [{"field": "flag", "op": op, "value": bound}])
    assert (broken == []) is ok
