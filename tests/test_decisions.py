"""The decision write path: separation of duties, quorum, edits, expiry, and what each
change audits and broadcasts."""

import threading
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.utils import timezone

from approvals import actions
from approvals.actions import ActionRefused
from approvals.models import Action, Decision
from audit.models import AuditEvent
from tests import factories

HIGH = {"blast_radius": {"amount": {"value": 5000, "currency": "EUR"}}}
CRITICAL = {"blast_radius": {"amount": {"value": 20000, "currency": "EUR"}}}


def verbs_for(action):
    return list(
        AuditEvent.objects.filter(target_type="action", target_id=str(action.pk))
        .order_by("id")
        .values_list("verb", flat=True)
    )


@pytest.fixture
def broadcasts():
    with mock.patch("approvals.events.broadcast_action") as sent:
        yield sent


def test_approve__single_quorum__approves_audits_and_broadcasts(
    db, support_agent, reviewer, broadcasts, django_capture_on_commit_callbacks
):
    action = factories.submit(support_agent, "send_email")
    broadcasts.reset_mock()
    with django_capture_on_commit_callbacks(execute=True):
        actions.approve(action_id=action.pk, user=reviewer, comment="fine")
    action.refresh_from_db()
    assert action.status == "approved" and action.decided_at
    assert verbs_for(action)[-2:] == ["action.approval_recorded", "action.approved"]
    assert [c.args[1] for c in broadcasts.call_args_list] == ["approved"]


def test_approve__by_the_requester__refused(db, support_agent, reviewer):
    action = factories.submit(support_agent, "send_email", on_behalf_of=reviewer.username)
    with pytest.raises(ActionRefused) as exc:
        actions.approve(action_id=action.pk, user=reviewer)
    assert exc.value.code == "own_request"
    assert Action.objects.get(pk=action.pk).status == "pending"


def test_approve__without_review_permission__refused(db, support_agent, incident_owner):
    action = factories.submit(support_agent, "send_email")
    with pytest.raises(ActionRefused) as exc:
        actions.approve(action_id=action.pk, user=incident_owner)
    assert (exc.value.code, exc.value.status) == ("not_reviewer", 403)


def test_approve__reviewer_of_other_agent_only__refused(db, support_agent, other_agent):
    scoped = factories.make_user("scoped", agent_perms={"review_agent": other_agent})
    action = factories.submit(support_agent, "send_email")
    with pytest.raises(ActionRefused):
        actions.approve(action_id=action.pk, user=scoped)
    mine = factories.submit(other_agent, "send_email")
    actions.approve(action_id=mine.pk, user=scoped)
    assert Action.objects.get(pk=mine.pk).status == "approved"


def test_quorum__high_risk__needs_two_distinct_reviewers(db, support_agent, reviewer, reviewer2):
    action = factories.submit(support_agent, "send_email", **HIGH)
    assert (action.risk, action.required_approvals) == ("high", 2)
    actions.approve(action_id=action.pk, user=reviewer)
    assert Action.objects.get(pk=action.pk).status == "pending"
    with pytest.raises(ActionRefused) as exc:
        actions.approve(action_id=action.pk, user=reviewer)
    assert exc.value.code == "already_approved"
    actions.approve(action_id=action.pk, user=reviewer2)
    assert Action.objects.get(pk=action.pk).status == "approved"


def test_reject__by_a_reviewer_who_approved_first__rejects_the_action(db, support_agent, reviewer):
    # Given a two-approval action the reviewer approved (one of two)
    action = factories.submit(support_agent, "send_email", **HIGH)
    actions.approve(action_id=action.pk, user=reviewer)
    # When the same reviewer changes their mind and rejects it (tests/test_races.py found
    # this answered 500: the decision table allowed one decision per reviewer and payload)
    actions.reject(action_id=action.pk, user=reviewer, comment="On second thought, no.")
    # Then it is rejected with their reason, both decisions kept
    action.refresh_from_db()
    assert (action.status, action.feedback) == ("rejected", "On second thought, no.")
    assert sorted(Decision.objects.filter(action=action).values_list("verdict", flat=True)) == [
        "approve",
        "reject",
    ]
    assert verbs_for(action)[-1] == "action.rejected"


def test_quorum__critical__needs_a_critical_approver(
    db, support_agent, reviewer, reviewer2, critical_reviewer
):
    action = factories.submit(support_agent, "send_email", **CRITICAL)
    assert (action.risk, action.needs_critical_approver) == ("critical", True)
    actions.approve(action_id=action.pk, user=reviewer)
    # The last slot must go to someone holding the critical-approval permission.
    with pytest.raises(ActionRefused) as exc:
        actions.approve(action_id=action.pk, user=reviewer2)
    assert exc.value.code == "critical_approver_required"
    actions.approve(action_id=action.pk, user=critical_reviewer)
    assert Action.objects.get(pk=action.pk).status == "approved"


def test_edit__voids_earlier_approvals_and_binds_new_hash(db, support_agent, reviewer, reviewer2):
    action = factories.submit(
        support_agent, "create_refund_request", {"order_id": "O", "amount": 5000}, **HIGH
    )
    actions.approve(action_id=action.pk, user=reviewer)
    edited = {"order_id": "O", "amount": 4000}
    actions.approve(action_id=action.pk, user=reviewer2, arguments=edited)
    action.refresh_from_db()
    # reviewer's approval was for the old payload: only reviewer2's counts now
    assert action.status == "pending"
    assert action.arguments == edited and action.original_arguments["amount"] == 5000
    assert Decision.objects.get(reviewer=reviewer).voided is True
    assert "action.edited" in verbs_for(action)
    actions.approve(action_id=action.pk, user=reviewer)
    assert Action.objects.get(pk=action.pk).status == "approved"


