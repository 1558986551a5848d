"""Issue 16 class 1 in a real Chromium, as the person would do it, from the login page: on a
laptop (1280 px) she creates a personal token — the form asks for her password inline, a
wrong one is refused — and on a phone (390 px), once the few minutes have passed, she enrols
an authenticator and the password is asked again. One login, one browser context."""

from __future__ import annotations

import base64

import pytest
from playwright.sync_api import Browser, expect

from accounts import twofactor
from accounts.models import PersonalToken
from approvals.models import Outbox
from audit import verbs
from audit.models import AuditEvent
from tests import factories
from tests.access_support import current_counter, totp

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _fits(page, width: int) -> None:
    """Nothing is wider than the screen (no sideways scrolling)."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_browser__token_then_enrolment__password_asked_inline__laptop_and_phone(
    browser: Browser, dashboard_server, reference_data, settings, artifacts
):
    # Given a reviewer without a second factor, with an email address
    rita = factories.make_user("rita", groups=("reviewer",))
    rita.email = "rita@example.com"
    rita.save(update_fields=["email"])
    context = browser.new_context(
        base_url=dashboard_server.url, viewport={"width": 1280, "height": 900}
    )
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto("/accounts/login/")
        page.fill("#id_username", "rita")
        page.fill("#id_password", "pw-for-tests")
        page.click("button[type=submit]")
        page.wait_for_url(dashboard_server.url + "/")

        # When she creates a personal token on her laptop
        page.goto("/accounts/profile/")
        form = page.locator("#token-form")
        form.get_by_label("Name").fill("laptop CLI")
        form.get_by_label("decide on actions").check()
        password = form.locator("input[name=current_password]")
        # Then the form asks for her password (logging in a minute ago is not enough)
        expect(password).to_be_visible()
        _fits(page, 1280)
        password.fill("not-my-password")
        form.get_by_role("button", name="Create token").click()
        expect(page.locator("#token-form")).to_contain_text("password is not right")
        assert not PersonalToken.objects.exists()
        form = page.locator("#token-form")
        form.get_by_label("Name").fill("laptop CLI")
        form.get_by_label("decide on actions").check()
        form.locator("input[name=current_password]").fill("pw-for-tests")
        form.get_by_role("button", name="Create token").click()
        expect(page.locator("[data-testid=personal-token]")).to_be_visible()
        page.screenshot(path=str(artifacts / "credentials-token-1280.png"), full_page=True)
        assert PersonalToken.objects.get().name == "laptop CLI"

        # When, later, she turns on two-factor from her phone
        settings.REAUTH_WINDOW_SECONDS = 0  # the few minutes have passed
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto("/accounts/two-factor/")
        expect(page.locator("[data-testid=totp-qr] svg")).to_be_visible()
        _fits(page, 390)
        enrol = page.locator("#enrol-form")
        # Then the password is asked again, inline with the code
        expect(enrol.locator("input[name=current_password]")).to_be_visible()
        page.screenshot(path=str(artifacts / "credentials-enrol-390.png"), full_page=True)
        secret = page.locator("[data-testid=totp-secret]").inner_text().replace(" ", "")
        key_hex = base64.b32decode(secret + "=" * (-len(secret) % 8)).hex()
        enrol.locator("input[name=code]").fill(totp(key_hex, current_counter()))
        enrol.locator("input[name=current_password]").fill("pw-for-tests")
        enrol.get_by_role("button", name="Turn on two-factor").click()
        expect(page.locator("[data-testid=recovery-codes] li")).to_have_count(10)
        _fits(page, 390)
    finally:
        context.close()

    assert twofactor.has_second_factor(rita)
    assert AuditEvent.objects.filter(verb=verbs.AUTH_REAUTHENTICATED).count() == 2
    assert AuditEvent.objects.filter(verb=verbs.TWO_FACTOR_ENROLLED).count() == 1
    # One email per change, to her account's address
    assert Outbox.objects.filter(kind="email", destination="rita@example.com").count() == 2
