"""Celery tasks of Slack approvals: deliver what ``slack_approvals.actions`` owed Slack.
They take ids and are idempotent (a delivered row is not sent again). Slack's rate limit
(429) is retried after its ``Retry-After``; Slack's 5xx and network errors with exponential
backoff; any other Slack error (``channel_not_found``, ``invalid_auth`` …) fails the row at
once, recorded on it. The decision that owed a message is never touched."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from approvals.models import Decision
from approvals.states import Status
from slack_approvals import actions, blocks
from slack_approvals.models import SlackAccount, SlackMessage, SlackNotice

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 6
MAX_RETRY_AFTER_SECONDS = 900


def slack_client() -> WebClient:
    """The Web API client, at ``SLACK_API_URL`` with the bot token."""
    base_url = (
        settings.SLACK_API_URL
        if settings.SLACK_API_URL.endswith("/")
        else (settings.SLACK_API_URL + "/")
    )
    return WebClient(token=settings.SLACK_BOT_TOKEN, base_url=base_url, timeout=10)


def enqueue_message(message_id: int) -> None:
    """Queue a message's delivery; a broker outage only delays it (``redispatch_slack``)."""
    try:
        deliver_slack_message.delay(message_id)
    except Exception:
        logger.warning("could not enqueue slack message %s", message_id, exc_info=True)


def enqueue_notice(notice_id: int) -> None:
    try:
        deliver_slack_notice.delay(notice_id)
    except Exception:
        logger.warning("could not enqueue slack notice %s", notice_id, exc_info=True)


class SlackDeliveryFailed(Exception):
    """Slack refused for good (not a rate limit, not a server error)."""


