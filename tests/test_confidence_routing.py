"""Confidence routing (issue 21 part 4): a tool rule's ``min_confidence`` holds for a person
a call the rule and tier table would let run when the agent's ``rationale.confidence``
(missing counts as 0) is below it, with reason code ``low_confidence``. Denials, shadowing
and calls already held keep their answer; a standing approval never answers such a hold;
governance classifies adding or raising a minimum as tightening and lowering or removing
it as loosening; readiness counts the escalations.

The engine rows are written out by hand from the issue, never computed by the engine's own
logic; snapshots come from the test_policy_engine builders (the default ladder's data)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from hypothesis import event, given, settings
from hypothesis import strategies as st

from approvals import actions, standing
from approvals.actions import ActionRefused
from approvals.models import Action, StandingApproval
from governance.backtest import backtest
from governance.readiness import compute_readiness
from rollout.models import ToolRule
from rollout.policy import RISKS, Counters, GateRequest, evaluate
from rollout.policy_diff import LOOSENING, TIGHTENING, changes_between
from rollout.replay import replay_action
from tests import factories
from tests.test_policy_engine import EFFECTS, TIER_NAMES, gate_scenarios, rule, snapshot

TOOL = "do_thing"


def confident_rule(effect: str = "read", kind: str = "allowed", minimum=0.8, **extra) -> dict:
    return {**rule(effect, kind, extra.pop("base_risk", "low")), "min_confidence": minimum}


def decide(tier: str, tool_rule: dict, confidence, blast_radius: dict | None = None):
    request = GateRequest(TOOL, {}, blast_radius or {}, confidence=confidence)
    return evaluate(snapshot(tier, {TOOL: tool_rule}), request, [], Counters())


# ----------------------------------------------------------------------------- the engine

# (tier, effect, kind, min_confidence, confidence) -> (outcome, reason_code)
CONFIDENCE_TABLE = [
    # below, equal, above the minimum, on a call the table lets run
    ("supervised", "read", "allowed", 0.8, 0.79, "pending", "low_confidence"),
    ("supervised", "read", "allowed", 0.8, 0.8, "allowed", "allowed"),
    ("supervised", "read", "allowed", 0.8, 0.95, "allowed", "allowed"),
    # missing counts as 0: held by any positive minimum, not by a minimum of 0
    ("supervised", "read", "allowed", 0.8, None, "pending", "low_confidence"),
    ("supervised", "read", "allowed", 0.0, None, "allowed", "allowed"),
    ("supervised", "draft", "allowed", 1.0, 0.99, "pending", "low_confidence"),
    # no rule: the table's answer whatever the confidence
    ("supervised", "read", "allowed", None, None, "allowed", "allowed"),
    ("supervised", "read", "allowed", None, 0.01, "allowed", "allowed"),
    # auto-approval is an allowed answer too
    ("autonomous", "write", "allowed", 0.8, 0.5, "pending", "low_confidence"),
    ("autonomous", "write", "allowed", 0.8, 0.9, "allowed", "auto_approved"),
    # a tier that only shadows still shadows: nothing runs, nobody is asked
    ("shadow", "write", "allowed", 0.8, 0.1, "shadowed", "tier_shadow"),
    ("shadow", "write", "requires_approval", 0.8, None, "shadowed", "tier_shadow"),
    # denials stand
    ("read_only", "write", "allowed", 0.8, 0.1, "denied", "tier_denies"),
    ("supervised", "read", "forbidden", 0.8, 0.1, "denied", "tool_forbidden"),
    # already held for people: the table's own reason stands
    ("supervised", "write", "requires_approval", 0.8, 0.1, "pending", "requires_approval"),
    ("supervised", "write", "allowed", 0.8, 0.1, "pending", "tier_requires_approval"),
]


@pytest.mark.parametrize(
    ("tier", "effect", "kind", "minimum", "confidence", "outcome", "code"), CONFIDENCE_TABLE
)
def test_evaluate__min_confidence_table(tier, effect, kind, minimum, confidence, outcome, code):
    decision = decide(tier, confident_rule(effect, kind, minimum), confidence)
    assert (decision.outcome, decision.reason_code) == (outcome, code)


def test_evaluate__low_confidence__reason_states_both_numbers_and_matrix_bar():
    # Given a read tool of base risk high and a minimum of 0.8
    tool_rule = confident_rule("read", "allowed", 0.8, base_risk="high")
    decision = decide("supervised", tool_rule, 0.42)
    # Then it waits with the approval matrix's bar for high risk, like any pending call
    assert (decision.outcome, decision.risk) == ("pending", "high")
    assert (decision.required_approvals, decision.needs_critical_approver) == (2, False)
    assert decision.ttl_seconds == 14400
    assert decision.reasons[0] == (
        "confidence 0.42 is below do_thing's minimum 0.8 to run without a person"
    )
    assert decision.reasons[1] == "tier supervised allows read tools"
    # A production blast radius raises the risk and the bar; its reason is kept
    raised = decide("supervised", tool_rule, 0.42, {"environment": "production"})
    assert raised.required_approvals == 2 and raised.risk == "high"


def test_evaluate__missing_confidence__says_it_counts_as_zero():
    decision = decide("supervised", confident_rule(minimum=0.5), None)
    assert decision.reasons[0] == (
        "no confidence given (counts as 0); do_thing needs at least 0.5 to run without a person"
    )


def test_evaluate__unreadable_minimum_in_a_damaged_snapshot__holds_fail_closed():
    decision = decide("supervised", confident_rule(minimum="high"), 0.99)
    assert (decision.outcome, decision.reason_code) == ("pending", "low_confidence")


confidences = st.one_of(st.none(), st.floats(0, 1), st.sampled_from([0.0, 0.5, 0.8, 1.0]))
minimums = st.one_of(st.none(), st.floats(0, 1), st.sampled_from([0.0, 0.5, 0.8, 1.0]))


@settings(max_examples=150, deadline=None, database=None)
@given(scenario=gate_scenarios(), minimum=minimums, confidence=confidences)
def test_evaluate__any_call__never_allowed_below_the_rules_min_confidence(
    scenario, minimum, confidence
):
    snap, request = scenario["snapshot"], scenario["request"]
    if request.tool in snap["tools"]:
        snap["tools"][request.tool] = {**snap["tools"][request.tool], "min_confidence": minimum}
    asked = replace(request, confidence=confidence)
    decision = evaluate(snap, asked, scenario["switches"], scenario["counters"])
    without = evaluate(
        snap,
        replace(request, confidence=1.0),
        scenario["switches"],
        scenario["counters"],
    )
    event(f"{decision.outcome}/{decision.reason_code}")
    below = minimum is not None and (confidence or 0.0) < minimum
    if below:
        assert decision.outcome != "allowed"
    # Confidence only ever turns an allowed answer into a held one: every other answer
    # (and the risk) is what a fully confident call gets.
    if without.outcome == "allowed" and below:
        assert (decision.outcome, decision.reason_code) == ("pending", "low_confidence")
        assert decision.required_approvals >= 1
    else:
        assert (decision.outcome, decision.reason_code) == (without.outcome, without.reason_code)
    assert decision.risk == without.risk


@settings(max_examples=60, deadline=None, database=None)
@given(
    tier=st.sampled_from(TIER_NAMES),
    effect=st.sampled_from(EFFECTS),
    base_risk=st.sampled_from(RISKS),
    minimum=st.floats(0, 1),
    confidence=confidences,
)
def test_evaluate__at_or_above_minimum__same_answer_as_no_minimum(
    tier, effect, base_risk, minimum, confidence
):
    if (confidence or 0.0) < minimum:
        return
    with_minimum = decide(
        tier, confident_rule(effect, "allowed", minimum, base_risk=base_risk), confidence
    )
    plain = decide(tier, rule(effect, "allowed", base_risk), confidence)
    assert with_minimum == plain


# ------------------------------------------------------------------------ policy diff


RULE = {k: v for k, v in factories.rule("send_email", "read", "allowed").items() if k != "tool"}


@pytest.mark.parametrize(
    ("before", "after", "direction", "text"),
    [
        (None, 0.8, TIGHTENING, "send_email: add minimum confidence 0.8"),
        (0.5, 0.8, TIGHTENING, "send_email: raise minimum confidence 0.5 → 0.8"),
        (0.8, 0.5, LOOSENING, "send_email: lower minimum confidence 0.8 → 0.5"),
        (0.8, None, LOOSENING, "send_email: remove minimum confidence 0.8"),
        (0.8, "odd", LOOSENING, 'send_email: lower minimum confidence 0.8 → "odd"'),
    ],
)
def test_policy_diff__min_confidence__classified_with_readable_line(before, after, direction, text):
    changes = changes_between(
        {"tools": {"send_email": {**RULE, "min_confidence": before}}},
        {"tools": {"send_email": {**RULE, "min_confidence": after}}},
    )
    assert [(c.path, c.direction, c.text) for c in changes] == [
        ("tools.send_email.min_confidence", direction, text)
    ]


def test_policy_diff__new_tool_with_a_minimum__described_with_it():
    changes = changes_between({"tools": {}}, {"tools": {"lookup": {**RULE, "min_confidence": 0.8}}})
    assert [(c.direction, c.text) for c in changes] == [
        (LOOSENING, "add lookup (read, allowed, base risk low, minimum confidence 0.8)")
    ]


def test_policy_diff__rule_stored_before_the_field__same_as_no_minimum():
    assert (
        changes_between(
            {"tools": {"send_email": dict(RULE)}},
            {"tools": {"send_email": {**RULE, "min_confidence": None}}},
        )
        == []
    )


# ------------------------------------------------------------ through the API and pages


@pytest.fixture
def governor(reference_data):
    return factories.make_user("gwen", groups=("governance_owner",))


@pytest.fixture
def governor2(reference_data):
    return factories.make_user("gus", groups=("governance_owner",))


def api(user):
    client = Client()
    client.force_login(user)

    def call(method, url, body=None):
        response = client.generic(
            method,
            url,
            json.dumps(body) if body is not None else "",
            content_type="application/json",
        )
        return response.status_code, (response.json() if response.content else None)

    return call


def propose(call, minimum, tool="get_order_status"):
    return call(
        "POST",
        "/api/v1/agents/support-assistant/changes",
        {"changes": {"tools": {tool: {"min_confidence": minimum}}}, "reason": "check the unsure"},
    )


def live_minimum(tool="get_order_status"):
    return ToolRule.objects.get(agent__slug="support-assistant", tool=tool).min_confidence


def test_governance_api__add_applies__lower_opens_request__versioned(
    support_agent, governor, governor2
):
    gwen, gus = api(governor), api(governor2)
    status, body = propose(gwen, 0.8)
    assert status == 201 and (body["classification"], body["applied"]) == ("tightening", True)
    assert live_minimum() == 0.8
    _, version = gwen("GET", f"/api/v1/agents/support-assistant/versions/{body['policy_version']}")
    assert version["snapshot"]["tools"]["get_order_status"]["min_confidence"] == 0.8
    # Lowering it waits for a second governance owner
    status, body = propose(gwen, 0.5)
    assert (body["classification"], body["applied"]) == ("loosening", False)
    assert [c["text"] for c in body["change_request"]["changes"]] == [
        "get_order_status: lower minimum confidence 0.8 → 0.5"
    ]
    assert live_minimum() == 0.8
    change = body["change_request"]["id"]
    status, body = gus("POST", f"/api/v1/changes/{change}/approve", {"revision": 1})
    assert status == 200 and body["status"] == "applied"
    assert live_minimum() == 0.5


@pytest.mark.parametrize("bad", [1.5, -0.1, "0.8", True, [0.8], {"v": 1}])
def test_governance_api__bad_minimum__400_with_field_nothing_written(support_agent, governor, bad):
    gwen = api(governor)
    versions = support_agent.policy_versions.count()
    status, body = propose(gwen, bad)
    assert status == 400 and body["code"] == "invalid"
    assert "tools.get_order_status.min_confidence" in body["fields"]
    assert live_minimum() is None and support_agent.policy_versions.count() == versions


def gate(token, key, confidence=None):
    body = {"tool": "get_order_status", "arguments": {"order_id": "ORD-1"}}
    if confidence is not None:
        body["rationale"] = {"objective": "answer the customer", "confidence": confidence}
    response = Client().post(
        "/api/v1/actions",
        json.dumps(body),
        content_type="application/json",
        headers={"authorization": f"Bearer {token}", "idempotency-key": key},
    )
    return response.status_code, response.json()


def test_agent_api__below_minimum_waits__at_minimum_runs(support_agent, governor):
    propose(api(governor), 0.7)
    token = factories.make_token(support_agent)
    status, held = gate(token, "k-low", 0.6)
    assert status == 201
    assert (held["status"], held["reason_code"]) == ("pending", "low_confidence")
    assert held["reasons"][0] == (
        "confidence 0.6 is below get_order_status's minimum 0.7 to run without a person"
    )
    assert held["required_approvals"] == 1 and held["expires_at"]
    status, ran = gate(token, "k-ok", 0.7)
    assert (status, ran["status"], ran["reason_code"]) == (201, "allowed", "allowed")
    status, missing = gate(token, "k-none")
    assert (missing["status"], missing["reason_code"]) == ("pending", "low_confidence")
    # The replay of the stored action weighs the stored confidence, as the gate did
    action = Action.objects.get(pk=held["id"])
    replayed = replay_action(action)
    assert replayed["with_current_policy"]["reason_code"] == "low_confidence"
    assert replayed["with_current_policy"]["same_as_recorded"] is True
    assert replay_action(Action.objects.get(pk=ran["id"]))["with_current_policy"]["outcome"] == (
        "allowed"
    )


BOUNDS = {"allowed": True, "max_minutes": 60, "max_uses": 5, "max_risk": "high", "at_most": []}


def test_standing_approval__never_answers_a_low_confidence_hold(
    reference_data, reviewer, reviewer2
):
    # Given an autonomous agent whose write tool (base risk low) allows standing approvals
    # and asks for confidence 0.9 before it runs without a person
    rules = [{**factories.rule("notify", "write", "allowed"), "min_confidence": 0.9}]
    rules[0]["standing"] = BOUNDS
    agent = factories.make_agent("unsure-bot", tier="autonomous", rules=rules)
    arguments = {"to": "ops"}
    # and two reviewers' standing approval from a card held for its risk (500 records: high)
    card = factories.submit(
        agent, "notify", arguments, blast_radius={"records_affected": 500},
        rationale={"confidence": 0.95},
    )  # fmt: skip
    assert (card.status, card.reason_code) == ("pending", "risk_above_auto_limit")
    for person in (reviewer, reviewer2):
        actions.approve(action_id=card.pk, user=person, standing_terms=standing.Terms(30, 5))
    made = StandingApproval.objects.get(source_action=card)
    # When the same call comes at low risk with a confidence below the minimum
    unsure = factories.submit(agent, "notify", arguments, rationale={"confidence": 0.3})
    # Then it waits for a person: the standing approval (risk high, same arguments and
    # environment: it would match) does not answer it, and no use is taken
    assert (unsure.status, unsure.reason_code) == ("pending", "low_confidence")
    made.refresh_from_db()
    assert made.uses == 0 and made.ended_at is None
    # while a call held for its risk again is answered by it
    again = factories.submit(
        agent, "notify", arguments, blast_radius={"records_affected": 500},
        rationale={"confidence": 0.95},
    )  # fmt: skip
    assert (again.status, again.reason_code) == ("approved", "standing_approval")
    # And the low-confidence card offers no terms: asking for them is 400 with the field
    with pytest.raises(ActionRefused) as refused:
        actions.approve(action_id=unsure.pk, user=reviewer, standing_terms=standing.Terms(5, 1))
    assert refused.value.code == "standing_out_of_bounds" and "standing" in refused.value.fields
    unsure.refresh_from_db()
    assert unsure.status == "pending" and not unsure.decisions.exists()


def test_readiness_and_backtest__count_low_confidence_escalations(
    support_agent, governor, reviewer
):
    propose(api(governor), 0.8)
    held = [
        factories.submit(support_agent, "get_order_status", {"order_id": str(n)},
                         rationale={"confidence": 0.5})
        for n in range(4)
    ]  # fmt: skip
    factories.submit(
        support_agent, "get_order_status", {"order_id": "9"}, rationale={"confidence": 0.9}
    )
    actions.approve(action_id=held[0].pk, user=reviewer)
    actions.approve(action_id=held[1].pk, user=reviewer)
    actions.reject(action_id=held[2].pk, user=reviewer, comment="not sure either")
    support_agent.refresh_from_db()
    readiness = compute_readiness(support_agent)
    low = readiness.low_confidence
    assert (low.escalated, low.approved, low.rejected, low.pending, low.other) == (4, 2, 1, 1, 0)
    # the people's decisions on them count as human decisions (rejection rate)
    assert readiness.counts["rejected"] == 1 and readiness.counts["human_approved"] == 2
    status, body = api(governor)("GET", "/api/v1/agents/support-assistant/readiness")
    assert status == 200
    assert body["low_confidence"] == {
        "escalated": 4, "approved": 2, "rejected": 1, "pending": 1, "other": 0
    }  # fmt: skip
    # The backtest replays each with its stored confidence: without the minimum they run
    snap = support_agent.current_policy.snapshot
    result = backtest(support_agent, snap, now=timezone.now() + timedelta(seconds=1))
    assert result.by_outcome == {"pending": 4, "allowed": 1}
    loosened = {**snap, "tools": {**snap["tools"]}}
    loosened["tools"]["get_order_status"] = {
        **snap["tools"]["get_order_status"],
        "min_confidence": None,
    }
    again = backtest(support_agent, loosened, now=timezone.now() + timedelta(seconds=1))
    assert again.by_outcome == {"allowed": 5} and again.newly_without_human == 4
    # The agent page shows the readiness line and the rule's minimum
    page = Client()
    page.force_login(governor)
    html = page.get("/agents/support-assistant").content.decode()
    assert "Low-confidence escalations:</strong> 4 in the last" in html
    html = page.get("/agents/support-assistant/policy").content.decode()
    assert 'data-testid="min-confidence">0.8<' in html


@pytest.mark.parametrize(
    ("value", "message"),
    [("1.5", "less than or equal to 1"), ("-0.2", "greater than or equal to 0"), ("x", "number")],
)
def test_rule_form__minimum_out_of_range__field_error_nothing_changes(
    support_agent, governor, value, message
):
    client = Client()
    client.force_login(governor)
    response = client.post(
        "/agents/support-assistant/rules/edit/get_order_status",
        {
            "effect": "read",
            "rule": "allowed",
            "base_risk": "low",
            "min_confidence": value,
            "reason": "unsure",
        },
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page and 'id="id_min_confidence"' in page and "aria-invalid" in page
    support_agent.refresh_from_db()
    assert support_agent.current_policy.number == 1 and live_minimum() is None
