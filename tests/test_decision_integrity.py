"""What policy says needs two people never runs on one person's word — tried as an attacker
would, through the page and the API: edits are re-assessed under the current policy, a
decision is bound to the payload its person saw, and every decision records its channel.
(Risk from the arguments, identity skeletons and refusal events have their own files.)"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from approvals import actions
from approvals.models import Action, Decision
from audit.canonical import payload_hash
from audit.models import AuditEvent
from governance import actions as governance_actions
from tests import factories
from tests.access_support import give_second_factor, next_code

REFUND_LIMIT = {"field": "amount", "op": "<=", "value": 50000}
PAYMENT_RULES = [
    {
        **factories.rule("create_refund_request", "write", "requires_approval", "medium"),
        "argument_limits": [REFUND_LIMIT],
        "blast_radius_from_arguments": {"amount": "amount"},
    },
    factories.rule("send_email", "write", "requires_approval", "medium"),
]


@pytest.fixture
def payments(reference_data):
    return factories.make_agent("payments", rules=PAYMENT_RULES)


@pytest.fixture
def governor(reference_data):
    return factories.make_user("gov", groups=("governance_owner",))


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def decide_api(client: Client, action_id: int, **body):
    return client.post(
        f"/api/v1/actions/{action_id}/decisions", json.dumps(body), content_type="application/json"
    )


def decide_page(client: Client, action_id: int, form: str, **data):
    return client.post(f"/actions/{action_id}/{form}", data, headers={"HX-Request": "true"})


def events(action, verb):
    return list(
        AuditEvent.objects.filter(target_type="action", target_id=str(action.pk), verb=verb)
        .order_by("id")
        .values_list("data", flat=True)
    )


def small_refund(agent, amount=40):
    return factories.submit(agent, "create_refund_request", {"order_id": "ORD-1", "amount": amount})


# --- edits are re-assessed ----------------------------------------------------------------------


def test_edit__to_a_critical_amount_by_one_reviewer__stays_pending_until_the_new_bar(
    payments, reviewer, reviewer2, critical_reviewer
):
    # Given a medium refund that one approval would make executable
    action = small_refund(payments)
    assert (action.risk, action.required_approvals) == ("medium", 1)
    # When one reviewer edits it up to 15,000 and approves it through the API
    edited = {"order_id": "ORD-1", "amount": 15000}
    response = decide_api(logged_in(reviewer), action.pk, verdict="approve", arguments=edited)
    # Then it is not executable: the edit made it critical (two people, one critical)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["risk"], body["required_approvals"]) == ("pending", "critical", 2)
    assert body["arguments"] == edited and body["approvals"] == 1
    # and a second, non-critical reviewer cannot complete it
    refused = decide_api(logged_in(reviewer2), action.pk, verdict="approve")
    assert refused.status_code == 403 and refused.json()["code"] == "critical_approver_required"
    # only a critical approver can
    done = decide_api(logged_in(critical_reviewer), action.pk, verdict="approve")
    assert done.status_code == 201 and done.json()["status"] == "approved"
    # The edit recorded the re-assessment: policy version, the bar before and after
    (edit,) = events(action, "action.edited")
    current = payments.__class__.objects.get(pk=payments.pk).current_policy
    assert edit["policy_version"] == current.number
    assert edit["before"]["risk"] == "medium" and edit["after"]["risk"] == "critical"
    assert edit["after"]["required_approvals"] == 2
    # and a critical action gets critical's shorter time to decide (never a longer one)
    assert edit["after"]["expires_at"] < edit["before"]["expires_at"]
    assert Action.objects.get(pk=action.pk).policy_version_id == current.pk


def test_edit__on_the_page_to_a_high_amount__one_click_is_not_enough(payments, reviewer):
    action = small_refund(payments)
    edited = json.dumps({"order_id": "ORD-1", "amount": 2500})
    response = decide_page(
        logged_in(reviewer),
        action.pk,
        "edit",
        arguments=edited,
        comment="",
        payload_hash=action.payload_hash,
    )
    assert response.status_code == 200
    action.refresh_from_db()
    assert (action.status, action.risk, action.required_approvals) == ("pending", "high", 2)
    assert "needs more approvals" in response.content.decode()


def test_edit__denied_under_the_current_policy__refused_and_nothing_changes(
    payments, reviewer, governor
):
    # Given a pending refund, and a governance owner who since tightened the limit
    action = small_refund(payments)
    governance_actions.propose_change(
        agent=payments,
        user=governor,
        changes={
            "tools": {
                "create_refund_request": {
                    "argument_limits": [{"field": "amount", "op": "<=", "value": 100}]
                }
            }
        },
        reason="tighten",
    )
    action_events = AuditEvent.objects.filter(target_type="action", target_id=str(action.pk))
    before_events = action_events.count()
    # When a reviewer edits it to an amount the current policy refuses
    response = decide_api(
        logged_in(reviewer),
        action.pk,
        verdict="approve",
        arguments={"order_id": "ORD-1", "amount": 500},
    )
    # Then the edit is refused with the gate's reason code, and nothing changed
    assert response.status_code == 400
    assert response.json()["code"] == "argument_limit"
    fresh = Action.objects.get(pk=action.pk)
    assert (fresh.status, fresh.payload_hash, fresh.arguments) == (
        "pending",
        action.payload_hash,
        action.arguments,
    )
    assert not Decision.objects.filter(action=action).exists()
    assert not events(action, "action.edited")
    assert action_events.count() == before_events


def test_edit__of_a_tool_forbidden_since__refused_with_that_code(payments, reviewer, governor):
    action = small_refund(payments)
    governance_actions.propose_change(
        agent=payments,
        user=governor,
        changes={"tools": {"create_refund_request": {"rule": "forbidden"}}},
        reason="stop refunds",
    )
    response = decide_api(
        logged_in(reviewer), action.pk, verdict="approve", arguments={"order_id": "X", "amount": 1}
    )
    assert response.status_code == 409 and response.json()["code"] == "tool_forbidden"
    assert Action.objects.get(pk=action.pk).payload_hash == action.payload_hash


def test_edit__back_to_a_payload_approved_before__is_a_normal_outcome(
    payments, reviewer, reviewer2
):
    # Given a high refund rita approved (1 of 2)
    action = small_refund(payments, amount=2000)
    original = dict(action.arguments)
    assert decide_api(logged_in(reviewer), action.pk, verdict="approve").status_code == 201
    # When rob edits it (voiding rita's approval) and rita edits it back and approves
    changed = {"order_id": "ORD-1", "amount": 1500}
    assert (
        decide_api(logged_in(reviewer2), action.pk, verdict="approve", arguments=changed)
    ).status_code == 201
    back = decide_api(logged_in(reviewer), action.pk, verdict="approve", arguments=original)
    # Then it is an ordinary answer (it was a 500: the voided approval held the slot)
    assert back.status_code == 201, back.content
    body = back.json()
    # and only rita's new approval counts: rob's was on the other payload
    assert body["status"] == "pending" and body["approvals"] == 1
    assert body["payload_hash"] == payload_hash(original)
    assert decide_api(logged_in(reviewer2), action.pk, verdict="approve").json()["status"] == (
        "approved"
    )


def test_edit__masked_fields__keep_their_values(payments, reviewer, settings):
    settings.AUDIT_REDACTED_ARGUMENT_PATHS = {"*": ["**.card_number"]}
    action = factories.submit(
        payments,
        "create_refund_request",
        {"order_id": "ORD-1", "amount": 40, "card_number": "4111111111111111"},
    )
    # The editor cannot see the card number: whatever they send for it, it keeps its value
    for sent in ("[masked]", "5500000000000004"):
        response = decide_api(
            logged_in(reviewer),
            action.pk,
            verdict="approve",
            arguments={"order_id": "ORD-2", "amount": 30, "card_number": sent},
        )
        assert response.status_code in (201, 409), response.content
        stored = Action.objects.get(pk=action.pk).arguments
        assert stored["card_number"] == "4111111111111111"
        assert stored["order_id"] == "ORD-2"


def test_edit__raising_the_risk__asks_for_step_up(payments, reviewer, settings):
    settings.STEP_UP_ENABLED = True
    give_second_factor(reviewer)
    action = small_refund(payments)  # medium: the card asked no code
    client = logged_in(reviewer)
    edited = {"order_id": "ORD-1", "amount": 5000}
    # Without a code, the edit that makes it high is refused and changes nothing
    refused = decide_api(client, action.pk, verdict="approve", arguments=edited)
    assert refused.status_code == 403 and refused.json()["code"] == "step_up_required"
    assert Action.objects.get(pk=action.pk).payload_hash == action.payload_hash
    # With one, it is recorded
    ok = client.post(
        f"/api/v1/actions/{action.pk}/decisions",
        json.dumps({"verdict": "approve", "arguments": edited}),
        content_type="application/json",
        headers={"X-Airlock-OTP": next_code(reviewer)},
    )
    assert ok.status_code == 201 and ok.json()["risk"] == "high"


def test_edit__raising_the_risk_on_the_page__shows_the_code_field(payments, reviewer, settings):
    settings.STEP_UP_ENABLED = True
    give_second_factor(reviewer)
    action = small_refund(payments)
    response = decide_page(
        logged_in(reviewer),
        action.pk,
        "edit",
        arguments=json.dumps({"order_id": "ORD-1", "amount": 5000}),
        comment="",
        payload_hash=action.payload_hash,
    )
    assert response.status_code == 403
    assert 'name="step_up_code"' in response.content.decode()
    assert Action.objects.get(pk=action.pk).payload_hash == action.payload_hash


# --- a decision is bound to the payload its person saw -------------------------------------------


def test_stale_card__approval_after_anothers_edit__409_payload_changed(
    payments, reviewer, reviewer2
):
    # Given a high refund both reviewers have on their screens
    action = small_refund(payments, amount=2000)
    seen = action.payload_hash
    # When rob edits and approves it
    edit = decide_page(
        logged_in(reviewer2),
        action.pk,
        "edit",
        arguments=json.dumps({"order_id": "ORD-9", "amount": 1999}),
        comment="",
        payload_hash=seen,
    )
    assert edit.status_code == 200
    # and rita clicks Approve on her stale card
    stale = decide_page(logged_in(reviewer), action.pk, "approve", comment="", payload_hash=seen)
    # Then her click is refused and counts for nothing
    assert stale.status_code == 409
    assert "arguments changed" in stale.content.decode()
    assert not Decision.objects.filter(action=action, reviewer=reviewer).exists()
    assert Action.objects.get(pk=action.pk).status == "pending"
    # the API says the same when given the hash the person saw
    api = decide_api(logged_in(reviewer), action.pk, verdict="approve", payload_hash=seen)
    assert api.status_code == 409 and api.json()["code"] == "payload_changed"
    # and a rejection of the stale card too
    reject = decide_page(logged_in(reviewer), action.pk, "reject", comment="no", payload_hash=seen)
    assert reject.status_code == 409 and Action.objects.get(pk=action.pk).status == "pending"


def test_page_decision__without_the_payload_hash__refused(payments, reviewer):
    action = small_refund(payments)
    response = decide_page(logged_in(reviewer), action.pk, "approve", comment="")
    assert response.status_code == 422
    assert not Decision.objects.filter(action=action).exists()


def test_card__forms_carry_the_payload_hash(payments, reviewer):
    action = small_refund(payments)
    page = logged_in(reviewer).get(f"/actions/{action.pk}").content.decode()
    assert page.count(f'name="payload_hash" value="{action.payload_hash}"') == 3


# --- each decision records its channel -----------------------------------------------------------


def test_channel__recorded_on_each_decision_event_and_shown_on_the_trace(
    payments, reviewer, reviewer2
):
    action = small_refund(payments, amount=2000)  # high: two approvals
    decide_page(
        logged_in(reviewer), action.pk, "approve", comment="", payload_hash=action.payload_hash
    )
    decide_api(logged_in(reviewer2), action.pk, verdict="approve")
    (first, second) = events(action, "action.approval_recorded")
    assert (first["channel"], second["channel"]) == ("page", "api")
    (approved,) = events(action, "action.approved")
    assert approved["channels"] == ["page", "api"]
    assert list(Decision.objects.filter(action=action).values_list("channel", flat=True)) == [
        "page",
        "api",
    ]
    trace = logged_in(reviewer).get(f"/actions/{action.pk}").content.decode()
    assert "approved" in trace and "via page" in trace and "via api" in trace


def test_channel__rejection_event_names_it(payments, reviewer):
    action = small_refund(payments)
    decide_api(logged_in(reviewer), action.pk, verdict="reject", comment="wrong order")
    (rejected,) = events(action, "action.rejected")
    assert rejected["channel"] == "api" and rejected["payload_hash"] == action.payload_hash


def test_write_path__without_a_step_up_check__refuses_a_high_risk_approval(
    payments, reviewer, settings
):
    # A path that cannot ask for a second factor (a task, a script) may not approve what
    # needs one: the rule holds at the outcome, not in the page.
    settings.STEP_UP_ENABLED = True
    action = small_refund(payments, amount=2000)
    with pytest.raises(actions.ActionRefused) as exc:
        actions.approve(action_id=action.pk, user=reviewer)
    assert exc.value.code == "step_up_required"
    assert not Decision.objects.filter(action=action).exists()
