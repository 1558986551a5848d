"""Celery tasks of approvals. They take ids, are idempotent (running twice changes nothing
more), and make their changes through ``approvals.actions``."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import httpx
from celery import shared_task
from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from approvals import actions, standing
from approvals.emails import notification_email
from approvals.models import Action, DailyAgentStats, Outbox
from approvals.notifications import chat_message
from approvals.retention import apply_retention
from approvals.states import EXECUTABLE, Status
from approvals.webhooks import WebhookRefused, post_webhook, sign_with_agent_secrets
from audit import verbs
from audit.chain import Actor, append_event

logger = logging.getLogger(__name__)
MAX_WEBHOOK_ATTEMPTS = 6
NOTIFICATION_BATCH_DELAY_SECONDS = 5


def enqueue_delivery(outbox_id: int) -> None:
    """Queue a webhook delivery; a broker outage only delays it (the row stays undelivered
    and ``redispatch_outbox`` picks it up), and never fails the committed change."""
    try:
        deliver_outbox.delay(outbox_id)
    except Exception:
        logger.warning(
            "could not enqueue outbox %s; it will be re-dispatched", outbox_id, exc_info=True
        )


def enqueue_notification_batches() -> None:
    try:
        # A short delay gathers a burst into one message per person.
        send_notification_batches.apply_async(countdown=NOTIFICATION_BATCH_DELAY_SECONDS)
    except Exception:
        logger.warning("could not enqueue notification batches; beat will send them", exc_info=True)


class RetryableDelivery(Exception):
    pass


@shared_task(
    bind=True,
    autoretry_for=(RetryableDelivery,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=MAX_WEBHOOK_ATTEMPTS - 1,
)
def deliver_outbox(self, outbox_id: int) -> str:
    """POST one owed webhook to the agent, signed with its secret(s). Network errors and
    5xx are retried with exponential backoff and jitter; after the last attempt (or on a
    4xx) the row is marked failed and ``webhook.failed`` is audited. The decision that owed
    it is never touched."""
    row = (
        Outbox.objects.select_related("agent", "action")
        .filter(pk=outbox_id, kind=Outbox.Kind.WEBHOOK)
        .first()
    )
    if row is None or row.delivered_at or row.failed_at:
        return "nothing to do"
    # delivery_id lets a receiver drop a retried delivery it already processed.
    body = json.dumps(
        {**row.payload, "delivery_id": row.pk}, sort_keys=True, separators=(",", ":")
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Airlock-Signature": sign_with_agent_secrets(row.agent, body),
    }
    Outbox.objects.filter(pk=row.pk).update(attempts=F("attempts") + 1)
    try:
        response = post_webhook(row.destination, content=body, headers=headers, timeout=10)
    except WebhookRefused as exc:  # not a public address (now): retrying will not help
        _fail(row, f"refused: {exc}")
        return "failed"
    except httpx.HTTPError as exc:
        return _retry_or_fail(self, row, f"{exc.__class__.__name__}: {exc}")
    if response.status_code >= 500:
        return _retry_or_fail(self, row, f"HTTP {response.status_code}")
    if response.status_code >= 400:  # the receiver refuses it; retrying will not help
        _fail(row, f"HTTP {response.status_code}")
        return "failed"
    Outbox.objects.filter(pk=row.pk).update(delivered_at=timezone.now(), last_error="")
    return "delivered"


def _retry_or_fail(task, row: Outbox, error: str) -> str:
    if task.request.retries >= task.max_retries:
        _fail(row, error)
        return "failed"
    Outbox.objects.filter(pk=row.pk).update(last_error=error)
    raise RetryableDelivery(error)


def _fail(row: Outbox, error: str) -> None:
    with transaction.atomic():
        updated = Outbox.objects.filter(
            pk=row.pk, failed_at__isnull=True, delivered_at__isnull=True
        ).update(failed_at=timezone.now(), last_error=error)
        if updated and row.action_id:
            append_event(
                verb=verbs.WEBHOOK_FAILED,
                actor=Actor.system("webhooks"),
                target_type="action",
                target_id=row.action_id,
                agent_slug=row.agent.slug if row.agent else "",
                correlation_id=row.action.correlation_id if row.action else "",
                data={
                    "outbox_id": row.pk,
                    "event": row.payload.get("event"),
                    "error": error[:500],
                    "attempts": row.attempts + 1,
                },
            )


@shared_task
def send_notification_batches() -> int:
    """Send every owed email and chat notification, one message per address listing all
    that piled up (an email with each pending action's essentials and, for its person, the
    Approve / Reject links: ``approvals.emails``). Rows are claimed with SKIP LOCKED, so
    concurrent runs never double-send."""
    sent = 0
    with transaction.atomic():
        rows = list(
            Outbox.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("action__agent")
            .filter(
                kind__in=[Outbox.Kind.EMAIL, Outbox.Kind.CHAT],
                delivered_at__isnull=True,
                failed_at__isnull=True,
            )
            .order_by("id")[:1000]
        )
        batches: dict[tuple[str, str], list[Outbox]] = {}
        for row in rows:
            batches.setdefault((row.kind, row.destination), []).append(row)
        now = timezone.now()
        for (kind, destination), items in batches.items():
            try:
                # A savepoint: the decision links an email issues exist only if it was sent.
                with transaction.atomic():
                    _send_batch(kind, destination, items)
            except Exception as exc:
                logger.warning("notification to %s failed: %s", destination, exc)
                Outbox.objects.filter(pk__in=[r.pk for r in items]).update(
                    attempts=F("attempts") + 1, last_error=str(exc)[:500]
                )
                Outbox.objects.filter(
                    pk__in=[r.pk for r in items], attempts__gte=MAX_WEBHOOK_ATTEMPTS
                ).update(failed_at=now)
                continue
            Outbox.objects.filter(pk__in=[r.pk for r in items]).update(
                delivered_at=now, attempts=F("attempts") + 1
            )
            sent += 1
    return sent


def _send_batch(kind: str, destination: str, items: list[Outbox]) -> None:
    if kind == Outbox.Kind.EMAIL:
        notification_email(destination, items).send()
    else:
        subjects = sorted({item.payload.get("subject", "Airlock") for item in items})
        subject = subjects[0] if len(subjects) == 1 else f"Airlock: {len(items)} updates"
        response = post_webhook(destination, json=chat_message(subject, items), timeout=10)
        response.raise_for_status()


@shared_task
def expire_stale_actions() -> int:
    """Expire pending actions past their time, cancel those whose agent's lease lapsed
    (``agent_gone``), revoke grants past their window and end standing approvals past
    theirs, each in its own transaction
    through the same action functions as everything else. Only tidying up: a decision on
    such an action is refused, and the lapse recorded, inside the decision's transaction."""
    now = timezone.now()
    pending = Action.objects.filter(
        Q(expires_at__lte=now) | Q(lease_expires_at__lte=now), status=Status.PENDING
    ).values_list("id", flat=True)[:1000]
    grants = Action.objects.filter(status__in=EXECUTABLE, grant_expires_at__lte=now).values_list(
        "id", flat=True
    )[:1000]
    changed = sum(1 for action_id in list(pending) if actions.settle_overdue(action_id=action_id))
    changed += sum(
        1 for action_id in list(grants) if actions.revoke_stale_grant(action_id=action_id)
    )
    changed += standing.end_expired()
    return changed


