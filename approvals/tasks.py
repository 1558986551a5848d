"""Celery tasks. They take ids and make changes through ``approvals.actions``."""

from __future__ import annotations

import json
import logging

import httpx
from celery import shared_task
from django.db import transaction
from django.utils import timezone

from approvals import actions
from approvals.models import Action, Outbox
from approvals.states import Status
from approvals.webhooks import sign

logger = logging.getLogger(__name__)
MAX_WEBHOOK_ATTEMPTS = 6


def enqueue_delivery(outbox_id: int) -> None:
    """Queue delivery of an outbox row; a broker outage only delays it (the row stays
    undelivered and the periodic re-dispatch picks it up)."""
    try:
        deliver_outbox.delay(outbox_id)
    except Exception:
        logger.warning(
            "could not enqueue outbox %s; it will be re-dispatched", outbox_id, exc_info=True
        )


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
    """POST one owed webhook, signed with the agent's secret. Retries network errors and
    5xx with exponential backoff and jitter; after the last attempt the row is marked
    failed. Never touches the action's decision."""
    row = Outbox.objects.select_related("agent").filter(pk=outbox_id).first()
    if row is None or row.delivered_at or row.failed_at:
        return "nothing to do"
    body = json.dumps(row.payload, sort_keys=True, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Airlock-Signature": sign(row.agent.webhook_secret, body),
    }
    Outbox.objects.filter(pk=row.pk).update(attempts=row.attempts + 1)
    try:
        response = httpx.post(
            row.destination, content=body, headers=headers, timeout=10, follow_redirects=False
        )
        if response.status_code >= 500:
            raise RetryableDelivery(f"HTTP {response.status_code}")
        error = "" if response.status_code < 400 else f"HTTP {response.status_code}"
    except (httpx.HTTPError, RetryableDelivery) as exc:
        error = str(exc) or exc.__class__.__name__
        if self.request.retries >= self.max_retries:
            Outbox.objects.filter(pk=row.pk).update(failed_at=timezone.now(), last_error=error)
            return "failed"
        Outbox.objects.filter(pk=row.pk).update(last_error=error)
        raise RetryableDelivery(error) from exc
    if error:  # 4xx: the receiver refuses it; retrying will not help
        Outbox.objects.filter(pk=row.pk).update(failed_at=timezone.now(), last_error=error)
        return "failed"
    Outbox.objects.filter(pk=row.pk).update(delivered_at=timezone.now(), last_error="")
    return "delivered"


@shared_task
def expire_stale_actions() -> int:
    """Expire every pending action past its time, each in its own transaction."""
    ids = list(
        Action.objects.filter(status=Status.PENDING, expires_at__lte=timezone.now()).values_list(
            "id", flat=True
        )[:1000]
    )
    return sum(1 for action_id in ids if actions.expire(action_id=action_id))


@shared_task
def redispatch_outbox() -> int:
    """Re-queue owed work left undelivered (worker crash, broker outage)."""
    cutoff = timezone.now() - timezone.timedelta(seconds=60)
    ids = list(
        Outbox.objects.filter(
            delivered_at__isnull=True, failed_at__isnull=True, created_at__lte=cutoff
        )
        .order_by("id")
        .values_list("id", flat=True)[:500]
    )
    for outbox_id in ids:
        transaction.on_commit(lambda oid=outbox_id: enqueue_delivery(oid))
    return len(ids)
