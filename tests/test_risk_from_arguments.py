"""Risk from the arguments (issue 15): a tool rule maps argument fields to blast-radius
dimensions (``blast_radius_from_arguments``), and the gate weighs the higher of what the
agent declares and what the arguments say. Pure engine tests — plain snapshot dicts in, a
GateDecision out — plus ``assess_edit``, the same gate from the argument-limit step onward
for a reviewer's edit.

Expected values are written out by hand from DESIGN.md ("Risk", "Approval matrix");
the snapshot builders are shared with tests/test_policy_engine.py."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollout.policy import (
    EDIT_REQUIRES_APPROVAL,
    RADIUS_DIMENSIONS,
    RISKS,
    Counters,
    GateRequest,
    SwitchState,
    assess_edit,
    assess_risk,
    derived_blast_radius,
    evaluate,
    radius_mapping_text,
    validate_radius_mapping,
)
from tests.test_policy_engine import SLUG, TOOL, call, decide, rule, snapshot

AMOUNT = {"amount": "amount"}
DECLARED_SMALL = {"environment": "production", "amount": {"value": 42.18, "currency": "EUR"}}


def mapped(
    effect: str = "write",
    kind: str = "requires_approval",
    base_risk: str = "medium",
    radius: dict | None = None,
    limits: list[dict] | None = None,
) -> dict:
    return {**rule(effect, kind, base_risk, limits), "blast_radius_from_arguments": radius or {}}


# --------------------------------------------------------------------- derived_blast_radius


@pytest.mark.parametrize(
    ("mapping", "arguments", "expected"),
    [
        (AMOUNT, {"amount": 10000}, {"amount": 10000}),
        (AMOUNT, {"amount": 42.18}, {"amount": 42.18}),
        (AMOUNT, {"amount": "1500"}, {"amount": 1500}),  # a numeric string counts
        (AMOUNT, {"amount": " 1e4 "}, {"amount": 10000}),
        (AMOUNT, {"amount": {"value": 2000, "currency": "EUR"}}, {"amount": 2000}),
        (AMOUNT, {"amount": -20000}, {"amount": -20000}),  # sign kept; its size is weighed
        (AMOUNT, {"amount": "Infinity"}, {"amount": float("inf")}),
        (AMOUNT, {"amount": "10000 USD"}, {}),  # not a number: derives nothing
        (AMOUNT, {"amount": [10000]}, {}),
        (AMOUNT, {"amount": True}, {}),
        (AMOUNT, {"amount": None}, {}),
        (AMOUNT, {"amount": "NaN"}, {}),
        (AMOUNT, {}, {}),  # missing
        ({"records_affected": "batch.rows"}, {"batch": {"rows": 150}}, {"records_affected": 150}),
        ({"records_affected": "batch.rows"}, {"batch": [{"rows": 150}]}, {}),
        (
            {"amount": "total", "users_affected": "to.count", "records_affected": "n"},
            {"total": "5.5", "to": {"count": 3}, "n": 7},
            {"amount": 5.5, "users_affected": 3, "records_affected": 7},
        ),
        ({}, {"amount": 10000}, {}),  # no mapping: nothing derived
    ],
)
def test_derived_blast_radius__reads_mapped_numbers_only(mapping, arguments, expected):
    assert derived_blast_radius(mapped(radius=mapping), arguments) == expected


def test_derived_blast_radius__rule_without_the_field__nothing_derived():
    # A policy version written before the mapping existed has no key at all.
    assert derived_blast_radius(rule("write"), {"amount": 10**6}) == {}


# --------------------------------------------------------------------- assess_risk, both sides


@pytest.mark.parametrize(
    ("base_risk", "declared", "derived", "expected", "reason"),
    [
        ("medium", DECLARED_SMALL, {"amount": 10000}, "critical", "arguments (amount 10000)"),
        ("medium", DECLARED_SMALL, {"amount": 1500}, "high", "arguments (amount 1500)"),
        ("medium", DECLARED_SMALL, {"amount": 42.18}, "medium", None),
        ("low", {}, {"records_affected": 100}, "high", "arguments (records_affected 100)"),
        ("low", {}, {"users_affected": 10000}, "critical", "arguments (users_affected 10000)"),
        ("low", {}, {"amount": -20000}, "critical", "arguments (amount -20000)"),
        ("low", {}, {"amount": float("inf")}, "critical", "arguments (amount infinity)"),
        # The declared side already reached it: the arguments add no reason.
        ("low", {"amount": 20000}, {"amount": 20000}, "critical", None),
        # A small derived value never lowers what the declaration reached.
        ("low", {"records_affected": 20000}, {"records_affected": 1}, "critical", None),
        ("critical", {}, {"amount": 1}, "critical", None),
    ],
)
def test_assess_risk__declared_and_derived__the_higher_wins(
    base_risk, declared, derived, expected, reason
):
    risk, why = assess_risk(base_risk, declared, None, derived)
    assert risk == expected
    arguments_reasons = [r for r in why if r.startswith("arguments (")]
    if reason is None:
        assert arguments_reasons == []
    else:
        assert arguments_reasons == [f"{reason} raise risk to {expected}"]


# ------------------------------------------------------------------------------ the gate


def test_evaluate__refund_declares_small_amount_but_arguments_say_10000__critical():
    # Given a refund tool that reads the amount from its arguments
    snap = snapshot("supervised", {TOOL: mapped(radius=AMOUNT)})
    # When the agent declares 42.18 but asks to refund 10000
    decision = decide(snap, call(arguments={"amount": 10000}, blast_radius=DECLARED_SMALL))
    # Then the arguments decide: critical, two approvals, one of a critical approver
    assert (decision.outcome, decision.reason_code, decision.risk) == (
        "pending",
        "requires_approval",
        "critical",
    )
    assert (decision.required_approvals, decision.needs_critical_approver) == (2, True)
    assert "arguments (amount 10000) raise risk to critical" in decision.reasons


def test_evaluate__autonomous_tool_with_small_declaration__not_auto_approved():
    # Given an autonomous agent whose write tool auto-runs at low risk
    snap = snapshot("autonomous", {TOOL: mapped("write", "allowed", "low", radius=AMOUNT)})
    # When the declaration is empty but the arguments move 5000
    decision = decide(snap, call(arguments={"amount": 5000}))
    # Then it waits for two people instead of running
    assert (decision.outcome, decision.reason_code, decision.risk) == (
        "pending",
        "risk_above_auto_limit",
        "high",
    )
    assert decision.required_approvals == 2
    # and with a small amount it still runs on its own
    assert decide(snap, call(arguments={"amount": 5})).outcome == "allowed"


def test_evaluate__mapped_field_not_a_number__declared_risk_kept_and_noted():
    snap = snapshot("supervised", {TOOL: mapped(radius={"records_affected": "rows"})})
    declared = {"records_affected": 500}  # high on its own
    decision = decide(snap, call(arguments={"rows": "lots"}, blast_radius=declared))
    assert (decision.outcome, decision.risk, decision.required_approvals) == ("pending", "high", 2)
    assert "argument 'rows' is not a number: records_affected not derived from it" in (
        decision.reasons
    )


def test_evaluate__numeric_limit_beside_the_mapping__non_number_denied():
    # The seeded money tools pair the mapping with a numeric limit: fail closed on shape.
    snap = snapshot(
        "supervised",
        {TOOL: mapped(radius=AMOUNT, limits=[{"field": "amount", "op": "<=", "value": 10000}])},
    )
    decision = decide(snap, call(arguments={"amount": "10000 USD"}, blast_radius=DECLARED_SMALL))
    assert (decision.outcome, decision.reason_code) == ("denied", "argument_limit")


def test_evaluate__denials_before_the_table_carry_the_derived_risk():
    snap = snapshot("supervised", {TOOL: mapped(radius=AMOUNT)})
    switch = SwitchState(id=1, scope="agent", target=SLUG)
    decision = decide(snap, call(arguments={"amount": 10000}), switches=[switch])
    assert (decision.reason_code, decision.risk) == ("kill_switch", "critical")


# ------------------------------------------------------------------- properties (hypothesis)

numbers = st.one_of(
    st.integers(min_value=-(10**7), max_value=10**7),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 99, 100, 999, 1000, 9999, 10000, 10001]),
)
odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=8),
    st.lists(numbers, max_size=2),
    numbers.map(str),
    numbers.map(lambda n: f"{n} USD"),
    st.fixed_dictionaries({"value": numbers}),
)
radius_values = st.one_of(numbers, odd_values)
declared_radii = st.fixed_dictionaries(
    {},
    optional={
        "environment": st.sampled_from(["production", "staging", "", None]),
        "reversible": st.sampled_from([True, False, None]),
        "amount": st.one_of(radius_values, st.fixed_dictionaries({"value": radius_values})),
        "records_affected": radius_values,
        "users_affected": radius_values,
    },
)
mappings = st.dictionaries(
    st.sampled_from(RADIUS_DIMENSIONS), st.sampled_from(["a", "b", "nested.c"]), max_size=3
)
arguments_ = st.fixed_dictionaries(
    {},
    optional={
        "a": radius_values,
        "b": radius_values,
        "nested": st.one_of(st.fixed_dictionaries({}, optional={"c": radius_values}), numbers),
    },
)


@settings(max_examples=300, deadline=None, database=None)
@given(
    base_risk=st.sampled_from(RISKS),
    declared=declared_radii,
    mapping=mappings,
    arguments=arguments_,
)
def test_assess_risk__with_arguments__never_below_declared_only_nor_derived_only(
    base_risk, declared, mapping, arguments
):
    derived = derived_blast_radius(mapped(radius=mapping), arguments)
    both, why = assess_risk(base_risk, declared, None, derived)
    declared_only, _ = assess_risk(base_risk, declared)
    derived_only, _ = assess_risk(base_risk, derived)
    assert RISKS.index(both) >= RISKS.index(declared_only)
    assert RISKS.index(both) >= RISKS.index(derived_only)
    assert bool(why) == (both != base_risk)


@settings(max_examples=200, deadline=None, database=None)
@given(
    tier_name=st.sampled_from(["shadow", "read_only", "draft_only", "supervised", "autonomous"]),
    effect=st.sampled_from(["read", "draft", "write"]),
    kind=st.sampled_from(["allowed", "requires_approval"]),
    base_risk=st.sampled_from(RISKS),
    declared=declared_radii,
    mapping=mappings,
    arguments=arguments_,
)
def test_evaluate__a_mapping__never_lowers_risk_nor_required_approvals(
    tier_name, effect, kind, base_risk, declared, mapping, arguments
):
    without = snapshot(tier_name, {TOOL: mapped(effect, kind, base_risk)})
    with_map = snapshot(tier_name, {TOOL: mapped(effect, kind, base_risk, radius=mapping)})
    request = call(arguments=arguments, blast_radius=declared)
    before, after = decide(without, request), decide(with_map, request)
    assert RISKS.index(after.risk) >= RISKS.index(before.risk)
    if before.outcome == "pending":
        assert after.outcome == "pending"
        assert after.required_approvals >= before.required_approvals
        assert after.needs_critical_approver >= before.needs_critical_approver
    if after.outcome == "allowed":
        assert before.outcome == "allowed"


# ---------------------------------------------------------------------------- assess_edit


def test_assess_edit__edited_amount_raises_the_bar():
    snap = snapshot("supervised", {TOOL: mapped(radius=AMOUNT)})
    small = assess_edit(snap, TOOL, {"amount": 42.18}, DECLARED_SMALL)
    assert (small.outcome, small.risk, small.required_approvals) == ("pending", "medium", 1)
    big = assess_edit(snap, TOOL, {"amount": 10000}, DECLARED_SMALL)
    assert (big.outcome, big.reason_code, big.risk) == ("pending", "requires_approval", "critical")
    assert (big.required_approvals, big.needs_critical_approver) == (2, True)
    assert "arguments (amount 10000) raise risk to critical" in big.reasons


@pytest.mark.parametrize(
    ("tier_name", "tools", "arguments", "expected"),
    [
        ("supervised", {TOOL: mapped(kind="forbidden")}, {}, ("denied", "tool_forbidden")),
        ("supervised", {}, {}, ("denied", "tool_unknown")),
        (
            "supervised",
            {TOOL: mapped(limits=[{"field": "amount", "op": "<=", "value": 100}])},
            {"amount": 500},
            ("denied", "argument_limit"),
        ),
        (
            "supervised",
            {TOOL: mapped(limits=[{"field": "amount", "op": "<=", "value": 100}])},
            {"amount": "lots"},
            ("denied", "argument_limit"),
        ),
        # A tier that only shadows now: the action is already in front of people.
        ("shadow", {TOOL: mapped()}, {}, ("pending", EDIT_REQUIRES_APPROVAL)),
        ("read_only", {TOOL: mapped()}, {}, ("denied", "tier_denies")),
        ("read_only", {TOOL: mapped(kind="allowed")}, {}, ("denied", "tier_denies")),
        ("supervised", {TOOL: mapped()}, {}, ("pending", "requires_approval")),
        ("supervised", {TOOL: mapped(kind="allowed")}, {}, ("pending", "tier_requires_approval")),
        # What the table alone would let run is still a person's decision after an edit.
        (
            "autonomous",
            {TOOL: mapped(kind="allowed", base_risk="low")},
            {},
            ("pending", EDIT_REQUIRES_APPROVAL),
        ),
        (
            "supervised",
            {TOOL: mapped("read", "allowed", "low")},
            {},
            ("pending", EDIT_REQUIRES_APPROVAL),
        ),
        (
            "autonomous",
            {TOOL: mapped(kind="allowed", base_risk="low", radius=AMOUNT)},
            {"amount": 2000},
            ("pending", "risk_above_auto_limit"),
        ),
    ],
)
def test_assess_edit__from_the_argument_limit_step_onward(tier_name, tools, arguments, expected):
    decision = assess_edit(snapshot(tier_name, tools), TOOL, arguments, {})
    assert (decision.outcome, decision.reason_code) == expected
    if decision.outcome == "pending":
        assert decision.required_approvals >= 1 and decision.ttl_seconds
    else:
        assert decision.required_approvals == 0


def test_assess_edit__no_kill_switch_activity_or_rate_steps():
    # An inactive agent over its rate limit: the gate denies a new call, but an edit of an
    # action already pending is assessed on its payload (kill switches cancel pending
    # actions by themselves).
    snap = snapshot("supervised", {TOOL: mapped()}, active=False, rate=0)
    assert decide(snap).reason_code == "agent_inactive"
    decision = assess_edit(snap, TOOL, {}, {})
    assert (decision.outcome, decision.reason_code) == ("pending", "requires_approval")


def test_assess_edit__allowed_becomes_pending_with_the_matrix_for_its_risk():
    snap = snapshot("autonomous", {TOOL: mapped(kind="allowed", base_risk="low")})
    decision = assess_edit(snap, TOOL, {}, {})
    assert (decision.risk, decision.required_approvals, decision.needs_critical_approver) == (
        "low",
        1,
        False,
    )
    assert decision.ttl_seconds == 86400


@settings(max_examples=200, deadline=None, database=None)
@given(
    tier_name=st.sampled_from(["shadow", "read_only", "draft_only", "supervised", "autonomous"]),
    effect=st.sampled_from(["read", "draft", "write"]),
    kind=st.sampled_from(["allowed", "requires_approval", "forbidden"]),
    base_risk=st.sampled_from(RISKS),
    declared=declared_radii,
    mapping=mappings,
    arguments=arguments_,
    limits=st.sampled_from([[], [{"field": "a", "op": "<=", "value": 1000}]]),
)
def test_assess_edit__agrees_with_the_gate_except_that_nothing_runs_unreviewed(
    tier_name, effect, kind, base_risk, declared, mapping, arguments, limits
):
    # One table, used twice: on an active agent with no switch and no rate pressure, the
    # edit's answer is the gate's, except that "allowed" and "shadowed" become "pending".
    snap = snapshot(tier_name, {TOOL: mapped(effect, kind, base_risk, mapping, limits)})
    gate = evaluate(snap, GateRequest(TOOL, arguments, declared), [], Counters())
    edit = assess_edit(snap, TOOL, arguments, declared)
    assert edit.risk == gate.risk
    if gate.outcome in ("allowed", "shadowed"):
        assert (edit.outcome, edit.reason_code) == ("pending", EDIT_REQUIRES_APPROVAL)
        assert edit.required_approvals >= 1
    else:
        assert edit == gate


# ------------------------------------------------------------------ validating a mapping


@pytest.mark.parametrize(
    ("mapping", "ok"),
    [
        ({}, True),
        ({"amount": "amount"}, True),
        ({"records_affected": "batch.rows", "users_affected": "to.count"}, True),
        ({"systems": "x"}, False),  # only the three size dimensions
        ({"amount": ""}, False),
        ({"amount": " amount"}, False),
        ({"amount": "a..b"}, False),
        ({"amount": "a."}, False),
        ({"amount": 5}, False),
        ({"amount": "x" * 201}, False),
        (["amount"], False),
        ("amount", False),
    ],
)
def test_validate_radius_mapping(mapping, ok):
    assert (validate_radius_mapping(mapping) == []) == ok


def test_radius_mapping_text__readable():
    assert radius_mapping_text({"users_affected": "to.count", "amount": "amount"}) == (
        "amount ← arguments.amount; users_affected ← arguments.to.count"
    )
    assert radius_mapping_text({}) == ""
