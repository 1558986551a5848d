"""Leases: an agent that waits for a decision proves it is still alive; when it stops, its
pending action is cancelled as ``agent_gone`` instead of staying on reviewers' queues."""

import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from approvals import actions, rules
from approvals.actions import ActionRefused
from approvals.models import Action, Outbox
from approvals.tasks import expire_stale_actions
from audit.models import AuditEvent
from tests import factories

REFUND = {"tool": "create_refund_request", "arguments": {"order_id": "ORD-1", "amount": 12}}


def lapse(action_id: int) -> None:
    Action.objects.filter(pk=action_id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def cancellations(action_id: int) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(verb="action.cancelled", target_id=str(action_id)).order_by("id")
    )


@pytest.fixture
def broadcasts():
    with mock.patch("approvals.events.broadcast_action") as sent:
        yield sent


# --- the write path -----------------------------------------------------------------------


def test_submit__pending_with_lease__lease_runs_from_submission(db, support_agent):
    before = timezone.now()
    action = factories.submit(support_agent, "send_email", lease_seconds=30)
    assert action.status == "pending" and action.lease_seconds == 30
    assert before + timedelta(seconds=30) <= action.lease_expires_at
    assert action.lease_expires_at <= timezone.now() + timedelta(seconds=30)


def test_submit__answered_at_once__no_lease_to_keep(db, support_agent):
    action = factories.submit(
        support_agent, "get_order_status", {"order_id": "O"}, lease_seconds=30
    )
    assert action.status == "allowed" and action.lease_expires_at is None


def test_approve__lease_lapsed__refused_and_cancelled_agent_gone_in_same_transaction(
    db, support_agent, reviewer, broadcasts, django_capture_on_commit_callbacks
):
    # Given a pending action whose agent stopped renewing its lease (no sweep has run)
    action = factories.submit(
        support_agent, "send_email", lease_seconds=30, callback_url="https://agent.example/hook"
    )
    lapse(action.pk)
    broadcasts.reset_mock()
    # When a reviewer approves it
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ActionRefused) as exc:
        actions.approve(action_id=action.pk, user=reviewer, comment="ok")
    # Then the approval is refused and the action is cancelled as agent_gone, audited,
    # owed to the agent's webhook and broadcast
    assert (exc.value.code, exc.value.status) == ("agent_gone", 409)
    action.refresh_from_db()
    assert action.status == "cancelled" and "agent_gone" in action.feedback
    assert not action.decisions.exists()
    [event] = cancellations(action.pk)
    assert event.data["reason"] == "agent_gone" and event.actor_type == "system"
    webhook = Outbox.objects.get(action=action, kind=Outbox.Kind.WEBHOOK)
    assert (webhook.payload["event"], webhook.payload["status"]) == (
        "action.cancelled",
        "cancelled",
    )
    assert [c.args[1] for c in broadcasts.call_args_list] == ["agent_gone"]


def test_reject__lease_lapsed__refused_agent_gone(db, support_agent, reviewer):
    action = factories.submit(support_agent, "send_email", lease_seconds=30)
    lapse(action.pk)
    with pytest.raises(ActionRefused) as exc:
        actions.reject(action_id=action.pk, user=reviewer, comment="no")
    assert exc.value.code == "agent_gone"
    assert Action.objects.get(pk=action.pk).status == "cancelled"


def test_approve__lease_alive__approves(db, support_agent, reviewer):
    action = factories.submit(support_agent, "send_email", lease_seconds=30)
    actions.approve(action_id=action.pk, user=reviewer)
    assert Action.objects.get(pk=action.pk).status == "approved"


def test_overdue__expiry_and_lease_both_passed__the_earlier_one_ends_it(db, support_agent):
    action = factories.submit(support_agent, "send_email", lease_seconds=30)
    now = timezone.now()

    def ago(seconds: int):
        return now - timedelta(seconds=seconds)

    action.expires_at, action.lease_expires_at = ago(5), ago(1)
    assert rules.overdue(action, now) is rules.EXPIRED
    action.expires_at, action.lease_expires_at = ago(1), ago(5)
    assert rules.overdue(action, now) is rules.AGENT_GONE
    action.expires_at, action.lease_expires_at = ago(-1), ago(-5)
    assert rules.overdue(action, now) is None


def test_sweep__cancels_lapsed_leases_once_and_never_touches_actions_without_one(db, support_agent):
    # Given a leased action whose lease lapsed, and an interrupt-style one (no lease) that
    # has been pending just as long
    leased = factories.submit(support_agent, "send_email", lease_seconds=30)
    paused = factories.submit(support_agent, "send_email")
    lapse(leased.pk)
    Action.objects.filter(pk=paused.pk).update(created_at=timezone.now() - timedelta(hours=1))
    # When the periodic sweep runs, twice
    expire_stale_actions()
    expire_stale_actions()
    # Then the leased one is cancelled (one event); the paused one still waits for people
    assert Action.objects.get(pk=leased.pk).status == "cancelled"
    assert len(cancellations(leased.pk)) == 1
    assert Action.objects.get(pk=paused.pk).status == "pending"
    assert Action.objects.get(pk=paused.pk).lease_expires_at is None


def test_heartbeat__renews_by_lease_seconds(db, support_agent):
    action = factories.submit(support_agent, "send_email", lease_seconds=600)
    soon = timezone.now() + timedelta(seconds=2)
    Action.objects.filter(pk=action.pk).update(lease_expires_at=soon)
    renewed = actions.heartbeat(action_id=action.pk, agent=support_agent)
    assert renewed.status == "pending"
    assert renewed.lease_expires_at >= soon + timedelta(seconds=500)
    assert Action.objects.get(pk=action.pk).lease_expires_at == renewed.lease_expires_at


