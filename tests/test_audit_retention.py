"""Payload retention redacts the action rows while the audit chain still verifies; per-tool
redaction paths mask sensitive argument fields for viewers without the permission."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from approvals import actions
from approvals.masking import mask_paths, masked_arguments
from approvals.models import Action, Decision, Outbox, Report
from approvals.retention import apply_retention
from approvals.trace import action_trace
from audit import verbs
from audit.canonical import payload_hash as payload_hash_of
from audit.models import AuditEvent
from audit.redaction import REDACTED_LIST, REDACTED_OBJECT
from audit.verification import verify_chain
from rollout.replay import replay_action
from tests import factories

HIGH = {"blast_radius": {"amount": {"value": 5000, "currency": "EUR"}}}


@pytest.fixture(autouse=True)
def checkpoint_dir(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"


@pytest.fixture
def old_and_new(db, support_agent, reviewer, reviewer2):
    """An old action that was edited, approved, executed (with a webhook) and a new one."""
    old = factories.submit(
        support_agent,
        "send_email",
        {"to": "a@example.com", "body": "secret plan"},
        rationale={"objective": "x"},
        evidence=[{"kind": "doc", "title": "t", "content": "c"}],
        callback_url="https://agent.example.com/hook",
        **HIGH,
    )
    actions.approve(
        action_id=old.pk, user=reviewer, arguments={"to": "b@example.com", "body": "edited"}
    )
    actions.approve(action_id=old.pk, user=reviewer2)
    old.refresh_from_db()
    actions.report_execution(
        action_id=old.pk,
        agent=support_agent,
        outcome="succeeded",
        reported_hash=old.payload_hash,
        result={"id": "msg-1"},
    )
    Outbox.objects.filter(action=old).update(delivered_at=timezone.now())
    Action.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=100))
    new = factories.submit(support_agent, "get_order_status", {"order": 7})
    return Action.objects.get(pk=old.pk), Action.objects.get(pk=new.pk)


def test_retention__old_payloads__redacted_and_the_chain_still_verifies(old_and_new):
    old, new = old_and_new
    payload_hash = old.payload_hash
    assert verify_chain().ok
    # When retention of 30 days is applied
    result = apply_retention(days=30)
    # Then the old action's payloads are gone, everything else kept
    assert result.actions == 1 and result.action_ids == [old.pk]
    old = Action.objects.get(pk=old.pk)
    assert old.arguments == REDACTED_OBJECT and old.original_arguments == REDACTED_OBJECT
    assert old.evidence == REDACTED_LIST and old.rationale == REDACTED_OBJECT
    assert old.payload_hash == payload_hash and old.status == "executed"
    assert Report.objects.get(action=old).result == REDACTED_OBJECT
    edits = Decision.objects.filter(action=old, edited_arguments__isnull=False)
    assert edits.exists() and all(d.edited_arguments == REDACTED_OBJECT for d in edits)
    webhooks = Outbox.objects.filter(action=old, kind=Outbox.Kind.WEBHOOK)
    assert webhooks.exists() and all(w.payload["arguments"] == REDACTED_OBJECT for w in webhooks)
    # The new action is untouched
    assert Action.objects.get(pk=new.pk).arguments == {"order": 7}
    # It is audited, and the whole chain still verifies
    event = AuditEvent.objects.get(verb=verbs.AUDIT_RETENTION_APPLIED)
    assert event.data["action_ids"] == [old.pk] and event.data["retention_days"] == 30
    assert verify_chain().ok
    # The submission event still carries the payload's hash
    submitted = AuditEvent.objects.get(verb=verbs.ACTION_SUBMITTED, target_id=str(old.pk))
    assert submitted.data["payload_hash"] == payload_hash_of(
        {"to": "a@example.com", "body": "secret plan"}
    )


def test_retention__second_run__finds_nothing_more(old_and_new):
    assert apply_retention(days=30).actions == 1
    again = apply_retention(days=30)
    assert again.actions == 0 and again.batches == 0
    assert AuditEvent.objects.filter(verb=verbs.AUDIT_RETENTION_APPLIED).count() == 1


def test_retention__off_by_default__does_nothing(old_and_new, settings):
    settings.AUDIT_PAYLOAD_RETENTION_DAYS = 0
    assert apply_retention().actions == 0
    assert Action.objects.exclude(arguments=REDACTED_OBJECT).count() == 2


def test_retention__batches__each_audited(db, support_agent):
    for i in range(5):
        factories.submit(support_agent, "get_order_status", {"order": i})
    Action.objects.update(created_at=timezone.now() - timedelta(days=10))
    result = apply_retention(days=1, batch_size=2)
    assert (result.actions, result.batches) == (5, 3)
    assert AuditEvent.objects.filter(verb=verbs.AUDIT_RETENTION_APPLIED).count() == 3
    assert verify_chain().ok


def test_retention__pending_action__kept(db, support_agent):
    pending = factories.submit(support_agent, "send_email")
    Action.objects.filter(pk=pending.pk).update(created_at=timezone.now() - timedelta(days=10))
    assert apply_retention(days=1).actions == 0


def test_retention__trace_and_replay__say_what_was_redacted(old_and_new, auditor):
    old, _ = old_and_new
    apply_retention(days=30)
    old = Action.objects.get(pk=old.pk)
    request = action_trace(old, auditor)[0]
    assert request.details["arguments"] == "[redacted after the retention period]"
    replay = replay_action(old)
    assert replay["available"] is False and "retention" in replay["unavailable_reason"]


def test_retention_command__dry_run_then_apply(old_and_new):
    out = io.StringIO()
    call_command("audit_retention", days=30, dry_run=True, stdout=out)
    assert "would redact the payloads of 1 action(s)" in out.getvalue()
    assert not AuditEvent.objects.filter(verb=verbs.AUDIT_RETENTION_APPLIED).exists()
    out = io.StringIO()
    call_command("audit_retention", days=30, stdout=out)
    assert "redacted the payloads of 1 action(s)" in out.getvalue()


def test_retention_task__uses_the_setting(old_and_new, settings):
    from approvals.tasks import apply_payload_retention

    settings.AUDIT_PAYLOAD_RETENTION_DAYS = 30
    assert apply_payload_retention() == 1


# --- masking ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paths", "value", "expected"),
    [
        (["body"], {"body": "x", "to": "y"}, {"body": "[masked]", "to": "y"}),
        (
            ["customer.card"],
            {"customer": {"card": "1", "name": "n"}},
            {"customer": {"card": "[masked]", "name": "n"}},
        ),
        (
            ["items.*.card"],
            {"items": [{"card": 1}, {"card": 2, "q": 3}]},
            {"items": [{"card": "[masked]"}, {"card": "[masked]", "q": 3}]},
        ),
        (
            ["**.cvv"],
            {"a": {"b": [{"cvv": 1}]}, "cvv": 2},
            {"a": {"b": [{"cvv": "[masked]"}]}, "cvv": "[masked]"},
        ),
        (["missing.path"], {"a": 1}, {"a": 1}),
        (["items.1"], {"items": ["a", "b"]}, {"items": ["a", "[masked]"]}),
    ],
)
def test_mask_paths(paths, value, expected):
    original = repr(value)
    assert mask_paths(value, [p.split(".") for p in paths]) == expected
    assert repr(value) == original  # a copy; the stored arguments are never touched


def test_masked_arguments__per_tool_and_wildcard__only_without_the_permission(
    db, support_agent, reviewer, settings
):
    settings.AUDIT_REDACTED_ARGUMENT_PATHS = {"send_email": ["body"], "*": ["card_number"]}
    action = factories.submit(
        support_agent, "send_email", {"to": "a@x", "body": "hi", "card_number": "4111"}
    )
    other = factories.submit(
        support_agent, "get_order_status", {"body": "kept", "card_number": "1"}
    )
    assert masked_arguments(action, reviewer) == {
        "to": "a@x",
        "body": "[masked]",
        "card_number": "[masked]",
    }
    assert masked_arguments(other, reviewer) == {"body": "kept", "card_number": "[masked]"}
    sensitive = factories.make_user("sam", perms=("audit.view_sensitive",))
    assert masked_arguments(action, sensitive) == action.arguments
    admin = factories.make_user("root", superuser=True)
    assert masked_arguments(action, admin) == action.arguments
    # The stored arguments (executed and hashed) are unchanged
    assert Action.objects.get(pk=action.pk).arguments["body"] == "hi"
