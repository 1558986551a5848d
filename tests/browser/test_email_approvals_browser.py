"""Deciding from the inbox, end to end: a real SMTP server in this process (aiosmtpd on
127.0.0.1) receives the notification through Django's SMTP backend; the reviewer follows
the Approve link in Chromium, logs in, lands on the confirmation page (checked on a laptop
and on a 390 px phone, under the site's CSP), confirms, and the agent's API sees the action
approved. The used link, opened again, decides nothing and says so."""

from __future__ import annotations

import email
import re
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default as default_policy

import httpx
import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, Page, expect

from approvals.tasks import send_notification_batches
from tests import factories
from tests.browser.test_dashboard_browser import LIVE_TIMEOUT_MS
from tests.browser.test_reviewer_journey_browser import no_horizontal_scroll
from tests.conftest import free_port

pytestmark = [pytest.mark.browser]


class Inbox:
    """aiosmtpd's handler: keeps every message it is handed."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd calls it by this name
        self.messages.append(email.message_from_bytes(envelope.content, policy=default_policy))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_inbox(settings) -> Iterator[Inbox]:
    """A real SMTP server on loopback, and Django's SMTP backend pointed at it."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    try:
        yield inbox
    finally:
        controller.stop()


def open_link_and_log_in(browser: Browser, link: str, user, width: int) -> Page:
    """A fresh browser (no session) at ``width`` opens ``link``: the login page comes
    first, and logging in leads back to the link."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(LIVE_TIMEOUT_MS)
    expect.set_options(timeout=LIVE_TIMEOUT_MS)
    # The site's own Content-Security-Policy (no inline script or style) is in force on
    # every page here (the shared strict-CSP route would follow the login redirect itself
    # and hide it from the browser); what the browser refuses is recorded.
    page.violations = []  # type: ignore[attr-defined]
    page.on(
        "console",
        lambda message: (
            page.violations.append(message.text)  # type: ignore[attr-defined]
            if "Content Security Policy" in message.text
            else None
        ),
    )
    page.goto(link)
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.wait_for_url(link)
    return page


def test_email_approval__smtp_to_chromium__logged_in_confirmed_and_the_agent_sees_it(
    browser, dashboard_server, transactional_db, settings, smtp_inbox, support_agent, artifacts
):
    # Given a reviewer with an address, and Airlock's public URL where this server runs
    settings.AIRLOCK_PUBLIC_URL = dashboard_server.url
    settings.NOTIFY_MIN_RISK = "low"
    reviewer = factories.make_user("rita", groups=("reviewer",))
    reviewer.email = "rita@example.test"
    reviewer.save(update_fields=["email"])
    token = factories.make_token(support_agent)
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=dashboard_server.url, timeout=60, headers=auth) as agent:
        # When the agent asks for a call that waits for a person
        submitted = agent.post(
            "/api/v1/actions",
            json={
                "tool": "send_email",
                "arguments": {"to": "dana@example.com", "body": "Your refund is on its way."},
                "summary": "Tell Dana <b>her refund</b> is on its way",
            },
            headers={"Idempotency-Key": uuid.uuid4().hex},
        ).json()
        assert submitted["status"] == "pending"
        # and the notifications are sent (the task beat runs), over SMTP
        assert send_notification_batches() == 1
        (message,) = smtp_inbox.messages
        assert message["To"] == "rita@example.test"
        text = message.get_body(preferencelist=("plain",)).get_content()
        html = message.get_body(preferencelist=("html",)).get_content()
        assert "&lt;b&gt;her refund&lt;/b&gt;" in html and "<b>her refund</b>" not in html
        approve = re.search(r"Approve \([^)]*\): (\S+)", text).group(1)
        assert approve.startswith(f"{dashboard_server.url}/actions/{submitted['id']}/email/")

        # The HTML part as a mail reader on a phone shows it: the card's essentials and the
        # two links, the agent's markup as text
        reader = browser.new_page(viewport={"width": 390, "height": 900}, java_script_enabled=False)
        reader.set_content(html)
        expect(
            reader.get_by_text("Tell Dana <b>her refund</b> is on its way", exact=True)
        ).to_be_visible()
        expect(reader.get_by_role("link", name="Approve…")).to_have_attribute("href", approve)
        expect(reader.get_by_role("link", name="Reject…")).to_be_visible()
        reader.screenshot(path=str(artifacts / "email-approval-message-390.png"), full_page=True)
        reader.close()

        # Then on a phone the link asks for a login, then shows what is to be confirmed
        phone = open_link_and_log_in(browser, approve, reviewer, 390)
        expect(phone.locator("h1")).to_have_text(f"Approve #{submitted['id']} send_email?")
        expect(phone.locator(".card-summary")).to_have_text(
            "Tell Dana <b>her refund</b> is on its way"
        )
        expect(phone.get_by_role("button", name="Confirm approval")).to_be_visible()
        assert no_horizontal_scroll(phone)
        phone.screenshot(path=str(artifacts / "email-approval-confirm-390.png"), full_page=True)
        # (opening it decided nothing)
        assert agent.get(f"/api/v1/actions/{submitted['id']}").json()["status"] == "pending"

        # And on a laptop the reviewer confirms
        laptop = open_link_and_log_in(browser, approve, reviewer, 1280)
        laptop.screenshot(path=str(artifacts / "email-approval-confirm-1280.png"), full_page=True)
        laptop.fill("#id_comment", "Checked the order.")
        laptop.get_by_role("button", name="Confirm approval").click()
        laptop.wait_for_url(f"{dashboard_server.url}/actions/{submitted['id']}")
        expect(laptop.locator(".messages")).to_contain_text("Approved: the agent may now run")
        expect(laptop.locator(f"#card-{submitted['id']}")).to_have_attribute(
            "data-status", "approved"
        )
        laptop.screenshot(path=str(artifacts / "email-approval-done-1280.png"), full_page=True)
        # and the agent's API sees it approved, by email
        decided = agent.get(f"/api/v1/actions/{submitted['id']}").json()
        assert decided["status"] == "approved"
        assert [d["reviewer"] for d in decided["decisions"]] == ["rita"]

        # The link, opened again, decides nothing and says why
        phone.goto(approve)
        expect(phone.locator("h1")).to_have_text("This link decided nothing")
        expect(phone.locator("[data-refusal-code]")).to_have_attribute(
            "data-refusal-code", "link_used"
        )
        expect(phone.get_by_role("link", name="Open the card in Airlock")).to_be_visible()
        assert no_horizontal_scroll(phone)
        phone.screenshot(path=str(artifacts / "email-approval-used-390.png"), full_page=True)
        assert phone.violations == [] and laptop.violations == []  # type: ignore[attr-defined]
