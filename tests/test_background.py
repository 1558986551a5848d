"""Background work: expiry, grant revocation, escalation, the outbox, signed webhooks with
retries, batched notifications, daily rollups — and a real Celery worker on Redis."""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core import mail
from django.utils import timezone

from approvals import actions, tasks
from approvals.actions import ActionRefused
from approvals.models import Action, DailyAgentStats, NotificationRoute, Outbox
from audit.models import AuditEvent
from tests import factories
from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent


def verify_signature(
    header: str, body: bytes, secret: str, now: float, tolerance: int = 300
) -> bool:
    """An agent's verifier, written from the README: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">,
    refusing signatures older than the replay window."""
    parts = [item.split("=", 1) for item in header.split(",")]
    timestamp = int(next(value for key, value in parts if key == "t"))
    if abs(now - timestamp) > tolerance:
        return False
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return any(hmac.compare_digest(expected, value) for key, value in parts if key == "v1")


@pytest.fixture
def allow_loopback_webhooks(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]


# --- expiry and grants --------------------------------------------------------------------


def test_expire_task__expires_due_pending_actions_once(db, support_agent):
    due = factories.submit(support_agent, "send_email")
    fresh = factories.submit(support_agent, "send_email")
    Action.objects.filter(pk=due.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert tasks.expire_stale_actions() == 1
    assert tasks.expire_stale_actions() == 0
    assert Action.objects.get(pk=due.pk).status == "expired"
    assert Action.objects.get(pk=fresh.pk).status == "pending"
    assert AuditEvent.objects.filter(verb="action.expired").count() == 1


def test_grant_window__report_after_it__revoked_and_409(db, support_agent, reviewer):
    action = factories.submit(support_agent, "send_email")
    actions.approve(action_id=action.pk, user=reviewer)
    Action.objects.filter(pk=action.pk).update(
        grant_expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(ActionRefused) as exc:
        actions.report_execution(
            action_id=action.pk,
            agent=support_agent,
            outcome="succeeded",
            reported_hash=action.payload_hash,
        )
    assert exc.value.code == "grant_expired"
    assert Action.objects.get(pk=action.pk).status == "revoked"


def test_expire_task__revokes_stale_grants_not_reported_ones(db, support_agent):
    stale = factories.submit(support_agent, "get_order_status", {"order_id": "1"})
    reported = factories.submit(support_agent, "get_order_status", {"order_id": "2"})
    actions.report_execution(
        action_id=reported.pk,
        agent=support_agent,
        outcome="succeeded",
        reported_hash=reported.payload_hash,
    )
    Action.objects.filter(pk__in=[stale.pk, reported.pk]).update(
        grant_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert tasks.expire_stale_actions() == 1
    assert Action.objects.get(pk=stale.pk).status == "revoked"
    assert Action.objects.get(pk=reported.pk).status == "executed"


# --- escalation and notifications ---------------------------------------------------------


def test_escalation__at_half_the_ttl__marks_and_notifies_escalation_people_once(
    db, support_agent, reviewer, critical_reviewer, settings
):
    settings.NOTIFY_MIN_RISK = "critical"  # only escalation mail in this test
    senior = factories.make_user("sena")
    senior.email = "sena@example.com"
    senior.save()
    route = NotificationRoute.objects.create(agent=support_agent)
    route.escalation_users.add(senior)
    action = factories.submit(support_agent, "send_email")
    assert tasks.escalate_due_actions() == 0  # not yet due
    created = timezone.now() - timedelta(hours=5)
    Action.objects.filter(pk=action.pk).update(
        created_at=created, expires_at=created + timedelta(hours=8)
    )
    assert tasks.escalate_due_actions() == 1
    assert tasks.escalate_due_actions() == 0
    assert Action.objects.get(pk=action.pk).escalated_at is not None
    assert AuditEvent.objects.filter(verb="action.escalated", target_id=str(action.pk)).count() == 1
    tasks.send_notification_batches()
    assert [m.to for m in mail.outbox] == [["sena@example.com"]]
    assert f"/actions/{action.pk}" in mail.outbox[0].body


def test_notifications__burst_of_high_risk_actions__one_email_per_reviewer(
    db, support_agent, settings
):
    settings.NOTIFY_MIN_RISK = "high"
    people = []
    for name in ("ana", "ben"):
        user = factories.make_user(name, groups=("reviewer",))
        user.email = f"{name}@example.com"
        user.save()
        people.append(user)
    for _ in range(30):
        factories.submit(support_agent, "send_email", blast_radius={"reversible": False})
    factories.submit(support_agent, "send_email")  # medium: below the threshold
    assert Outbox.objects.filter(kind="email").count() == 60
    assert tasks.send_notification_batches() == 2
    assert sorted(m.to[0] for m in mail.outbox) == ["ana@example.com", "ben@example.com"]
    # Each action once, with its card and the reviewer's own Approve and Reject links
    body = mail.outbox[0].body
    assert body.count("Open in Airlock: ") == 30
    assert body.count("Approve (asks you to confirm in Airlock): ") == 30
    assert body.count("Reject (asks you for a reason in Airlock): ") == 30
    assert tasks.send_notification_batches() == 0  # idempotent: nothing left


def test_notifications__kill_switch__reaches_reviewers_and_chat(
    db, support_agent, settings, allow_loopback_webhooks
):
    from audit.chain import Actor
    from incidents.actions import engage_kill_switch

    user = factories.make_user("cara", groups=("reviewer",))
    user.email = "cara@example.com"
    user.save()
    with Receiver() as chat:
        NotificationRoute.objects.create(agent=support_agent, chat_webhook_url=chat.url)
        engage_kill_switch(
            scope="agent", target=support_agent.slug, reason="loop", actor=Actor.system("t")
        )
        tasks.send_notification_batches()
        assert chat.event.wait(10)
    assert mail.outbox and "kill switch engaged" in mail.outbox[0].subject.lower()
    assert "loop" in json.loads(chat.received[0][1])["text"]


# --- webhooks -----------------------------------------------------------------------------


def test_webhook__signed_and_verifiable(
    db,
    support_agent,
    reviewer,
    allow_loopback_webhooks,
    django_capture_on_commit_callbacks,
    settings,
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.AIRLOCK_PUBLIC_URL = "https://airlock.example.test/"
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        with Receiver() as receiver:
            action = factories.submit(support_agent, "send_email", callback_url=receiver.url)
            with django_capture_on_commit_callbacks(execute=True):
                actions.reject(action_id=action.pk, user=reviewer, comment="not this customer")
            assert receiver.event.wait(10)
    finally:
        app.conf.task_always_eager = False
    headers, body = receiver.received[0]
    support_agent.refresh_from_db()
    assert verify_signature(
        headers["x-airlock-signature"], body, support_agent.webhook_secret, time.time()
    )
    assert not verify_signature(headers["x-airlock-signature"], body, "wrong-secret", time.time())
    assert not verify_signature(
        headers["x-airlock-signature"], body + b" ", support_agent.webhook_secret, time.time()
    )
    assert not verify_signature(
        headers["x-airlock-signature"], body, support_agent.webhook_secret, time.time() + 3600
    )
    event = json.loads(body)
    assert (event["event"], event["action_id"], event["status"], event["feedback"]) == (
        "action.rejected",
        action.pk,
        "rejected",
        "not this customer",
    )
    # The card's link, for the people the agent tells, from the public URL (issue 20.5)
    assert event["links"] == {"card": f"https://airlock.example.test/actions/{action.pk}"}
    assert Outbox.objects.get().delivered_at is not None


def _run_delivery(outbox_id: int, attempts: int) -> list[str]:
    """Run the delivery task as a worker would, attempt by attempt (retries without sleeping)."""
    from celery.exceptions import Retry

    results = []
    for retry in range(attempts):
        try:
            results.append(
                tasks.deliver_outbox.apply(args=[outbox_id], retries=retry, throw=True).get()
            )
        except (tasks.RetryableDelivery, Retry):
            results.append("retry")
        if results[-1] in ("delivered", "failed"):
            break
    return results


def test_webhook__fails_twice_then_succeeds__retried(
    db, support_agent, reviewer, allow_loopback_webhooks
):
    with Receiver(fail_first=2) as receiver:
        action = factories.submit(support_agent, "send_email", callback_url=receiver.url)
        actions.approve(action_id=action.pk, user=reviewer)
        row = Outbox.objects.get(kind="webhook")
        assert _run_delivery(row.pk, tasks.MAX_WEBHOOK_ATTEMPTS) == ["retry", "retry", "delivered"]
    row.refresh_from_db()
    assert row.attempts == 3 and row.delivered_at is not None
    assert Action.objects.get(pk=action.pk).status == "approved"


def test_webhook__always_fails__gives_up_audited_and_decision_stands(
    db, support_agent, reviewer, allow_loopback_webhooks
):
    with Receiver(always_status=503) as receiver:
        action = factories.submit(support_agent, "send_email", callback_url=receiver.url)
        actions.approve(action_id=action.pk, user=reviewer)
        row = Outbox.objects.get(kind="webhook")
        results = _run_delivery(row.pk, tasks.MAX_WEBHOOK_ATTEMPTS)
    assert results == ["retry"] * (tasks.MAX_WEBHOOK_ATTEMPTS - 1) + ["failed"]
    row.refresh_from_db()
    assert row.failed_at is not None and row.attempts == tasks.MAX_WEBHOOK_ATTEMPTS
    failed = AuditEvent.objects.get(verb="webhook.failed")
    assert failed.target_id == str(action.pk) and "503" in failed.data["error"]
    assert Action.objects.get(pk=action.pk).status == "approved"
    assert tasks.deliver_outbox.apply(args=[row.pk]).get() == "nothing to do"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8000/x",
        "http://10.0.0.5/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "file:///etc/passwd",
        "gopher://example.com/",
    ],
)
def test_callback_url__private_loopback_or_odd_scheme__refused(url):
    from approvals.serializers import ActionSubmitSerializer

    serializer = ActionSubmitSerializer(
        data={"tool": "send_email", "arguments": {}, "callback_url": url}
    )
    assert not serializer.is_valid()
    assert "callback_url" in serializer.errors


def test_redispatch__undelivered_webhooks_are_queued_again(
    db, support_agent, reviewer, allow_loopback_webhooks, monkeypatch
):
    action = factories.submit(support_agent, "send_email", callback_url="http://127.0.0.1:9/hook")
    actions.approve(action_id=action.pk, user=reviewer)
    Outbox.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    queued = []
    monkeypatch.setattr(tasks, "enqueue_delivery", queued.append)
    assert tasks.redispatch_outbox() == 1
    assert queued == [Outbox.objects.get().pk]


# --- rollups ------------------------------------------------------------------------------


def test_rollup__daily_counts_by_outcome_idempotent(db, support_agent, reviewer):
    factories.submit(support_agent, "get_order_status", {"order_id": "1"})
    factories.submit(support_agent, "approve_refund", {})
    rejected = factories.submit(support_agent, "send_email")
    actions.reject(action_id=rejected.pk, user=reviewer, comment="no")
    approved = factories.submit(support_agent, "send_email")
    actions.approve(action_id=approved.pk, user=reviewer)
    actions.report_execution(
        action_id=approved.pk,
        agent=support_agent,
        outcome="failed",
        reported_hash=approved.payload_hash,
        error="smtp down",
    )
    tasks.rollup_daily_stats()
    tasks.rollup_daily_stats()
    stats = DailyAgentStats.objects.get(agent=support_agent)
    assert stats.submitted == 4
    assert stats.by_status == {"allowed": 1, "denied": 1, "rejected": 1, "failed": 1}
    assert (stats.rejected, stats.failed, stats.decided) == (1, 1, 2)


# --- a real worker ------------------------------------------------------------------------


@pytest.mark.multiprocess
@pytest.mark.django_db(transaction=True)
def test_celery_worker__on_redis__delivers_signed_webhook_after_decision(
    support_agent, reviewer, allow_loopback_webhooks
):
    from tests.servers import test_database_url

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": test_database_url(),
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # never a pipe nobody reads: a full one blocks the worker
    )
    try:
        with Receiver() as receiver:
            action = factories.submit(support_agent, "send_email", callback_url=receiver.url)
            actions.approve(action_id=action.pk, user=reviewer)  # commits; queues delivery on Redis
            assert receiver.event.wait(90), (
                worker.stderr.read1(4000) if worker.poll() is not None else "no webhook within 90 s"
            )
        headers, body = receiver.received[0]
        support_agent.refresh_from_db()
        assert verify_signature(
            headers["x-airlock-signature"], body, support_agent.webhook_secret, time.time()
        )
        assert json.loads(body)["status"] == "approved"
        deadline = time.monotonic() + 30
        while Outbox.objects.get().delivered_at is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the worker marks the row right after the POST returns
        assert Outbox.objects.get().delivered_at is not None
    finally:
        worker.terminate()
        worker.wait(timeout=30)


# --- /metrics -----------------------------------------------------------------------------


def test_metrics__scraper_token__prometheus_text_with_gate_and_backlog(
    client, support_agent, settings
):
    settings.METRICS_TOKEN = "scrape-me"
    factories.submit(support_agent, "get_order_status", {"order_id": "1"})
    factories.submit(support_agent, "approve_refund", {})
    factories.submit(support_agent, "send_email")
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")
    assert response.status_code == 200
    text = response.content.decode()
    assert (
        'airlock_gate_decisions_total{agent="support-assistant",reason_code="tool_forbidden"} 1.0'
        in text
    )
    assert 'airlock_pending_actions{agent="support-assistant"} 1.0' in text
    assert "airlock_time_to_decision_seconds_bucket" in text
    assert "airlock_oldest_pending_age_seconds" in text


def test_webhook_secret_rotation__old_secret_signs_too_during_grace_only(
    client, support_agent, reference_data, settings
):
    from approvals.webhooks import sign_with_agent_secrets
    from rollout.models import Agent

    governor = factories.make_user("gwen", groups=("governance_owner",))
    client.force_login(governor)
    old = support_agent.webhook_secret
    page = client.post(f"/agents/{support_agent.slug}/webhook-secret")
    assert page["Cache-Control"] == "no-store"
    support_agent.refresh_from_db()
    new = support_agent.webhook_secret
    assert new != old and new in page.content.decode()
    assert AuditEvent.objects.filter(verb="agent.webhook_secret_rotated").exists()
    assert new not in json.dumps(list(AuditEvent.objects.values_list("data", flat=True)))
    body = b'{"event":"x"}'
    header = sign_with_agent_secrets(support_agent, body)
    assert verify_signature(header, body, new, time.time()) and verify_signature(
        header, body, old, time.time()
    )
    Agent.objects.filter(pk=support_agent.pk).update(
        previous_webhook_secret_until=timezone.now() - timedelta(seconds=1)
    )
    support_agent.refresh_from_db()
    header = sign_with_agent_secrets(support_agent, body)
    assert verify_signature(header, body, new, time.time()) and not verify_signature(
        header, body, old, time.time()
    )
    reviewer = factories.make_user("rae", groups=("reviewer",))
    client.force_login(reviewer)
    assert client.post(f"/agents/{support_agent.slug}/webhook-secret").status_code in (403, 404)
