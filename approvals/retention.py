"""Retention of action payloads: after ``AUDIT_PAYLOAD_RETENTION_DAYS`` the payloads an
agent sent (arguments, original arguments, evidence, rationale, the reported results,
edited arguments) are replaced on the approvals rows by the marker of ``audit.redaction``.
The audit chain is untouched and still verifies: its events carry the payload's hash
(``action.submitted`` → ``payload_hash``), never the payload, so what was approved stays
provable without being kept. Each batch audits ``audit.retention_applied``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from approvals.models import Action, Decision, Outbox, Report
from approvals.states import Status
from audit import verbs
from audit.chain import Actor, append_event
from audit.redaction import REDACTED_LIST, REDACTED_OBJECT, is_redacted

BATCH_SIZE = 500


@dataclass
class RetentionResult:
    cutoff: datetime | None
    actions: int = 0
    reports: int = 0
    decisions: int = 0
    webhooks: int = 0
    batches: int = 0
    action_ids: list[int] = field(default_factory=list)


def _due_actions(cutoff: datetime) -> QuerySet[Action]:
    # A pending action is still to be decided on its payload (expiry ends it long before
    # any sensible retention period; this only guards a misconfiguration).
    return (
        Action.objects.filter(created_at__lt=cutoff)
        .exclude(status=Status.PENDING)
        .exclude(Q(arguments=REDACTED_OBJECT) & Q(original_arguments=REDACTED_OBJECT))
    )


def apply_retention(
    *,
    days: int | None = None,
    actor: Actor | None = None,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    dry_run: bool = False,
) -> RetentionResult:
    """Redact the payloads of actions created more than ``days`` (default
    ``AUDIT_PAYLOAD_RETENTION_DAYS``; 0 keeps everything) days ago, in batches, each in its
    own transaction with one ``audit.retention_applied`` event naming the actions. Running it
    again finds nothing more to do."""
    days = settings.AUDIT_PAYLOAD_RETENTION_DAYS if days is None else days
    if days <= 0:
        return RetentionResult(cutoff=None)
    cutoff = (now or timezone.now()) - timedelta(days=days)
    result = RetentionResult(cutoff=cutoff)
    if dry_run:
        result.actions = _due_actions(cutoff).count()
        return result
    actor = actor or Actor.system("retention")
    while True:
        with transaction.atomic():
            ids = list(
                _due_actions(cutoff)
                .order_by("id")
                .select_for_update(skip_locked=True)
                .values_list("id", flat=True)[:batch_size]
            )
            if not ids:
                break
            counts = _redact_batch(ids)
            append_event(
                verb=verbs.AUDIT_RETENTION_APPLIED,
                actor=actor,
                target_type="retention",
                data={
                    "retention_days": days,
                    "cutoff": cutoff.isoformat(),
                    "action_ids": ids,
                    **counts,
                },
            )
        result.batches += 1
        result.actions += counts["actions"]
        result.reports += counts["reports"]
        result.decisions += counts["decisions"]
        result.webhooks += counts["webhooks"]
        result.action_ids += ids
    return result


def _redact_batch(ids: list[int]) -> dict[str, int]:
    """Replace the payload fields of these actions' rows; only ``.update()``, so nothing
    else about them (status, hashes, times) changes."""
    actions = Action.objects.filter(pk__in=ids).update(
        arguments=REDACTED_OBJECT,
        original_arguments=REDACTED_OBJECT,
        evidence=REDACTED_LIST,
        rationale=REDACTED_OBJECT,
    )
    reports = (
        Report.objects.filter(action_id__in=ids)
        .exclude(result__isnull=True)
        .update(result=REDACTED_OBJECT)
    )
    decisions = (
        Decision.objects.filter(action_id__in=ids)
        .exclude(edited_arguments__isnull=True)
        .update(edited_arguments=REDACTED_OBJECT)
    )
    # Webhook bodies owed to the agent repeat the arguments; undelivered ones keep them
    # until delivered or failed.
    webhooks = 0
    owed = Outbox.objects.filter(action_id__in=ids, kind=Outbox.Kind.WEBHOOK).filter(
        Q(delivered_at__isnull=False) | Q(failed_at__isnull=False)
    )
    for row_id, payload in owed.values_list("id", "payload"):
        if (
            isinstance(payload, dict)
            and "arguments" in payload
            and not is_redacted(payload["arguments"])
        ):
            Outbox.objects.filter(pk=row_id).update(
                payload={**payload, "arguments": REDACTED_OBJECT}
            )
            webhooks += 1
    return {"actions": actions, "reports": reports, "decisions": decisions, "webhooks": webhooks}