def retry_delay(exc: Exception, retries: int) -> int | None:
    """Seconds to wait before trying again after ``exc`` (None: do not retry). A rate limit
    waits what Slack's ``Retry-After`` says."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 0)
        if status == 429:
            raw = (exc.response.headers or {}).get("Retry-After") or (
                exc.response.headers or {}
            ).get("retry-after")
            try:
                return min(max(int(raw), 1), MAX_RETRY_AFTER_SECONDS)
            except (TypeError, ValueError):
                return 30
        if status >= 500:
            return min(2 ** (retries + 1), 300)
        return None
    return min(2 ** (retries + 1), 300)  # network error, timeout


def _describe(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        error = exc.response.get("error") if hasattr(exc.response, "get") else None
        return f"slack {getattr(exc.response, 'status_code', '?')}: {error or exc}"[:500]
    return f"{exc.__class__.__name__}: {exc}"[:500]


def _retry_or_fail(task: Any, model: Any, row_id: int, exc: Exception) -> str:
    delay = retry_delay(exc, task.request.retries)
    error = _describe(exc)
    model.objects.filter(pk=row_id).update(attempts=F("attempts") + 1, last_error=error)
    if delay is not None and task.request.retries < task.max_retries:
        raise task.retry(countdown=delay, exc=exc)
    model.objects.filter(pk=row_id).update(failed_at=timezone.now())
    logger.warning("slack delivery of %s %s failed: %s", model.__name__, row_id, error)
    return "failed"


def _still_for(message: SlackMessage) -> bool:
    """Whether the person is still linked to the same Slack user and may still decide."""
    account = SlackAccount.objects.filter(user=message.user).first()
    return (
        account is not None
        and account.team_id == message.team_id
        and account.slack_user_id == message.slack_user_id
        and actions.may_decide(message.action, message.user)
    )


def _deliver_message(message_id: int) -> str:
    """Post the message (when the action is still pending and the person may still decide
    it), then update it once the action has left pending. No database lock is held while
    Slack answers, so a slow Slack never holds a decision (whose transaction marks the
    update owed); a decision that lands while the message is being posted is caught by
    reading the action again after the post."""
    client = slack_client()
    message = (
        SlackMessage.objects.select_related("action", "action__agent", "user")
        .filter(pk=message_id)
        .first()
    )
    if message is None or message.failed_at or message.skipped_at:
        return "nothing to do"
    action = message.action
    outcome = "nothing to do"
    if message.posted_at is None:
        if action.status != Status.PENDING or not _still_for(message):
            SlackMessage.objects.filter(pk=message.pk, posted_at__isnull=True).update(
                skipped_at=timezone.now(), update_owed=False
            )
            return "skipped"
        channel = client.conversations_open(users=message.slack_user_id)["channel"]["id"]
        may_approve = (
            actions.approvals_actions.decision_refusal(
                action, message.user, Decision.Verdict.APPROVE
            )
            is None
        )
        body = blocks.pending_message(action, may_approve=may_approve)
        response = client.chat_postMessage(
            channel=channel, text=body["text"], blocks=body["blocks"], unfurl_links=False
        )
        message.channel_id = response.get("channel") or channel
        message.ts = response["ts"]
        message.posted_at = timezone.now()
        SlackMessage.objects.filter(pk=message.pk).update(
            channel_id=message.channel_id,
            ts=message.ts,
            posted_at=message.posted_at,
            attempts=F("attempts") + 1,
            last_error="",
        )
        outcome = "posted"
    message.refresh_from_db(fields=["update_owed", "updated_in_slack_at"])
    action.refresh_from_db()
    if action.status != Status.PENDING and (
        message.update_owed or message.updated_in_slack_at is None
    ):
        body = blocks.outcome_message(action)
        client.chat_update(
            channel=message.channel_id, ts=message.ts, text=body["text"], blocks=body["blocks"]
        )
        SlackMessage.objects.filter(pk=message.pk).update(
            update_owed=False, updated_in_slack_at=timezone.now(), last_error=""
        )
        outcome = "updated" if outcome == "nothing to do" else "posted and updated"
    return outcome


@shared_task(bind=True, max_retries=MAX_ATTEMPTS - 1)
def deliver_slack_message(self: Any, message_id: int) -> str:
    """Deliver one ``SlackMessage``: the direct message (conversations.open, then
    chat.postMessage to that DM channel, never to a channel) and, once owed, its update
    (chat.update: the outcome, no buttons)."""
    if not actions.slack_configured():
        return "slack off"
    try:
        return _deliver_message(message_id)
    except Exception as exc:
        return _retry_or_fail(self, SlackMessage, message_id, exc)


@shared_task(bind=True, max_retries=MAX_ATTEMPTS - 1)
def deliver_slack_notice(self: Any, notice_id: int) -> str:
    """Deliver one ``SlackNotice`` with chat.postEphemeral (only its Slack user sees it)."""
    if not actions.slack_configured():
        return "slack off"
    notice = SlackNotice.objects.filter(pk=notice_id).first()
    if notice is None or notice.delivered_at or notice.failed_at:
        return "nothing to do"
    try:
        slack_client().chat_postEphemeral(
            channel=notice.channel_id, user=notice.slack_user_id, text=notice.text
        )
    except Exception as exc:
        return _retry_or_fail(self, SlackNotice, notice_id, exc)
    SlackNotice.objects.filter(pk=notice.pk).update(
        delivered_at=timezone.now(), attempts=F("attempts") + 1, last_error=""
    )
    return "delivered"


@shared_task
def redispatch_slack() -> int:
    """Re-queue messages and notices left undelivered for a minute (a worker crash, a broker
    outage); those waiting on a scheduled retry are queued again, harmlessly (the row lock
    and the delivered state keep each sent once)."""
    if not actions.slack_configured():
        return 0
    cutoff = timezone.now() - timedelta(seconds=60)
    messages = list(
        SlackMessage.objects.filter(
            Q(posted_at__isnull=True) | Q(update_owed=True),
            failed_at__isnull=True,
            skipped_at__isnull=True,
            created_at__lte=cutoff,
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:500]
    )
    notices = list(
        SlackNotice.objects.filter(
            delivered_at__isnull=True, failed_at__isnull=True, created_at__lte=cutoff
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:500]
    )
    for message_id in messages:
        enqueue_message(message_id)
    for notice_id in notices:
        enqueue_notice(notice_id)
    return len(messages) + len(notices)
