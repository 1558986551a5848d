"""Standing approvals ("approve, and allow the same for a while", issue 20 part 4): bounds are
policy (validated, classified, readable), a card's approvers create one only when all give
the same terms, the gate answers a matching call ``approved`` at once (counted, audited,
never for a replay, a shadow agent or the person the call is for), and each ending —
expiry, count, revoke, kill switch, policy change — holds."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from approvals import actions, standing
from approvals.actions import ActionRefused
from approvals.models import Action, Outbox, StandingApproval
from audit.chain import Actor
from audit.models import AuditEvent
from governance import actions as governance_actions
from governance.actions import GovernanceRefused
from governance.models import ChangeRequest
from grants.tokens import read_grant
from incidents.actions import engage_kill_switch, release_kill_switch
from rollout.models import KillSwitch
from rollout.policy_diff import LOOSENING, TIGHTENING, changes_between
from rollout.standing import match_problem, normalize_bounds, terms_problems
from tests import factories

REFUND = "create_refund_request"
BOUNDS = {"allowed": True, "max_minutes": 60, "max_uses": 3, "max_risk": "medium", "at_most": []}
REFUND_BOUNDS = {**BOUNDS, "at_most": ["amount"]}


def standing_rules(email_bounds=BOUNDS, refund_bounds=REFUND_BOUNDS):
    rules = []
    for rule in factories.SUPPORT_RULES:
        rule = dict(rule)
        if rule["tool"] == "send_email":
            rule["standing"] = email_bounds
        if rule["tool"] == REFUND:
            rule["standing"] = {**refund_bounds, "at_most": ["amount"]}
        rules.append(rule)
    return rules


@pytest.fixture
def agent(reference_data):
    return factories.make_agent("support-assistant", rules=standing_rules())


@pytest.fixture
def governor(reference_data):
    return factories.make_user("gwen", groups=("governance_owner",))


@pytest.fixture
def governor2(reference_data):
    return factories.make_user("gus", groups=("governance_owner",))


EMAIL = {"to": "a@example.com", "subject": "Your order"}


def approve_standing(
    agent, reviewer, tool="send_email", arguments=None, minutes=30, uses=3, **body
):
    action = factories.submit(agent, tool, arguments or dict(EMAIL), **body)
    actions.approve(
        action_id=action.pk, user=reviewer, standing_terms=standing.Terms(minutes, uses)
    )
    return StandingApproval.objects.get(source_action=action)


def events_of(verb, **data):
    found = AuditEvent.objects.filter(verb=verb).order_by("id")
    return [e for e in found if all(e.data.get(k) == v for k, v in data.items())]


# --- bounds are policy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "field", "stored"),
    [
        (None, None, {}),
        ({"allowed": False, "max_minutes": 5}, None, {}),
        ({"allowed": True}, None, {**BOUNDS, "max_uses": 10}),
        ({"allowed": True, "max_risk": "critical"}, "max_risk", None),
        ({"allowed": True, "max_risk": "extreme"}, "max_risk", None),
        ({"allowed": True, "max_minutes": 0}, "max_minutes", None),
        ({"allowed": True, "max_minutes": 1441}, "max_minutes", None),
        ({"allowed": True, "max_uses": True}, "max_uses", None),
        ({"allowed": True, "max_uses": 1001}, "max_uses", None),
        ({"allowed": True, "at_most": "amount"}, "at_most", None),
        ({"allowed": True, "at_most": [""]}, "at_most", None),
        ({"allowed": "yes"}, "allowed", None),
        ({"allowed": True, "forever": True}, "forever", None),
        ([], "", None),
    ],
)
def test_bounds__validated_per_field(value, field, stored):
    errors: dict = {}
    result = normalize_bounds(value, errors, "tools.x.standing")
    if field is None:
        assert errors == {} and result == stored
    else:
        assert list(errors) == [f"tools.x.standing{'.' + field if field else ''}"]


@pytest.mark.parametrize(
    ("before", "after", "direction", "text"),
    [
        ({}, BOUNDS, LOOSENING, "send_email: allow standing approvals (up to 60 min, 3 uses"),
        (BOUNDS, {}, TIGHTENING, "send_email: no standing approvals"),
        (BOUNDS, {**BOUNDS, "max_minutes": 120}, LOOSENING, "longest 60 min → 120 min"),
        (BOUNDS, {**BOUNDS, "max_minutes": 10}, TIGHTENING, "longest 60 min → 10 min"),
        (BOUNDS, {**BOUNDS, "max_uses": 9}, LOOSENING, "most uses 3 → 9"),
        (BOUNDS, {**BOUNDS, "max_uses": 1}, TIGHTENING, "most uses 3 → 1"),
        (BOUNDS, {**BOUNDS, "max_risk": "high"}, LOOSENING, "risk ≤ medium → high"),
        (BOUNDS, {**BOUNDS, "max_risk": "low"}, TIGHTENING, "risk ≤ medium → low"),
        (BOUNDS, {**BOUNDS, "at_most": ["amount"]}, LOOSENING, "amount may be lower"),
        ({**BOUNDS, "at_most": ["amount"]}, BOUNDS, TIGHTENING, "amount must be equal"),
    ],
)
def test_bounds__classified_with_readable_text(before, after, direction, text):
    rule = factories.rule("send_email", "write", "requires_approval", "medium")
    del rule["tool"]
    changes = changes_between(
        {"tools": {"send_email": {**rule, "standing": before}}},
        {"tools": {"send_email": {**rule, "standing": after}}},
    )
    assert [c.direction for c in changes] == [direction]
    assert text in changes[0].text


def test_bounds__api__critical_refused_with_field(agent, governor):
    client = Client()
    client.force_login(governor)
    response = client.post(
        "/api/v1/agents/support-assistant/changes",
        json.dumps(
            {
                "changes": {"tools": {"send_email": {"standing": {"max_risk": "critical"}}}},
                "reason": "try",
            }
        ),
        content_type="application/json",
    )
    body = response.json()
    assert response.status_code == 400 and body["code"] == "invalid"
    assert "tools.send_email.standing.max_risk" in body["fields"]


def test_bounds__turning_on_is_a_change_request__narrowing_applies_at_once(
    agent, governor, governor2
):
    bare = factories.make_agent("bare-bot")
    result = governance_actions.propose_change(
        agent=bare,
        user=governor,
        changes={"tools": {"send_email": {"standing": {"allowed": True}}}},
        reason="reviewers approve the same email ten times an hour",
    )
    assert result.change_request is not None and not result.applied
    governance_actions.approve_change_request(
        change_request_id=result.change_request.pk, user=governor2
    )
    assert bare.tool_rules.get(tool="send_email").standing["allowed"] is True

    narrowed = governance_actions.propose_change(
        agent=agent,
        user=governor,
        changes={"tools": {"send_email": {"standing": {"max_uses": 2}}}},
        reason="fewer",
    )
    assert narrowed.applied
    assert agent.tool_rules.get(tool="send_email").standing["max_uses"] == 2


# --- creating one -------------------------------------------------------------------------------


def test_create__one_approver__created_with_terms_audited(agent, reviewer):
    made = approve_standing(agent, reviewer, minutes=30, uses=3)
    assert (made.tool, made.max_uses, made.minutes, made.risk) == ("send_email", 3, 30, "medium")
    assert list(made.approvers.all()) == [reviewer]
    assert made.arguments == EMAIL and made.uses == 0
    assert 29 * 60 < (made.expires_at - timezone.now()).total_seconds() <= 30 * 60
    (event,) = events_of("standing.created")
    assert event.data["approvers"] == ["rita"] and (event.data["minutes"], event.data["uses"]) == (
        30,
        3,
    )


@pytest.mark.parametrize(
    ("minutes", "uses", "field"),
    [(61, 1, "standing_minutes"), (10, 4, "standing_uses"), (0, 1, "standing_minutes")],
)
def test_create__terms_out_of_bounds__400_and_nothing_recorded(
    agent, reviewer, minutes, uses, field
):
    action = factories.submit(agent, "send_email", dict(EMAIL))
    with pytest.raises(ActionRefused) as exc:
        actions.approve(
            action_id=action.pk, user=reviewer, standing_terms=standing.Terms(minutes, uses)
        )
    assert (exc.value.status, exc.value.code) == (400, "standing_out_of_bounds")
    assert field in exc.value.fields
    action.refresh_from_db()
    assert action.status == "pending" and not action.decisions.exists()


def test_create__tool_without_bounds_or_risk_above__refused(agent, reviewer):
    crm = factories.submit(agent, "update_crm_note", {"note": "x"})  # no standing bounds
    with pytest.raises(ActionRefused) as off:
        actions.approve(action_id=crm.pk, user=reviewer, standing_terms=standing.Terms(5, 1))
    assert off.value.code == "standing_out_of_bounds" and "standing" in off.value.fields
    high = factories.submit(
        agent, "send_email", dict(EMAIL), blast_radius={"amount": {"value": 5000}}
    )
    assert high.risk == "high"
    with pytest.raises(ActionRefused) as exc:
        actions.approve(action_id=high.pk, user=reviewer, standing_terms=standing.Terms(5, 1))
    assert exc.value.code == "standing_out_of_bounds" and "standing" in exc.value.fields


def test_create__two_approvers_different_terms__approved_without_one(
    agent, reviewer, reviewer2, governor, governor2
):
    # A two-approver card: the agent's policy asks two approvals for medium risk
    governance_actions.propose_change(
        agent=agent,
        user=governor,
        changes={"tools": {"send_email": {"standing": {"max_risk": "high"}}}},
        reason="high too",
    )
    cr = ChangeRequest.objects.get()
    governance_actions.approve_change_request(change_request_id=cr.pk, user=governor2)
    high = {"blast_radius": {"amount": {"value": 5000}}}
    action = factories.submit(agent, "send_email", dict(EMAIL), **high)
    assert action.required_approvals == 2
    actions.approve(action_id=action.pk, user=reviewer, standing_terms=standing.Terms(30, 3))
    actions.approve(action_id=action.pk, user=reviewer2, standing_terms=standing.Terms(30, 2))
    action.refresh_from_db()
    assert action.status == "approved"
    assert not StandingApproval.objects.exists()
    (why,) = events_of("standing.not_created")
    assert "same standing terms" in why.data["why"]
    # The same terms from both: created, with both approvers
    again = factories.submit(agent, "send_email", dict(EMAIL), **high)
    actions.approve(action_id=again.pk, user=reviewer, standing_terms=standing.Terms(30, 3))
    actions.approve(action_id=again.pk, user=reviewer2, standing_terms=standing.Terms(30, 3))
    made = StandingApproval.objects.get()
    assert {u.username for u in made.approvers.all()} == {"rita", "rob"}


# --- matching at the gate ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "risk", "why"),
    [
        ({"to": "a@example.com", "amount": 100}, "medium", None),
        ({"to": "a@example.com", "amount": 99.5}, "medium", None),
        ({"to": "a@example.com", "amount": 101}, "medium", "above"),
        ({"to": "a@example.com", "amount": "50"}, "medium", "not a number"),
        ({"to": "a@example.com", "amount": True}, "medium", "not a number"),
        ({"to": "b@example.com", "amount": 100}, "medium", "differs"),
        ({"to": "a@example.com"}, "medium", "other fields"),
        ({"to": "a@example.com", "amount": 100, "cc": "x"}, "medium", "other fields"),
        ({"to": "a@example.com", "amount": 100}, "high", "risk"),
        ({"to": "a@example.com", "amount": 100}, "low", None),
    ],
)
def test_match__table(arguments, risk, why):
    problem = match_problem(
        {"to": "a@example.com", "amount": 100}, ["amount"], "medium", arguments, risk
    )
    assert (problem is None) if why is None else (why in problem)


def test_match__equal_fields_are_json_equal():
    approved = {"flag": True, "n": 1, "nested": {"a": [1, 2]}}
    assert match_problem(approved, [], "low", {"flag": 1, "n": 1, "nested": {"a": [1, 2]}}, "low")
    assert match_problem(
        approved, [], "low", {"flag": True, "n": "1", "nested": {"a": [1, 2]}}, "low"
    )
    assert match_problem(approved, [], "low", dict(approved), "low") is None


def test_terms__table():
    assert terms_problems(BOUNDS, 60, 3, "medium") == {}
    assert set(terms_problems(BOUNDS, 61, 4, "high")) == {
        "standing_minutes",
        "standing_uses",
        "standing",
    }
    assert set(terms_problems({}, 1, 1, "low")) == {"standing"}


def test_gate__matching_call__approved_at_once_counted_audited_webhook(agent, reviewer):
    made = approve_standing(agent, reviewer, uses=3)
    covered = factories.submit(
        agent, "send_email", dict(EMAIL), callback_url="https://agent.example.com/hook"
    )
    assert covered.status == "approved" and covered.reason_code == "standing_approval"
    assert covered.standing_approval_id == made.pk and covered.grant_expires_at
    # It carries an execution grant for exactly these arguments, like any approval
    claims = read_grant(covered.grant)
    assert (claims["sub"], claims["tool"]) == (str(covered.pk), "send_email")
    assert claims["payload_hash"] == covered.payload_hash
    made.refresh_from_db()
    assert made.uses == 1
    verbs = list(
        AuditEvent.objects.filter(target_type="action", target_id=str(covered.pk))
        .order_by("id")
        .values_list("verb", "data")
    )
    assert [v for v, _ in verbs] == ["action.submitted", "action.approved"]
    assert verbs[0][1]["outcome"] == "pending" and verbs[0][1]["standing_approval"] == made.pk
    assert verbs[1][1]["standing_approval"] == made.pk and verbs[1][1]["use"] == 1
    assert Outbox.objects.filter(action=covered, payload__event="action.approved").exists()
    # The agent executes it like any approved action
    actions.report_execution(
        action_id=covered.pk,
        agent=agent,
        outcome="succeeded",
        reported_hash=covered.payload_hash,
    )


def test_gate__other_arguments_or_environment__pending(agent, reviewer):
    approve_standing(agent, reviewer, blast_radius={"environment": "staging"})
    assert factories.submit(agent, "send_email", {**EMAIL, "to": "b@x.com"}).status == "pending"
    assert factories.submit(agent, "send_email", dict(EMAIL)).status == "pending"  # no env
    staging = {"environment": "staging"}
    assert factories.submit(agent, "send_email", dict(EMAIL), blast_radius=staging).status == (
        "approved"
    )


def test_gate__at_most_field__lower_matches_higher_does_not(agent, reviewer):
    approve_standing(agent, reviewer, tool=REFUND, arguments={"order_id": "O1", "amount": 300})
    assert factories.submit(agent, REFUND, {"order_id": "O1", "amount": 120}).status == "approved"
    assert factories.submit(agent, REFUND, {"order_id": "O1", "amount": 301}).status == "pending"
    assert factories.submit(agent, REFUND, {"order_id": "O2", "amount": 10}).status == "pending"


def test_gate__on_behalf_of_an_approver__pending(agent, reviewer):
    approve_standing(agent, reviewer)
    mine = factories.submit(agent, "send_email", dict(EMAIL), on_behalf_of="RITA")
    assert mine.status == "pending"
    other = factories.submit(agent, "send_email", dict(EMAIL), on_behalf_of="someone")
    assert other.status == "approved"


def test_gate__replay__returns_stored_answer_without_a_use(agent, reviewer):
    made = approve_standing(agent, reviewer)
    body = {"tool": "send_email", "arguments": dict(EMAIL)}
    first = actions.submit_action(agent=agent, idempotency_key="k1", body=body)
    replay = actions.submit_action(agent=agent, idempotency_key="k1", body=body)
    assert (first.created, replay.created) == (True, False)
    assert replay.action.pk == first.action.pk and replay.action.status == "approved"
    made.refresh_from_db()
    assert made.uses == 1


def test_gate__never_for_an_agent_in_shadow(reference_data, reviewer):
    shadow = factories.make_agent("shadow-bot", tier="shadow", rules=standing_rules())
    action = factories.submit(shadow, "send_email", dict(EMAIL))
    assert action.status == "shadowed"
    supervised = factories.make_agent("sup-bot", rules=standing_rules())
    pending = factories.submit(supervised, "send_email", dict(EMAIL))
    supervised.refresh_from_db()
    snapshot = dict(supervised.current_policy.snapshot)
    snapshot["tier"] = {**snapshot["tier"], "name": "shadow"}
    assert standing.terms_refusal(pending, standing.Terms(5, 1), snapshot).code == (
        "standing_out_of_bounds"
    )


def test_gate__allowed_and_denied_calls_never_use_it(agent, reviewer):
    made = approve_standing(agent, reviewer)
    assert factories.submit(agent, "get_order_status", {"order_id": "1"}).status == "allowed"
    assert factories.submit(agent, "approve_refund", dict(EMAIL)).status == "denied"
    made.refresh_from_db()
    assert made.uses == 0


# --- ending -------------------------------------------------------------------------------------


def test_end__count__last_use_ends_it(agent, reviewer):
    made = approve_standing(agent, reviewer, uses=2)
    statuses = [factories.submit(agent, "send_email", dict(EMAIL)).status for _ in range(3)]
    assert statuses == ["approved", "approved", "pending"]
    made.refresh_from_db()
    assert (made.uses, made.end_reason) == (2, "used_up") and made.ended_at
    assert events_of("standing.ended", reason="used_up")


def test_end__expiry(agent, reviewer):
    made = approve_standing(agent, reviewer)
    StandingApproval.objects.filter(pk=made.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert factories.submit(agent, "send_email", dict(EMAIL)).status == "pending"
    made.refresh_from_db()
    assert made.end_reason == "expired" and made.uses == 0
    assert events_of("standing.ended", reason="expired")


def test_end__expiry_sweep__audited_when_time_runs_out_without_a_call(agent, reviewer):
    from approvals.tasks import expire_stale_actions

    made = approve_standing(agent, reviewer)
    live = approve_standing(agent, reviewer, arguments={**EMAIL, "to": "b@example.com"})
    StandingApproval.objects.filter(pk=made.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    expire_stale_actions()
    made.refresh_from_db()
    live.refresh_from_db()
    assert made.end_reason == "expired" and made.ended_by == "system:expiry"
    assert live.ended_at is None
    assert len(events_of("standing.ended", reason="expired")) == 1
    expire_stale_actions()  # running again changes nothing more
    assert len(events_of("standing.ended", reason="expired")) == 1


def test_end__revoke_by_any_reviewer__audited_at_once(agent, reviewer, reviewer2, other_agent):
    made = approve_standing(agent, reviewer)
    stranger = factories.make_user("sam", agent_perms={"review_agent": other_agent})
    with pytest.raises(Exception) as exc:
        standing.revoke(standing_id=made.pk, user=stranger)
    assert exc.value.code == "not_found"
    standing.revoke(standing_id=made.pk, user=reviewer2)
    made.refresh_from_db()
    assert made.end_reason == "revoked" and made.ended_by == "user:rob"
    assert factories.submit(agent, "send_email", dict(EMAIL)).status == "pending"
    with pytest.raises(Exception) as again:
        standing.revoke(standing_id=made.pk, user=reviewer2)
    assert again.value.code == "not_active"


@pytest.mark.parametrize(
    ("scope", "target", "ends"),
    [
        ("agent", "support-assistant", True),
        ("tool", "send_email", True),
        ("tool", "get_order_status", False),
        ("global", "", True),
    ],
)
def test_end__kill_switch_in_scope__release_does_not_bring_it_back(
    agent, reviewer, scope, target, ends
):
    made = approve_standing(agent, reviewer)
    switch = engage_kill_switch(scope=scope, target=target, reason="stop", actor=Actor.system("t"))
    made.refresh_from_db()
    assert (made.end_reason == "kill_switch") is ends
    release_kill_switch(switch_id=switch.pk, reason="ok", actor=Actor.system("t"))
    expected = "pending" if ends else "approved"
    assert factories.submit(agent, "send_email", dict(EMAIL)).status == expected


def test_end__drill_switch_does_not_end_it(agent, reviewer):
    made = approve_standing(agent, reviewer)
    engage_kill_switch(
        scope=KillSwitch.Scope.AGENT,
        target=agent.slug,
        reason="drill",
        actor=Actor.system("t"),
        is_drill=True,
    )
    made.refresh_from_db()
    assert made.ended_at is None


def test_end__policy_change_of_the_tool_or_tier__ends__other_tool_does_not(
    agent, reviewer, governor
):
    email = approve_standing(agent, reviewer)
    refund = approve_standing(
        agent, reviewer, tool=REFUND, arguments={"order_id": "O1", "amount": 300}
    )
    # A tightening of another tool leaves both
    governance_actions.propose_change(
        agent=agent,
        user=governor,
        changes={"tools": {"approve_refund": None}},
        reason="gone",
    )
    assert StandingApproval.objects.filter(ended_at__isnull=True).count() == 2
    # Narrowing the email bounds ends the email one only
    governance_actions.propose_change(
        agent=agent,
        user=governor,
        changes={"tools": {"send_email": {"standing": {"max_minutes": 10}}}},
        reason="shorter",
    )
    email.refresh_from_db()
    refund.refresh_from_db()
    assert email.end_reason == "policy_changed" and refund.ended_at is None
    # A demotion ends every one of the agent's
    governance_actions.propose_change(
        agent=agent, user=governor, changes={"tier": "draft_only"}, reason="demote"
    )
    refund.refresh_from_db()
    assert refund.end_reason == "policy_changed"


def test_end__deactivating_the_agent__ends_all_of_its(agent, reviewer, governor):
    made = approve_standing(agent, reviewer)
    result = governance_actions.propose_change(
        agent=agent, user=governor, changes={"active": False}, reason="pause"
    )
    assert result.applied
    made.refresh_from_db()
    assert made.end_reason == "policy_changed"
    (event,) = events_of("standing.ended", reason="policy_changed")
    assert (event.actor_type, event.actor) == ("user", "gwen")


# --- the race at the last use (PostgreSQL, real threads) ---------------------------------------


@pytest.mark.django_db(transaction=True)
def test_race__two_calls_at_the_last_use__exactly_one_approved(reference_data):
    agent = factories.make_agent("race-bot", rules=standing_rules())
    reviewer = factories.make_user("rita", groups=("reviewer",))
    for _round in range(5):
        made = approve_standing(agent, reviewer, uses=1)
        barrier = threading.Barrier(2)
        statuses: list[str] = []

        def call(barrier=barrier, statuses=statuses):
            try:
                barrier.wait(timeout=30)
                statuses.append(factories.submit(agent, "send_email", dict(EMAIL)).status)
            finally:
                connection.close()

        threads = [threading.Thread(target=call) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(statuses) == ["approved", "pending"]
        made.refresh_from_db()
        assert (made.uses, made.end_reason) == (1, "used_up")
        assert Action.objects.filter(standing_approval=made).count() == 1


def test_bounds__governance_refusal_is_field_level(agent, governor):
    with pytest.raises(GovernanceRefused) as exc:
        governance_actions.propose_change(
            agent=agent,
            user=governor,
            changes={"tools": {"send_email": {"standing": {"max_uses": 0}}}},
            reason="x",
        )
    assert "tools.send_email.standing.max_uses" in exc.value.fields


# --- API and pages ----------------------------------------------------------------------------


def person(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def decide(client, action, **body):
    return client.post(
        f"/api/v1/actions/{action.pk}/decisions",
        json.dumps({"verdict": "approve", **body}),
        content_type="application/json",
    )


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"standing_minutes": 30}, 400, "invalid", "standing_uses"),
        ({"standing_uses": 3}, 400, "invalid", "standing_minutes"),
        (
            {"standing_minutes": 90, "standing_uses": 3},
            400,
            "standing_out_of_bounds",
            "standing_minutes",
        ),
        (
            {"standing_minutes": 30, "standing_uses": 9},
            400,
            "standing_out_of_bounds",
            "standing_uses",
        ),
        ({"standing_minutes": "x", "standing_uses": 3}, 400, "invalid", "standing_minutes"),
        (
            {"verdict": "reject", "comment": "no", "standing_minutes": 5, "standing_uses": 1},
            400,
            "invalid",
            "standing_minutes",
        ),
    ],
)
def test_api_decision__bad_terms__400_field_and_nothing_recorded(
    agent, reviewer, body, status, code, field
):
    action = factories.submit(agent, "send_email", dict(EMAIL))
    response = decide(person(reviewer), action, **body)
    data = response.json()
    assert (response.status_code, data["code"]) == (status, code)
    assert field in data["fields"]
    action.refresh_from_db()
    assert action.status == "pending" and not action.decisions.exists()
    assert not StandingApproval.objects.exists()


def test_api__approve_with_terms__gate_answers_approved_with_link__list_and_revoke(
    agent, reviewer, reviewer2
):
    action = factories.submit(agent, "send_email", dict(EMAIL))
    response = decide(person(reviewer), action, standing_minutes=30, standing_uses=3)
    assert response.status_code == 201 and response.json()["status"] == "approved"
    made = StandingApproval.objects.get()
    # The agent's next matching call is answered approved at once, with the link
    token = factories.make_token(agent)
    agent_client = Client(headers={"Authorization": f"Bearer {token}"})
    answer = agent_client.post(
        "/api/v1/actions",
        json.dumps({"tool": "send_email", "arguments": dict(EMAIL)}),
        content_type="application/json",
        headers={"Idempotency-Key": "same-email"},
    )
    body = answer.json()
    assert answer.status_code == 201, body
    assert (body["status"], body["reason_code"]) == ("approved", "standing_approval")
    assert body["links"]["standing_approval"] == f"/api/v1/standing-approvals/{made.pk}"
    own = agent_client.get(body["links"]["standing_approval"]).json()
    assert own["uses"] == 1 and own["approvers"] == ["rita"]
    # A reviewer lists it and revokes it
    listed = person(reviewer2).get("/api/v1/standing-approvals").json()["results"]
    assert [item["id"] for item in listed] == [made.pk] and listed[0]["uses_left"] == 2
    revoked = person(reviewer2).post(
        f"/api/v1/standing-approvals/{made.pk}/revoke", "{}", content_type="application/json"
    )
    assert revoked.status_code == 200 and revoked.json()["end_reason"] == "revoked"
    again = person(reviewer2).post(
        f"/api/v1/standing-approvals/{made.pk}/revoke", "{}", content_type="application/json"
    )
    assert (again.status_code, again.json()["code"]) == (409, "not_active")
    assert person(reviewer2).get("/api/v1/standing-approvals").json()["results"] == []


def test_api__other_agents_reviewer_and_agent__404(agent, reviewer, other_agent):
    made = approve_standing(agent, reviewer)
    stranger = factories.make_user("sam", agent_perms={"review_agent": other_agent})
    assert person(stranger).get(f"/api/v1/standing-approvals/{made.pk}").status_code == 404
    response = person(stranger).post(
        f"/api/v1/standing-approvals/{made.pk}/revoke", "{}", content_type="application/json"
    )
    assert response.status_code == 404
    assert person(stranger).get("/api/v1/standing-approvals").json()["results"] == []
    other_token = factories.make_token(other_agent)
    other = Client(headers={"Authorization": f"Bearer {other_token}"})
    assert other.get(f"/api/v1/standing-approvals/{made.pk}").status_code == 404
    made.refresh_from_db()
    assert made.ended_at is None


def test_pages__card_offers_terms__approve_creates__queue_and_agent_page_list__revoke(
    agent, reviewer
):
    action = factories.submit(agent, "send_email", dict(EMAIL))
    client = person(reviewer)
    card = client.get(f"/actions/{action.pk}").content.decode()
    assert 'name="standing_minutes"' in card and "at most 60" in card
    response = client.post(
        f"/actions/{action.pk}/approve",
        {
            "payload_hash": action.payload_hash,
            "comment": "",
            "standing": "1",
            "standing_minutes": "20",
            "standing_uses": "2",
        },
    )
    assert response.status_code == 302
    made = StandingApproval.objects.get()
    assert (made.minutes, made.max_uses) == (20, 2)
    queue = client.get("/queue").content.decode()
    assert f'data-standing-id="{made.pk}"' in queue
    agent_page = client.get("/agents/support-assistant").content.decode()
    assert f'data-standing-id="{made.pk}"' in agent_page
    covered = factories.submit(agent, "send_email", dict(EMAIL))
    covered_card = client.get(f"/actions/{covered.pk}").content.decode()
    assert f"standing approval #{made.pk}" in covered_card
    response = client.post(f"/standing/{made.pk}/revoke", {"next": "/queue"})
    assert response.status_code == 302 and response["Location"] == "/queue"
    made.refresh_from_db()
    assert made.end_reason == "revoked"
    assert f'data-standing-id="{made.pk}"' not in client.get("/queue").content.decode()


def test_pages__ticked_without_numbers__form_error_nothing_recorded(agent, reviewer):
    action = factories.submit(agent, "send_email", dict(EMAIL))
    response = person(reviewer).post(
        f"/actions/{action.pk}/approve",
        {"payload_hash": action.payload_hash, "standing": "1", "standing_minutes": ""},
    )
    assert response.status_code == 422
    assert "Say for how many minutes" in response.content.decode()
    action.refresh_from_db()
    assert action.status == "pending"


def test_pages__card_of_tool_without_bounds__offers_no_terms(agent, reviewer):
    action = factories.submit(agent, "update_crm_note", {"note": "x"})
    card = person(reviewer).get(f"/actions/{action.pk}").content.decode()
    assert 'name="standing_minutes"' not in card


def test_readiness_and_backtest__a_standing_approval_is_one_human_decision(agent, reviewer):
    from governance.backtest import backtest
    from governance.readiness import measure

    approve_standing(agent, reviewer, uses=3)
    for _ in range(3):
        assert factories.submit(agent, "send_email", dict(EMAIL)).status == "approved"
    now = timezone.now()
    counts = measure(agent, now - timedelta(days=1), now + timedelta(seconds=1))
    assert counts["human_approved"] == 1  # the card, not its three uses
    agent.refresh_from_db()
    result = backtest(agent, agent.current_policy.snapshot, days=1)
    assert result.replayed == 4 and result.changed == 0  # all four needed people


def test_rule_form__governor_turns_standing_on__preview_says_loosening__request_opens(
    agent, governor
):
    client = person(governor)
    page = client.get("/agents/support-assistant/rules/edit/send_email").content.decode()
    assert "standing approvals up to 60 min, 3 uses, risk ≤ medium" in page
    form = {
        "effect": "write",
        "rule": "requires_approval",
        "base_risk": "low",
        "standing_allowed": "on",
        "standing_max_minutes": "30",
        "standing_max_uses": "5",
        "standing_max_risk": "low",
        "standing_at_most": "",
        "reason": "reviewers repeat themselves",
    }
    bare = factories.make_agent("bare-bot")
    preview = client.post(
        "/agents/bare-bot/rules/edit/send_email", {**form, "base_risk": "medium", "step": "preview"}
    ).content.decode()
    assert "allow standing approvals (up to 30 min, 5 uses, risk ≤ low)" in preview
    assert "loosening" in preview.lower()
    client.post("/agents/bare-bot/rules/edit/send_email", {**form, "base_risk": "medium"})
    request = ChangeRequest.objects.get(agent=bare)
    assert request.after["tools"]["send_email"]["standing"]["max_uses"] == 5
