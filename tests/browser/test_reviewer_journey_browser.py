"""A reviewer's journey in a real Chromium, on a laptop and on a 390 px phone: log in, land
on the queue, find and decide cards with the keyboard (confirmation for high risk, focus
moving on), hear what arrives, under the strictest CSP, without horizontal scrolling."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests import factories
from tests.browser.test_dashboard_browser import LIVE_TIMEOUT_MS, enforce_strict_csp

pytestmark = [pytest.mark.browser]

EMAIL = {
    "tool": "send_email",
    "arguments": {
        "to": "dana@example.com",
        "body": "Dear Dana,\n\nYour refund is on its way.\n\nBest,\nSupport",
    },
    "summary": "Tell Dana her refund is on its way",
}
HIGH_REFUND = {
    "tool": "create_refund_request",
    "arguments": {"order_id": "ORD-1", "amount": 5000, "currency": "EUR"},
    "summary": "Refund a large order",
    "blast_radius": {"amount": {"value": 5000, "currency": "EUR"}},
}


@pytest.fixture
def submit(dashboard_server, transactional_db, support_agent) -> Iterator:
    token = factories.make_token(support_agent)
    with httpx.Client(base_url=dashboard_server.url, timeout=60) as api:

        def send(body: dict) -> dict:
            response = api.post(
                "/api/v1/actions",
                json=body,
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
            )
            assert response.status_code == 201, response.text
            return response.json()

        yield send


def log_in(browser: Browser, server, user, width: int) -> tuple[Page, list[str], list[str]]:
    """One context for the reviewer at this viewport, under the strict CSP; returns the
    page, the CSP violations and the dialogs seen (each dismissed)."""
    context = browser.new_context(base_url=server.url, viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(LIVE_TIMEOUT_MS)
    expect.set_options(timeout=LIVE_TIMEOUT_MS)
    violations: list[str] = []
    dialogs: list[str] = []
    enforce_strict_csp(page, violations)
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto("/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")
    expect(page.locator("[data-live-status]")).to_have_text("live")
    return page, violations, dialogs


def no_horizontal_scroll(page: Page) -> bool:
    fits = page.evaluate(
        "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    if not fits:  # name the widest offenders, for whoever reads the failure
        print(
            page.evaluate(
                """() => Array.from(document.querySelectorAll('body *'))
                .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth)
                .slice(0, 8).map(e => e.tagName + '.' + e.className + '#' + e.id + ' ' +
                Math.round(e.getBoundingClientRect().right))"""
            )
        )
    return fits


@pytest.mark.parametrize("width", [1280, 390])
def test_reviewer_journey__login_to_decisions__laptop_and_phone(
    browser, dashboard_server, submit, reviewer, width, artifacts
):
    # Given a reviewer who logs in: they land on the queue, with only their pages offered
    page, violations, dialogs = log_in(browser, dashboard_server, reviewer, width)
    expect(page.locator("h1")).to_have_count(1)
    expect(page.locator(".topnav a")).to_have_text(["Queue", "Decided", "Agents"])
    # and the first Tab reaches the skip link, which leads to the content
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()

    # When an email with a multi-line body arrives
    email = submit(EMAIL)
    card = page.locator(f"#card-{email['id']}")
    # Then it appears highlighted, announced, counted in the tab title, its body as text
    expect(card).to_be_visible()
    expect(card).to_have_class(re.compile("card--new"))
    expect(page.locator("[data-live-announcer]")).to_contain_text(f"send_email #{email['id']}")
    expect(page).to_have_title("(1) Queue · Airlock")
    expect(card.locator(".arg-text").first).to_have_text(EMAIL["arguments"]["body"])
    expect(card).to_contain_text("needs 1 more: any reviewer")
    # and the buttons say what they act on
    expect(card.get_by_role("button", name=f"Approve send_email #{email['id']}")).to_be_visible()

    # When a high-risk refund arrives (sorted first) and the reviewer presses j, a
    high = submit(HIGH_REFUND)
    expect(page).to_have_title("(2) Queue · Airlock")
    high_card = page.locator(f"#card-{high['id']}")
    expect(high_card).to_be_visible()
    page.keyboard.press("j")
    expect(high_card).to_be_focused()
    page.keyboard.press("a")
    # Then they are asked first; dismissing leaves it undecided
    expect(high_card).to_have_attribute("data-status", "pending")
    expect(high_card).to_contain_text("0/2 approvals")
    assert dialogs and f"create_refund_request #{high['id']}" in dialogs[-1]

    # When they move to the email and approve it with the keyboard (no question: medium)
    page.keyboard.press("j")
    expect(card).to_be_focused()
    page.keyboard.press("a")
    expect(card).to_contain_text("Approved: the agent may now run")
    assert len(dialogs) == 1
    # Then the focus moves on to the next pending card, and the decision is announced
    expect(high_card).to_be_focused()
    expect(page.locator("[data-live-announcer]")).to_contain_text(re.compile("approved", re.I))

    # And search narrows the queue
    page.get_by_label("Search tool, summary or agent").fill("refund")
    page.get_by_label("Search tool, summary or agent").press("Enter")
    expect(page.locator(".cards:not(.cards--left) .card")).to_have_count(1)

    # Nothing needed an exception to the CSP, and the page fits the screen
    assert no_horizontal_scroll(page), f"horizontal scroll at {width}px"
    page.screenshot(path=artifacts / f"reviewer-journey-{width}.png", full_page=True)
    for path in ("/decided", f"/actions/{email['id']}", "/accounts/profile/", "/changes/999999"):
        page.goto(path)
        expect(page.locator("h1")).to_have_count(1)
        assert no_horizontal_scroll(page), f"{path}: horizontal scroll at {width}px"
    expect(page.locator("h1")).to_have_text("Not found")
    assert (
        page.evaluate(
            "() => fetch(document.querySelector('link[rel=icon]').href).then(r => r.status)"
        )
        == 200
    )
    assert violations == []
    page.context.close()


def test_reviewer__bulk_and_more_time__on_a_phone(browser, dashboard_server, submit, reviewer):
    # Given two low-risk CRM notes and an email waiting, and a reviewer on a 390 px phone
    notes = [submit({"tool": "update_crm_note", "arguments": {"note": f"n{i}"}}) for i in (1, 2)]
    email = submit({"tool": "send_email", "arguments": {"to": "x@example.com"}})
    page, violations, _ = log_in(browser, dashboard_server, reviewer, 390)
    expect(page.locator(".cards .card")).to_have_count(3)
    # When they give the email an hour more
    card = page.locator(f"#card-{email['id']}")
    card.get_by_role("button", name=f"+1 h for send_email #{email['id']}").click()
    expect(card.locator(".notice")).to_contain_text("now waits until")
    # And decide both notes with one confirmation
    bulk = page.locator("details.bulk")
    bulk.locator("summary").click()
    expect(bulk).to_contain_text(f"#{notes[0]['id']}, #{notes[1]['id']}")
    assert no_horizontal_scroll(page)
    bulk.get_by_role("button", name="Confirm: approve 2").click()
    expect(page.locator(".messages")).to_contain_text(
        f"Approved 2: #{notes[0]['id']}, #{notes[1]['id']}."
    )
    expect(page.locator(".cards:not(.cards--left) .card")).to_have_count(1)
    assert no_horizontal_scroll(page)
    assert violations == []
    page.context.close()
