"""An action's trace reads as a story (request → gate → notifications → views → edit and
quorum → execution → rollback, with durations), and replay re-runs the gate under the
recorded and today's policy."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from approvals import actions
from approvals.models import Action
from approvals.trace import action_trace, format_duration, record_action_view
from audit import verbs
from audit.chain import Actor
from audit.models import AuditEvent
from rollout.actions import record_policy_version
from rollout.models import Agent, Tier
from rollout.replay import replay_action
from tests import factories

HIGH = {"blast_radius": {"amount": {"value": 5000, "currency": "EUR"}}}


@pytest.fixture(autouse=True)
def checkpoint_dir(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"


@pytest.fixture
def reviewers(reviewer, reviewer2):
    for person, address in ((reviewer, "rita@example.com"), (reviewer2, "rob@example.com")):
        person.email = address
        person.save()
        cache.delete_many([f"audit:viewed:{pk}:{person.pk}" for pk in range(1, 200)])
    return reviewer, reviewer2


@pytest.fixture
def full_story(db, support_agent, reviewers):
    """send_email at high risk: viewed, approved, edited (voiding the approval), approved
    twice to quorum, executed, rolled back."""
    rita, rob = reviewers
    action = factories.submit(
        support_agent,
        "send_email",
        {"to": "a@example.com", "body": "Your refund", "card_number": "4111111111111111"},
        summary="Tell the customer",
        rationale={"objective": "inform", "confidence": 0.8},
        evidence=[{"kind": "ticket", "title": "T-1", "content": "customer asked"}],
        release={"model": "m-1", "prompt_version": "p-7", "tool_schema_version": "s-2"},
        callback_url="https://agent.example.com/hook",
        compensation={"tool": "recall_email", "window_seconds": 600},
        correlation_id="conv-42",
        **HIGH,
    )
    record_action_view(Action.objects.get(pk=action.pk), rita)
    actions.approve(action_id=action.pk, user=rita, comment="looks right")
    edited = {"to": "b@example.com", "body": "Your refund", "card_number": "4111111111111111"}
    actions.approve(action_id=action.pk, user=rob, comment="fixed recipient", arguments=edited)
    actions.approve(action_id=action.pk, user=rita, comment="ok after edit")
    action.refresh_from_db()
    actions.report_execution(
        action_id=action.pk,
        agent=support_agent,
        outcome="succeeded",
        reported_hash=action.payload_hash,
        result={"message_id": "m-1"},
    )
    actions.request_rollback(action_id=action.pk, user=rob, comment="wrong template")
    actions.report_rollback(
        action_id=action.pk, agent=support_agent, outcome="rolled_back", result={"recalled": True}
    )
    return Action.objects.select_related("agent", "policy_version", "release").get(pk=action.pk)


def test_trace__edit_quorum_execution_rollback__reads_as_a_story(full_story, reviewers):
    rita, _rob = reviewers
    # When the trace is built for a reviewer
    steps = action_trace(full_story, rita)
    verbs_in_order = [s.verb for s in steps if not s.verb.startswith(("notification", "webhook"))]
    # Then the events come in the order they happened
    assert verbs_in_order == [
        "action.requested",
        verbs.ACTION_SUBMITTED,
        verbs.ACTION_VIEWED,
        verbs.ACTION_APPROVAL_RECORDED,
        verbs.ACTION_EDITED,
        verbs.ACTION_APPROVAL_RECORDED,
        verbs.ACTION_APPROVAL_RECORDED,
        verbs.ACTION_APPROVED,
        verbs.ACTION_EXECUTED,
        verbs.ACTION_ROLLBACK_REQUESTED,
        verbs.ACTION_ROLLED_BACK,
    ]
    by_verb = {}
    for step in steps:
        by_verb.setdefault(step.verb, []).append(step)
    # What the agent asked, with its release
    request = by_verb["action.requested"][0]
    assert request.stage == "request" and request.actor == "agent support-assistant"
    assert request.details["tool"] == "send_email"
    assert request.details["arguments"]["to"] == "a@example.com"  # the original
    assert request.details["release"] == {
        "model": "m-1",
        "prompt_version": "p-7",
        "tool_schema_version": "s-2",
    }
    assert request.details["evidence"][0]["title"] == "T-1"
    assert request.details["rationale"]["objective"] == "inform"
    # What the gate decided, why, under which policy version (linked)
    gate = by_verb[verbs.ACTION_SUBMITTED][0]
    assert gate.details["outcome"] == "pending"
    assert gate.details["reason_code"] == "requires_approval"
    assert gate.details["risk"] == "high" and gate.details["required_approvals"] == 2
    assert gate.details["policy_version"] == full_story.policy_version.number
    assert gate.link == f"/audit/policy-versions/{full_story.policy_version_id}"
    assert "under policy version 1" in gate.description
    # Who was notified (reviewers by email; the agent's webhooks) and who looked
    notified = {s.details.get("to") for s in by_verb["notification.email"]}
    assert {"rita@example.com", "rob@example.com"} <= notified
    assert {s.details["event"] for s in by_verb["webhook"]} >= {
        "action.approved",
        "action.rollback_requested",
    }
    assert by_verb[verbs.ACTION_VIEWED][0].actor == "user rita"
    # Each decision and the edit, with comments
    comments = [s.details["comment"] for s in by_verb[verbs.ACTION_APPROVAL_RECORDED]]
    assert comments == ["looks right", "fixed recipient", "ok after edit"]
    edit = by_verb[verbs.ACTION_EDITED][0]
    assert edit.actor == "user rob" and edit.details["approvals_voided"] == 1
    assert edit.details["arguments_after_edit"]["to"] == "b@example.com"
    assert by_verb[verbs.ACTION_APPROVED][0].details["approvers"] == ["rob", "rita"]
    # The execution result and the rollback
    assert by_verb[verbs.ACTION_EXECUTED][0].details["result"] == {"message_id": "m-1"}
    assert by_verb[verbs.ACTION_ROLLBACK_REQUESTED][0].details["comment"] == "wrong template"
    assert by_verb[verbs.ACTION_ROLLED_BACK][0].details["result"] == {"recalled": True}
    # Durations between steps
    assert steps[0].since_previous is None
    assert all(
        s.since_previous is not None and s.since_previous.total_seconds() >= 0 for s in steps[1:]
    )
    assert [s.at for s in steps] == sorted(s.at for s in steps)


def test_trace__sensitive_argument_paths__masked_without_the_permission(
    full_story, reviewers, settings
):
    settings.AUDIT_REDACTED_ARGUMENT_PATHS = {"send_email": ["body"], "*": ["card_number"]}
    rita, _ = reviewers
    request = action_trace(full_story, rita)[0]
    assert request.details["arguments"] == {
        "to": "a@example.com",
        "body": "[masked]",
        "card_number": "[masked]",
    }
    sensitive = factories.make_user("sam", groups=("reviewer",), perms=("audit.view_sensitive",))
    assert action_trace(full_story, sensitive)[0].details["arguments"]["body"] == "Your refund"
    # Without a user, masked
    assert action_trace(full_story)[0].details["arguments"]["card_number"] == "[masked]"


def test_trace_page__renders_the_story_escaped(full_story, client, auditor):
    Action.objects.filter(pk=full_story.pk).update(summary="<script>alert(1)</script>")
    client.force_login(auditor)
    response = client.get(f"/audit/actions/{full_story.pk}")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert" not in html
    assert "fixed recipient" in html and "wrong template" in html
    assert f'href="/audit/policy-versions/{full_story.policy_version_id}"' in html
    assert "Replay" in html
    # Looking at it is audited once per person and window
    views = AuditEvent.objects.filter(
        verb=verbs.ACTION_VIEWED, target_id=str(full_story.pk), actor=auditor.username
    )
    assert views.count() == 1
    client.get(f"/audit/actions/{full_story.pk}")
    assert views.count() == 1


def test_trace_api__returns_the_steps(full_story, client, auditor):
    client.force_login(auditor)
    body = client.get(f"/api/v1/audit/actions/{full_story.pk}/trace").json()
    assert body["action_id"] == full_story.pk
    stages = [s["stage"] for s in body["steps"]]
    assert stages[:2] == ["request", "gate"] and stages[-1] == "rollback"
    assert body["steps"][1]["seconds_since_previous"] is not None


def test_record_action_view__twice_in_the_window__audited_once(db, support_agent, reviewer):
    action = factories.submit(support_agent, "send_email")
    cache.delete(f"audit:viewed:{action.pk}:{reviewer.pk}")
    assert record_action_view(action, reviewer) is True
    assert record_action_view(action, reviewer) is False
    assert (
        AuditEvent.objects.filter(verb=verbs.ACTION_VIEWED, target_id=str(action.pk)).count() == 1
    )


def test_policy_version_page__shows_the_snapshot_and_changes(db, support_agent, client, auditor):
    Agent.objects.filter(pk=support_agent.pk).update(tier=Tier.objects.get(name="read_only"))
    version = record_policy_version(
        agent=support_agent, actor=Actor.system("tests"), reason="demote"
    )
    client.force_login(auditor)
    html = client.get(f"/audit/policy-versions/{version.pk}").content.decode()
    assert "policy version 2" in html and "demote" in html
    assert "Changes from version 1" in html and "read_only" in html


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "+250 ms"),
        (5, "+5 s"),
        (125, "+2 min 5 s"),
        (3 * 3600 + 60, "+3 h 1 min"),
        (90000, "+1 d 1 h"),
    ],
)
def test_format_duration(seconds, text):
    from datetime import timedelta

    assert format_duration(timedelta(seconds=seconds)) == text


# --- replay ---------------------------------------------------------------------------------


def _change_tier(agent, tier: str) -> None:
    Agent.objects.filter(pk=agent.pk).update(tier=Tier.objects.get(name=tier))
    record_policy_version(agent=agent, actor=Actor.system("tests"), reason=f"to {tier}")


def test_replay__policy_tightened_since__today_denies_what_was_pending(db, support_agent):
    # Given an action decided under the supervised tier
    action = factories.submit(support_agent, "send_email", {"to": "a@example.com"})
    assert action.status == "pending"
    # When the agent is demoted to read_only and the action is replayed
    _change_tier(support_agent, "read_only")
    result = replay_action(
        Action.objects.select_related("agent__current_policy", "policy_version").get(pk=action.pk)
    )
    # Then the recorded policy gives the recorded answer, today's a different one
    assert result["available"] is True
    assert result["recorded"]["outcome"] == "pending"
    assert result["with_recorded_policy"]["outcome"] == "pending"
    assert result["with_recorded_policy"]["policy_version"] == 1
    assert result["with_recorded_policy"]["matches_recorded"] is True
    now = result["with_current_policy"]
    assert (now["outcome"], now["reason_code"], now["policy_version"]) == (
        "denied",
        "tier_denies",
        2,
    )
    assert now["same_as_recorded"] is False and now["changed_by_policy"] is True
    assert any("read_only" in change for change in result["policy_changes"])
    assert "No kill switch is engaged during a replay." in result["assumptions"]


def test_replay__policy_loosened__autonomous_now_allows_a_low_risk_write(db, support_agent):
    action = factories.submit(support_agent, "update_crm_note", {"id": 1})
    assert action.status == "pending"
    _change_tier(support_agent, "autonomous")
    result = replay_action(Action.objects.get(pk=action.pk))
    assert result["with_current_policy"]["outcome"] == "allowed"
    assert result["with_current_policy"]["reason_code"] == "auto_approved"


def test_replay__same_policy__same_answer(db, support_agent):
    action = factories.submit(support_agent, "get_order_status", {"order": 1})
    result = replay_action(Action.objects.get(pk=action.pk))
    assert result["recorded"]["outcome"] == "allowed"
    assert result["with_current_policy"]["same_as_recorded"] is True
    assert result["policy_changes"] == []


def test_replay__recorded_under_a_kill_switch__flagged_as_momentary(db, support_agent):
    from incidents.actions import engage_kill_switch

    engage_kill_switch(
        scope="agent", target=support_agent.slug, reason="drill", actor=Actor.system("t")
    )
    action = factories.submit(support_agent, "get_order_status", {"order": 1})
    result = replay_action(Action.objects.get(pk=action.pk))
    assert result["recorded"]["reason_code"] == "kill_switch"
    assert result["recorded_was_momentary"] is True
    assert result["with_recorded_policy"]["outcome"] == "allowed"


def test_replay_page_and_api__side_by_side(db, support_agent, client, auditor):
    action = factories.submit(support_agent, "send_email", {"to": "a@example.com"})
    _change_tier(support_agent, "read_only")
    client.force_login(auditor)
    html = client.get(f"/audit/actions/{action.pk}").content.decode()
    assert "Today's policy decides it differently" in html
    assert "No kill switch is engaged during a replay." in html
    body = client.get(f"/api/v1/audit/actions/{action.pk}/replay").json()
    assert body["with_current_policy"]["outcome"] == "denied"
    assert body["recorded"]["outcome"] == "pending"
