"""An auditor signs in, presses "Verify now" on the audit page, sees the run in progress
and then its result appear without a reload, on a laptop and on a phone."""

from __future__ import annotations

import pytest
from django.db import transaction
from playwright.sync_api import expect

from audit import verbs
from audit.chain import Actor, append_event
from audit.models import AuditEvent, VerificationJob
from audit.verification import run_job
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def checkpoint_dir(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"


@pytest.fixture
def queued(monkeypatch):
    """The worker's queue: the job ids "Verify now" queued (a test plays the worker)."""
    jobs: list[int] = []
    monkeypatch.setattr("audit.console.actions.run_verification_job.delay", jobs.append)
    return jobs


@pytest.mark.parametrize("width", [1280, 390])
def test_browser__auditor_presses_verify_now__sees_progress_then_the_result_live(
    browser, dashboard_server, reference_data, artifacts, queued, width
):
    # Given an auditor and a log of a few events, never verified
    factories.make_user("audrey", groups=("auditor",))
    for i in range(3):
        with transaction.atomic():
            append_event(
                verb=verbs.ACTION_VIEWED,
                actor=Actor.system("test"),
                target_type="action",
                target_id=i + 1,
                agent_slug="alpha",
            )
    context = browser.new_context(
        base_url=dashboard_server.url, viewport={"width": width, "height": 900}
    )
    try:
        page = context.new_page()
        page.goto("/accounts/login/")
        page.fill("#id_username", "audrey")
        page.fill("#id_password", "pw-for-tests")
        page.click("button[type=submit]")
        page.wait_for_url(dashboard_server.url + "/audit")  # an auditor's home
        status = page.get_by_role("region", name="Chain verification")
        expect(status).to_contain_text("Not verified yet")
        page.evaluate("window.airlockNotReloaded = true")

        # When they press "Verify now"
        status.get_by_role("button", name="Verify now").click()

        # Then the page shows the run in progress, and refuses a second start meanwhile
        expect(status).to_contain_text("Verifying the chain", timeout=15_000)
        expect(status.get_by_role("button", name="Verifying…")).to_be_disabled()
        assert len(queued) == 1

        # And when the worker has run it, the result appears without a reload
        run_job(queued[0])
        head = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
        expect(status).to_contain_text(
            f"Intact: verified through #{head} of #{head} (the whole log)", timeout=15_000
        )
        expect(status.get_by_role("button", name="Verify now")).to_be_enabled()
        assert page.evaluate("window.airlockNotReloaded === true")
        assert VerificationJob.objects.get().requested_by == "audrey"
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {width}px"
        page.screenshot(path=str(artifacts / f"audit-verify-now-{width}.png"), full_page=True)
    finally:
        context.close()
