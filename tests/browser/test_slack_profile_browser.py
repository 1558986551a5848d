"""Issue 20 (Slack approvals) in a real Chromium, from the login page: a reviewer opens the
link ``/airlock link`` gave her in Slack, logs in, sees which Slack identity she is about to
link and confirms it with her password (laptop, 1280 px); then, on her phone (390 px), sets
her Slack risk threshold and unlinks."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Browser, expect

from audit import verbs
from audit.models import AuditEvent
from slack_approvals import actions
from slack_approvals.models import SlackAccount
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def _fits(page, width: int) -> None:
    """Nothing is wider than the screen (no sideways scrolling)."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def _accessible(page) -> None:
    """The page as it stands passes axe-core's WCAG 2.1 A/AA rules (the sweep of
    tests/browser/test_accessibility.py sees the profile only unlinked, without a link)."""
    from axe_playwright_python.sync_playwright import Axe

    page.evaluate(Axe().axe_script)
    options = {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]}
    violations = page.evaluate(f"axe.run(document, {json.dumps(options)})")["violations"]
    assert not violations, [(v["id"], [n["target"] for n in v["nodes"][:3]]) for v in violations]


def test_browser__slack_link_confirm_threshold_unlink__laptop_and_phone(
    browser: Browser, dashboard_server, reference_data, settings, artifacts
):
    # Given Slack configured (its Web API at a loopback port: this page calls none of it),
    # and the link Slack gave a reviewer
    settings.SLACK_BOT_TOKEN = "xoxb-browser"
    settings.SLACK_SIGNING_SECRET = "browser-signing-secret"
    settings.SLACK_API_URL = "http://127.0.0.1:9/api/"
    factories.make_user("rita", groups=("reviewer",))
    token = actions.link_token(actions.SlackIdentity("T0ACME", "U0RITA", "rita.s"))
    context = browser.new_context(
        base_url=dashboard_server.url, viewport={"width": 1280, "height": 900}
    )
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        # When she opens it, logged out: she logs in first and lands back on it
        page.goto(f"/accounts/profile/?slack_link={token}#slack")
        page.fill("#id_username", "rita")
        page.fill("#id_password", "pw-for-tests")
        page.click("button[type=submit]")
        confirm = page.locator("[data-testid=slack-confirm]")
        # Then the profile names the Slack identity and asks to confirm; nothing is linked yet
        expect(confirm).to_contain_text("@rita.s (U0RITA)")
        expect(confirm).to_contain_text("T0ACME")
        assert not SlackAccount.objects.exists()
        _fits(page, 1280)
        _accessible(page)
        page.locator("#slack").screenshot(path=str(artifacts / "slack-confirm-1280.png"))
        # When she confirms with a wrong password, then the right one
        confirm.locator("input[name=current_password]").fill("not-my-password")
        confirm.get_by_role("button", name="Link this Slack account").click()
        expect(page.locator("[data-testid=slack-error]")).to_contain_text("password is not right")
        _accessible(page)
        assert not SlackAccount.objects.filter(slack_user_id="U0RITA").exists()
        confirm = page.locator("[data-testid=slack-confirm]")
        confirm.locator("input[name=current_password]").fill("pw-for-tests")
        confirm.get_by_role("button", name="Link this Slack account").click()
        # Then she is linked, and told so
        expect(page.locator("[data-testid=slack-state]")).to_contain_text("@rita.s (U0RITA)")
        expect(page.locator("[data-testid=slack-confirm]")).to_have_count(0)
        page.screenshot(path=str(artifacts / "slack-linked-1280.png"), full_page=True)

        # When, on her phone, she raises her threshold and then unlinks
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto("/accounts/profile/#slack")
        page.get_by_label("Send me Slack messages for actions of at least this risk").select_option(
            "medium"
        )
        page.get_by_role("button", name="Save Slack threshold").click()
        expect(page.get_by_text("about medium-risk actions and up")).to_be_visible()
        _fits(page, 390)
        _accessible(page)
        page.screenshot(path=str(artifacts / "slack-threshold-390.png"), full_page=True)
        page.get_by_role("button", name="Unlink Slack").click()
        expect(page.locator("[data-testid=slack-state]")).to_contain_text("Not linked")
        expect(
            page.get_by_label("Send me Slack messages for actions of at least this risk")
        ).to_have_value("medium")
        _fits(page, 390)
        page.locator("#slack").screenshot(path=str(artifacts / "slack-unlinked-390.png"))
    finally:
        context.close()

    account = SlackAccount.objects.get()
    assert (account.slack_user_id, account.min_risk) == ("", "medium")
    linked = AuditEvent.objects.get(verb=verbs.SLACK_LINKED)
    assert linked.actor == "rita" and linked.data["slack_user_id"] == "U0RITA"
    assert AuditEvent.objects.filter(verb=verbs.SLACK_UNLINKED).count() == 1