@shared_task
def escalate_due_actions() -> int:
    """Escalate undecided actions that reached their escalation time."""
    candidates = Action.objects.filter(
        status=Status.PENDING, escalated_at__isnull=True, expires_at__isnull=False
    )
    ids = [a.pk for a in candidates.only("id", "created_at", "expires_at")[:5000] if _due(a)]
    return sum(1 for action_id in ids if actions.escalate(action_id=action_id))


def _due(action: Action) -> bool:
    due = actions.escalation_due_at(action)
    return due is not None and timezone.now() >= due


@shared_task
def redispatch_outbox() -> int:
    """Re-queue webhooks left undelivered for a minute (worker crash, broker outage) and
    flush notifications."""
    cutoff = timezone.now() - timedelta(seconds=60)
    ids = list(
        Outbox.objects.filter(
            kind=Outbox.Kind.WEBHOOK,
            delivered_at__isnull=True,
            failed_at__isnull=True,
            created_at__lte=cutoff,
        )
        .order_by("id")
        .values_list("id", flat=True)[:500]
    )
    for outbox_id in ids:
        enqueue_delivery(outbox_id)
    return len(ids)


@shared_task
def rollup_daily_stats(days: int = 2) -> int:
    """Recompute per-agent daily counts for the last ``days`` days (idempotent)."""
    since = (timezone.now() - timedelta(days=days)).date()
    rows = (
        Action.objects.filter(created_at__date__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("agent_id", "day", "status")
        .annotate(
            n=Count("id"),
            decided=Count(
                "id",
                filter=Q(decided_at__isnull=False)
                & Q(
                    status__in=[
                        Status.APPROVED,
                        Status.REJECTED,
                        Status.EXECUTED,
                        Status.FAILED,
                        Status.ROLLBACK_REQUESTED,
                        Status.ROLLED_BACK,
                        Status.ROLLBACK_FAILED,
                    ]
                ),
            ),
            decision_seconds=Sum(
                F("decided_at") - F("created_at"),
                filter=Q(decided_at__isnull=False, required_approvals__gt=0),
            ),
        )
    )
    stats: dict[tuple[int, object], dict] = {}
    for row in rows:
        entry = stats.setdefault(
            (row["agent_id"], row["day"]),
            {
                "submitted": 0,
                "by_status": {},
                "decided": 0,
                "decision_seconds_total": 0.0,
                "executed": 0,
                "failed": 0,
                "rejected": 0,
            },
        )
        entry["submitted"] += row["n"]
        entry["by_status"][row["status"]] = row["n"]
        entry["decided"] += row["decided"]
        if row["decision_seconds"] is not None:
            entry["decision_seconds_total"] += row["decision_seconds"].total_seconds()
        if row["status"] in (
            Status.EXECUTED,
            Status.ROLLBACK_REQUESTED,
            Status.ROLLED_BACK,
            Status.ROLLBACK_FAILED,
        ):
            entry["executed"] += row["n"]
        elif row["status"] == Status.FAILED:
            entry["failed"] += row["n"]
        elif row["status"] == Status.REJECTED:
            entry["rejected"] += row["n"]
    for (agent_id, day), values in stats.items():
        DailyAgentStats.objects.update_or_create(agent_id=agent_id, day=day, defaults=values)
    return len(stats)


@shared_task
def apply_payload_retention() -> int:
    """Redact action payloads past ``AUDIT_PAYLOAD_RETENTION_DAYS``; returns how many."""
    return apply_retention().actions