def test_edit__breaking_the_tools_limits__refused_and_nothing_changes(db, support_agent, reviewer):
    action = factories.submit(
        support_agent, "create_refund_request", {"order_id": "O", "amount": 50}
    )
    with pytest.raises(ActionRefused) as exc:
        actions.approve(
            action_id=action.pk, user=reviewer, arguments={"order_id": "O", "amount": 99999}
        )
    assert exc.value.code == "argument_limit"
    action.refresh_from_db()
    assert action.arguments["amount"] == 50 and action.status == "pending"


def test_approve__expired_action__refused_and_marked_expired_in_same_transaction(
    db, support_agent, reviewer
):
    action = factories.submit(support_agent, "send_email")
    Action.objects.filter(pk=action.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(ActionRefused) as exc:
        actions.approve(action_id=action.pk, user=reviewer)
    assert exc.value.code == "expired"
    action.refresh_from_db()
    assert action.status == "expired"
    assert verbs_for(action)[-1] == "action.expired"
    assert not Decision.objects.filter(action=action).exists()


def test_expire__twice__changes_nothing_more(db, support_agent):
    action = factories.submit(support_agent, "send_email")
    Action.objects.filter(pk=action.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert actions.expire(action_id=action.pk) is True
    assert actions.expire(action_id=action.pk) is False
    assert verbs_for(action).count("action.expired") == 1


def test_reject__needs_comment__feedback_returned(db, support_agent, reviewer):
    action = factories.submit(support_agent, "send_email")
    with pytest.raises(ActionRefused):
        actions.reject(action_id=action.pk, user=reviewer, comment="  ")
    actions.reject(action_id=action.pk, user=reviewer, comment="Wrong customer")
    action.refresh_from_db()
    assert (action.status, action.feedback) == ("rejected", "Wrong customer")


def test_decisions_on_cancelled_action__refused(db, support_agent, reviewer):
    action = factories.submit(support_agent, "send_email")
    actions.withdraw(action_id=action.pk, agent=support_agent)
    with pytest.raises(ActionRefused) as exc:
        actions.approve(action_id=action.pk, user=reviewer)
    assert exc.value.code == "not_pending"


@pytest.fixture
def autonomous_agent(reference_data):
    return factories.make_agent("auto-agent", tier="autonomous")


def test_rollback__executed_with_compensation__requested_then_reported(
    db, autonomous_agent, reviewer
):
    action = factories.submit(
        autonomous_agent,
        "update_crm_note",
        {"id": 1},
        compensation={"tool": "restore_crm_note", "window_seconds": 600},
    )
    assert (action.status, action.reason_code) == ("allowed", "auto_approved")
    actions.report_execution(
        action_id=action.pk,
        agent=autonomous_agent,
        outcome="succeeded",
        reported_hash=action.payload_hash,
    )
    actions.request_rollback(action_id=action.pk, user=reviewer, comment="wrong note")
    assert Action.objects.get(pk=action.pk).status == "rollback_requested"
    actions.report_rollback(action_id=action.pk, agent=autonomous_agent, outcome="rolled_back")
    assert Action.objects.get(pk=action.pk).status == "rolled_back"


def test_rollback__window_closed__refused(db, autonomous_agent, reviewer):
    action = factories.submit(
        autonomous_agent, "update_crm_note", {"id": 1}, compensation={"tool": "restore"}
    )
    actions.report_execution(
        action_id=action.pk,
        agent=autonomous_agent,
        outcome="succeeded",
        reported_hash=action.payload_hash,
    )
    Action.objects.filter(pk=action.pk).update(
        reversible_until=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(ActionRefused) as exc:
        actions.request_rollback(action_id=action.pk, user=reviewer)
    assert exc.value.code == "window_closed"


def _approve_at_barrier(action_id, user, barrier, errors):
    try:
        barrier.wait()
        actions.approve(action_id=action_id, user=user)
    except ActionRefused as exc:
        errors.append(exc.code)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_concurrent_approvals__two_reviewers_real_threads__one_final_status_each_counted_once(
    support_agent, reviewer, reviewer2
):
    # Given a high-risk action that needs both reviewers, each approving twice at once, 10 times
    for _ in range(10):
        action = factories.submit(support_agent, "send_email", **HIGH)
        barrier = threading.Barrier(4)
        errors = []
        threads = [
            threading.Thread(target=_approve_at_barrier, args=(action.pk, user, barrier, errors))
            for user in (reviewer, reviewer2, reviewer, reviewer2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Then exactly one decision per reviewer, one final status, one approval event
        action.refresh_from_db()
        assert action.status == "approved"
        decisions = Decision.objects.filter(action=action)
        assert sorted(d.reviewer_id for d in decisions) == sorted([reviewer.pk, reviewer2.pk])
        assert len(errors) == 2 and set(errors) <= {"already_approved", "not_pending"}
        assert verbs_for(action).count("action.approved") == 1
