"""Four eyes in a real Chromium: a governance owner promotes an agent, which only opens a
change request; a second owner approves it; the gate's decisions for that agent change."""

from __future__ import annotations

import os
import re
import uuid

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from governance.models import ChangeRequest
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def gate(server, token: str) -> dict:
    """One low-risk write through the real gate API."""
    response = httpx.post(
        server.url + "/api/v1/actions",
        json={"tool": "update_crm_note", "arguments": {"note": uuid.uuid4().hex}},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_browser__promotion_needs_a_second_owner__then_the_gate_decides_differently(
    asgi_server, reference_data
):
    # Given a supervised agent whose low-risk writes wait for a human, and two owners
    agent = factories.make_agent("crm-bot", tier="supervised")
    token = factories.make_token(agent)
    gwen = factories.make_user("gwen", groups=("governance_owner",))
    gus = factories.make_user("gus", groups=("governance_owner",))
    before = gate(asgi_server, token)
    assert (before["status"], before["reason_code"], before["policy_version"]) == (
        "pending",
        "tier_requires_approval",
        1,
    )

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("AIRLOCK_CHROMIUM", "/usr/bin/chromium"),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:

            def login(user):
                page = browser.new_context(base_url=asgi_server.url).new_page()
                page.set_default_timeout(10_000)
                page.goto("/accounts/login/")
                page.fill("#id_username", user.username)
                page.fill("#id_password", "pw-for-tests")
                page.click("button[type=submit]")
                page.wait_for_url(re.compile(r"/changes$"))  # a governance owner's home
                return page

            # When the first owner promotes it from the agent page
            first = login(gwen)
            first.goto("/agents/crm-bot")
            expect(first.locator("[data-testid=agent-tier]")).to_have_text("supervised")
            first.select_option("#tier-form select[name=tier]", "autonomous")
            first.fill("#tier-form input[name=reason]", "two weeks without a rejection")
            first.click("#tier-form button[type=submit]")
            # It previews first: a loosening, a change request; nothing written yet
            expect(first.locator("[data-testid=preview-classification]")).to_contain_text(
                "Loosening"
            )
            assert not ChangeRequest.objects.exists()
            first.click("#propose-form button[value=propose]")
            # Then it is only a change request, which its author cannot approve
            first.wait_for_url(re.compile(r"/changes/\d+$"))
            expect(first.locator("[data-testid=change-status]")).to_have_text("open")
            expect(first.locator(".policy-diff")).to_contain_text("promote supervised → autonomous")
            expect(first.locator("#approve-form")).to_have_count(0)
            expect(first.locator(".decide")).to_contain_text(
                "another governance owner must approve it"
            )
            change_url = first.url
            assert gate(asgi_server, token)["status"] == "pending"  # nothing changed yet

            # When the second owner finds it on /changes and approves it
            second = login(gus)
            second.goto("/changes")
            second.click(f"a[href='{change_url.removeprefix(asgi_server.url)}']")
            expect(second.locator(".policy-diff")).to_contain_text(
                "promote supervised → autonomous"
            )
            second.fill("#approve-form textarea[name=comment]", "readiness checked")
            second.click("#approve-form button[type=submit]")
            expect(second.locator("[data-testid=change-status]")).to_have_text("applied")
            expect(second.locator("body")).to_contain_text(
                "policy version 2 of crm-bot is now current"
            )
            second.goto("/agents/crm-bot")
            expect(second.locator("[data-testid=agent-tier]")).to_have_text("autonomous")
        finally:
            browser.close()

    # Then the gate lets the same kind of call run without a human, under version 2
    after = gate(asgi_server, token)
    assert (after["status"], after["reason_code"], after["policy_version"]) == (
        "allowed",
        "auto_approved",
        2,
    )
    change = ChangeRequest.objects.get()
    assert (change.author.username, change.closed_by.username, change.status) == (
        "gwen",
        "gus",
        "applied",
    )