def test_heartbeat__after_the_lapse__refused_and_not_revived(db, support_agent):
    action = factories.submit(support_agent, "send_email", lease_seconds=30)
    lapse(action.pk)
    with pytest.raises(ActionRefused) as exc:
        actions.heartbeat(action_id=action.pk, agent=support_agent)
    assert exc.value.code == "agent_gone"
    assert Action.objects.get(pk=action.pk).status == "cancelled"
    assert len(cancellations(action.pk)) == 1


def test_heartbeat__decided_or_without_lease__refused_with_a_code(db, support_agent, reviewer):
    decided = factories.submit(support_agent, "send_email", lease_seconds=30)
    actions.approve(action_id=decided.pk, user=reviewer)
    with pytest.raises(ActionRefused) as exc:
        actions.heartbeat(action_id=decided.pk, agent=support_agent)
    assert (exc.value.code, exc.value.status) == ("not_pending", 409)
    unleased = factories.submit(support_agent, "send_email")
    with pytest.raises(ActionRefused) as exc:
        actions.heartbeat(action_id=unleased.pk, agent=support_agent)
    assert (exc.value.code, exc.value.status) == ("no_lease", 409)


# --- over HTTP ----------------------------------------------------------------------------


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def token(support_agent):
    return factories.make_token(support_agent)


def _submit(client, token: str, **extra) -> dict:
    response = client.post(
        "/api/v1/actions",
        json={**REFUND, **extra},
        headers={**_auth(token), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("value", [4, 3601, "soon", -1])
def test_http_submit__lease_out_of_bounds__400_on_the_field(live_api, token, value):
    response = live_api.post(
        "/api/v1/actions",
        json={**REFUND, "lease_seconds": value},
        headers={**_auth(token), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 400
    assert "lease_seconds" in response.json()["fields"]
    assert not Action.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_http_heartbeat__renews_and_answers_the_action(live_api, token):
    body = _submit(live_api, token, lease_seconds=300)
    assert body["lease_seconds"] == 300 and body["lease_expires_at"]
    soon = timezone.now() + timedelta(seconds=2)
    Action.objects.filter(pk=body["id"]).update(lease_expires_at=soon)
    response = live_api.post(f"/api/v1/actions/{body['id']}/heartbeat", headers=_auth(token))
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    assert Action.objects.get(pk=body["id"]).lease_expires_at >= soon + timedelta(seconds=200)


@pytest.mark.django_db(transaction=True)
def test_http_heartbeat__lapsed__409_agent_gone_and_the_reader_sees_cancelled(live_api, token):
    body = _submit(live_api, token, lease_seconds=300)
    lapse(body["id"])
    response = live_api.post(f"/api/v1/actions/{body['id']}/heartbeat", headers=_auth(token))
    assert (response.status_code, response.json()["code"]) == (409, "agent_gone")
    read = live_api.get(f"/api/v1/actions/{body['id']}", headers=_auth(token)).json()
    assert read["status"] == "cancelled" and "agent_gone" in read["feedback"]


@pytest.mark.django_db(transaction=True)
def test_http_read__lapsed_lease__cancelled_by_the_read_and_audited(live_api, token):
    # The reader records the lapse (as it records an expiry): no sweep needed.
    body = _submit(live_api, token, lease_seconds=300)
    lapse(body["id"])
    read = live_api.get(f"/api/v1/actions/{body['id']}?wait=5", headers=_auth(token)).json()
    assert read["status"] == "cancelled"
    assert len(cancellations(body["id"])) == 1


@pytest.mark.django_db(transaction=True)
def test_http_long_poll__renews_the_lease(live_api, token):
    # Given a leased action whose lease is about to run out
    body = _submit(live_api, token, lease_seconds=300)
    soon = timezone.now() + timedelta(seconds=3)
    Action.objects.filter(pk=body["id"]).update(lease_expires_at=soon)
    # When the agent long-polls it
    read = live_api.get(f"/api/v1/actions/{body['id']}?wait=1", headers=_auth(token)).json()
    # Then its lease runs again from the end of the wait
    assert read["status"] == "pending"
    assert Action.objects.get(pk=body["id"]).lease_expires_at >= soon + timedelta(seconds=200)


@pytest.mark.django_db(transaction=True)
def test_http_read_by_a_person__does_not_renew(live_api, token, reviewer):
    from django.test import Client

    body = _submit(live_api, token, lease_seconds=300)
    soon = timezone.now() + timedelta(seconds=60)
    Action.objects.filter(pk=body["id"]).update(lease_expires_at=soon)
    client = Client()
    client.force_login(reviewer)
    assert client.get(f"/api/v1/actions/{body['id']}").status_code == 200
    assert Action.objects.get(pk=body["id"]).lease_expires_at == soon


@pytest.mark.django_db(transaction=True)
def test_http_replay_with_a_lease__same_action__the_first_submissions_lease_stands(live_api, token):
    """A call first put to people without a lease (the MCP gateway's card round) and retried
    by a client that waits with one is the same request: no 409 idempotency_conflict."""
    headers = {**_auth(token), "Idempotency-Key": "thread-7:call-1"}
    first = live_api.post("/api/v1/actions", json=REFUND, headers=headers)
    again = live_api.post("/api/v1/actions", json={**REFUND, "lease_seconds": 60}, headers=headers)
    assert first.status_code == 201 and again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["lease_seconds"] is None
    changed = live_api.post(
        "/api/v1/actions", json={**REFUND, "summary": "something else"}, headers=headers
    )
    assert changed.status_code == 409 and changed.json()["code"] == "idempotency_conflict"
