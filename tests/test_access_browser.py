"""Two-factor and step-up in a real Chromium: a critical approver enrols an authenticator
(the code is computed here from the secret the page shows, per RFC 6238), then approves a
critical action on the dashboard, which asks for a fresh code inline."""

from __future__ import annotations

import base64
import os
import re

import pytest
from playwright.sync_api import expect, sync_playwright

from accounts import twofactor
from approvals import actions
from approvals.models import Action
from audit import verbs
from audit.models import AuditEvent
from tests import factories
from tests.access_support import current_counter, totp

# The dashboard's approve form asks inline once it calls accounts.stepup (approvals/views.py
# ``_decide``) and renders ``{% step_up_field %}`` (templates/approvals/_card_actions.html).
pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def test_browser__enrol_totp__then_approve_critical_with_step_up(
    asgi_server, reference_data, support_agent, settings
):
    # Given step-up is on, a critical action already approved once by another reviewer,
    # and a critical approver without a second factor
    settings.STEP_UP_ENABLED = True
    cora = factories.make_user(
        "cora", groups=("reviewer",), perms=("rollout.critical_approve_agent",)
    )
    rob = factories.make_user("rob", groups=("reviewer",))
    action = factories.submit(support_agent, "wipe_database", {"scope": "staging"})
    assert action.risk == "critical"
    # (the first approval, given earlier with a fresh code: this setup vouches for it)
    actions.approve(action_id=action.pk, user=rob, step_up=lambda action: None)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("AIRLOCK_CHROMIUM", "/usr/bin/chromium"),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            page = browser.new_context(base_url=asgi_server.url).new_page()
            page.set_default_timeout(10_000)
            page.goto("/accounts/login/")
            page.fill("#id_username", "cora")
            page.fill("#id_password", "pw-for-tests")
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r"/$"))

            # When she enrols: the page shows a QR code and the secret
            page.goto("/accounts/two-factor/")
            expect(page.locator("[data-testid=totp-qr] svg")).to_be_visible()
            secret = page.locator("[data-testid=totp-secret]").inner_text().replace(" ", "")
            key_hex = base64.b32decode(secret + "=" * (-len(secret) % 8)).hex()
            enrol_counter = current_counter()
            page.fill("#enrol-form input[name=code]", totp(key_hex, enrol_counter))
            # (her password, asked again with the form: accounts.reauth)
            page.fill("#enrol-form input[name=current_password]", "pw-for-tests")
            page.click("#enrol-form button[type=submit]")
            # Then two-factor is on and her recovery codes are shown once
            expect(page.locator("[data-testid=recovery-codes] li")).to_have_count(10)
            assert twofactor.has_second_factor(cora)

            # When she opens the critical action, the approve form asks for a code inline
            page.goto(f"/actions/{action.pk}")
            approve_form = page.locator("form.decision-approve")
            field = approve_form.locator("input[name=step_up_code]")
            expect(field).to_be_visible()
            # A wrong code is refused and nothing is decided
            field.fill("000000")
            approve_form.get_by_role("button", name="Approve").click()
            expect(page.locator("body")).to_contain_text("not right")
            assert Action.objects.get(pk=action.pk).status == "pending"
            # (django-otp pauses checks for a second after a wrong code)
            page.wait_for_timeout(1100)
            # The next code of her app approves it: the quorum is met
            approve_form = page.locator("form.decision-approve")
            approve_form.locator("input[name=step_up_code]").fill(
                totp(key_hex, max(enrol_counter + 1, current_counter()))
            )
            approve_form.get_by_role("button", name="Approve").click()
            expect(page.locator("body")).to_contain_text("Approved")
        finally:
            browser.close()

    action.refresh_from_db()
    assert action.status == "approved"
    assert sorted(d.reviewer.username for d in action.decisions.all()) == ["cora", "rob"]
    stepped = AuditEvent.objects.get(verb=verbs.AUTH_STEPPED_UP)
    assert stepped.actor == "cora" and f"#{action.pk}" in stepped.data["purpose"]
