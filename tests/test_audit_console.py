"""The auditor's console: "Verify now" runs a verification in the background and its
result shows on ``/audit`` (the status fragment the page polls); one run at a time; only
auditors of every agent may start one; the status says how far the log has grown since the
latest run; correlation ids are searchable within the auditor's scope and shown."""

from __future__ import annotations

import re

import pytest
from django.db import transaction
from django.utils import timezone

from audit import verbs
from audit.chain import Actor, append_event
from audit.checkpoints import write_signed_checkpoint
from audit.models import AuditEvent, VerificationJob
from audit.verification import run_verification
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def checkpoint_dir(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"


@pytest.fixture
def eager_celery(settings):
    from config.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def _append(n: int, agent_slug: str = "alpha", correlation_id: str = "") -> None:
    for i in range(n):
        with transaction.atomic():
            append_event(
                verb=verbs.ACTION_VIEWED,
                actor=Actor.system("test"),
                target_type="action",
                target_id=i + 1,
                agent_slug=agent_slug,
                correlation_id=correlation_id,
                data={"i": i},
            )


def _head() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()


def test_verify_now__runs_in_the_background_and_the_page_shows_the_result(
    client, auditor, eager_celery
):
    _append(3)
    write_signed_checkpoint()
    client.force_login(auditor)
    page = client.get("/audit").content.decode()
    assert "Not verified yet" in page and "Verify now" in page

    answer = client.post("/audit/verification", **HTMX)

    assert answer.status_code == 200
    job = VerificationJob.objects.get()
    assert job.state == "done" and job.verification.ok and job.requested_by == "audrey"
    started = AuditEvent.objects.get(verb=verbs.AUDIT_VERIFICATION_STARTED)
    assert (started.actor_type, started.actor) == ("user", "audrey")
    head = _head()
    # The run audited its own start, so it verified through the newest event.
    for body in (answer.content.decode(), client.get("/audit").content.decode()):
        assert f"Intact: verified through #{head} of #{head} (the whole log)" in body
        assert "Verifying" not in body
    assert "(Verify now)" in job.verification.triggered_by
    # Opened directly (not polled by the page), the fragment is the page
    assert client.get("/audit/verification").url == "/audit"


def test_verify_now__without_htmx__redirects_to_the_page_with_a_message(
    client, auditor, eager_celery
):
    _append(1)
    client.force_login(auditor)
    answer = client.post("/audit/verification", follow=True)
    page = answer.content.decode()
    assert answer.redirect_chain[-1][0] == "/audit"
    assert "Verification started" in page and "Intact: verified through" in page


def test_verify_now__while_one_runs__refused_and_the_page_polls_the_running_one(client, auditor):
    _append(2)
    VerificationJob.objects.create(
        requested_by="otto", requested_at=timezone.now(), state="running", events_total=4
    )
    client.force_login(auditor)

    answer = client.post("/audit/verification", **HTMX)

    assert answer.status_code == 409
    body = answer.content.decode()
    assert "already running (started by otto)" in body
    assert 'hx-trigger="every 2s"' in body and "Verifying…" in body and "disabled" in body
    # A poll that has seen this state already is answered with nothing to swap
    seen = re.search(r"\?seen=([\w-]+)", body).group(1)
    assert client.get(f"/audit/verification?seen={seen}", **HTMX).status_code == 204
    assert client.get("/audit/verification?seen=old", **HTMX).status_code == 200
    assert VerificationJob.objects.count() == 1
    assert not AuditEvent.objects.filter(verb=verbs.AUDIT_VERIFICATION_STARTED).exists()
    plain = client.post("/audit/verification", follow=True).content.decode()
    assert "already running" in plain


def test_verify_now__a_lost_job__no_longer_blocks_a_new_one(client, auditor, eager_celery):
    _append(1)
    VerificationJob.objects.create(
        requested_by="otto", requested_at=timezone.now() - timezone.timedelta(days=1)
    )
    client.force_login(auditor)
    assert client.post("/audit/verification", **HTMX).status_code == 200
    states = sorted(VerificationJob.objects.values_list("state", flat=True))
    assert states == ["done", "failed"]


def test_verify_now__per_agent_auditor__may_not_start_one(client, reference_data):
    agent = factories.make_agent("alpha")
    scoped = factories.make_user("ava", agent_perms={"rollout.audit_agent": agent})
    client.force_login(scoped)
    assert "Verify now" not in client.get("/audit").content.decode()
    assert client.post("/audit/verification", **HTMX).status_code == 403
    assert client.get("/audit/verification", **HTMX).status_code == 403
    assert not VerificationJob.objects.exists()


def test_status__events_after_the_latest_run__are_named_not_yet_verified(client, auditor):
    _append(2)
    write_signed_checkpoint()
    run_verification(kind="full")
    through = _head()
    _append(3)
    client.force_login(auditor)
    body = client.get("/audit/verification", **HTMX).content.decode()
    assert f"verified through #{through} of #{_head()} (3 events since: not yet verified)" in body
    assert 'hx-trigger="every 2s"' not in body  # nothing running: no polling
    status = client.get("/api/v1/audit/status").json()
    assert (status["head_id"], status["unverified_events"], status["running"]) == (
        _head(),
        3,
        False,
    )
    assert status["latest"]["last_event_id"] == through


def test_status__incremental_run__verified_through_the_newest_event(client, auditor):
    _append(2, "alpha")
    _append(2, "beta")
    write_signed_checkpoint()
    run_verification(kind="full")
    _append(1, "beta")
    _append(1, "alpha")  # newest event in a partition walked before beta's
    run_verification(kind="incremental")
    client.force_login(auditor)
    body = client.get("/audit/verification", **HTMX).content.decode()
    assert f"verified through #{_head()} of #{_head()} (the whole log)" in body


def test_status__broken_run__says_where_and_what(client, auditor):
    _append(2)
    write_signed_checkpoint()
    with transaction.atomic():
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
            cursor.execute(
                "UPDATE audit_auditevent SET actor = 'x' WHERE partition = 'alpha' AND chain_seq = 1"
            )
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")
    broken = AuditEvent.objects.get(partition="alpha", chain_seq=1).pk
    run_verification(kind="full")
    client.force_login(auditor)
    body = client.get("/audit").content.decode()
    assert f'Broken at <a href="/audit?before={broken + 1}">event #{broken}</a>' in body


def test_correlation_search__scoped_to_what_the_auditor_may_see(client, reference_data):
    alpha = factories.make_agent("alpha")
    factories.make_agent("bravo")
    _append(2, "alpha", correlation_id="conv-7")
    _append(2, "bravo", correlation_id="conv-7")
    _append(1, "alpha", correlation_id="conv-8")
    scoped = factories.make_user("ava", agent_perms={"rollout.audit_agent": alpha})
    everyone = factories.make_user("audrey", groups=("auditor",))

    client.force_login(scoped)
    page = client.get("/audit", {"correlation_id": "conv-7"}).content.decode()
    assert page.count('">conv-7</a>') == 2 and "conv-8" not in page and "bravo" not in page
    api = client.get("/api/v1/audit/events", {"correlation_id": "conv-7"}).json()
    assert {(e["agent_slug"], e["correlation_id"]) for e in api["results"]} == {("alpha", "conv-7")}
    assert len(api["results"]) == 2

    client.force_login(everyone)
    api = client.get("/api/v1/audit/events", {"correlation_id": "conv-7"}).json()
    assert {e["agent_slug"] for e in api["results"]} == {"alpha", "bravo"}


def test_correlation_id__shown_on_the_actions_audit_page(client, auditor, support_agent):
    action = factories.submit(support_agent, "send_email", correlation_id="ticket-42")
    client.force_login(auditor)
    page = client.get(f"/audit/actions/{action.pk}").content.decode()
    assert "correlation id <code>ticket-42</code>" in page
    events = client.get("/audit", {"correlation_id": "ticket-42"}).content.decode()
    assert f"action #{action.pk}" in events


def test_openapi__documents_the_correlation_filter_and_the_status_fields(client, auditor):
    client.force_login(auditor)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    events = schema["paths"]["/api/v1/audit/events"]["get"]["parameters"]
    (correlation,) = [p for p in events if p["name"] == "correlation_id"]
    assert "correlation id" in correlation["description"]
    status = schema["components"]["schemas"]["Status"]["properties"]
    assert {"head_id", "unverified_events", "running"} <= set(status)
