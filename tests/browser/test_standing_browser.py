"""Standing approvals as a reviewer meets them in Chromium: on a laptop (1280 px) Rita
approves a card ticking "also approve matching calls"; the agent's next matching call is
approved at once and its card says by what; on her phone (390 px) she finds the standing
approval listed on the queue and revokes it, and the next call waits for people again."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from approvals.models import StandingApproval
from tests import factories

pytestmark = [pytest.mark.browser]

TIMEOUT_MS = 10_000  # generous: the machine may be busy
BOUNDS = {"allowed": True, "max_minutes": 120, "max_uses": 20, "max_risk": "medium"}
EMAIL = {"to": "customer@example.com", "subject": "Your refund"}


def login(browser: Browser, base_url: str, user, *, width: int) -> Page:
    context = browser.new_context(base_url=base_url, viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto("/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/")
    return page


def fits_the_screen(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_browser__approve_with_standing_terms__listed__revoked_on_a_phone(
    browser, dashboard_server, transactional_db, reference_data, reviewer, artifacts
):
    expect.set_options(timeout=TIMEOUT_MS)
    rules = [
        {**rule, "standing": BOUNDS} if rule["tool"] == "send_email" else rule
        for rule in factories.SUPPORT_RULES
    ]
    agent = factories.make_agent("support-assistant", rules=rules)
    action = factories.submit(agent, "send_email", dict(EMAIL), summary="Refund confirmation")

    # On her laptop Rita opens the card and approves it, also for matching calls
    laptop = login(browser, dashboard_server.url, reviewer, width=1280)
    laptop.goto(f"/actions/{action.pk}")
    card = laptop.locator(f"#card-{action.pk}")
    card.get_by_label("Also approve matching calls").check()
    card.get_by_label("Minutes (at most 120)").fill("45")
    card.get_by_label("Uses (at most 20)").fill("5")
    laptop.screenshot(path=str(artifacts / "standing-1280-card.png"), full_page=True)
    card.get_by_role("button", name="Approve").click()
    expect(laptop.locator(f"#card-{action.pk}")).to_contain_text("matching calls for 45 minutes")
    made = StandingApproval.objects.get()
    assert (made.minutes, made.max_uses) == (45, 5)

    # The agent's next matching call is approved at once; its card says by what
    covered = factories.submit(agent, "send_email", dict(EMAIL))
    assert covered.status == "approved"
    laptop.goto(f"/actions/{covered.pk}")
    expect(laptop.locator(f"#card-{covered.pk}")).to_contain_text(
        f"Approved at once by standing approval #{made.pk}"
    )
    laptop.screenshot(path=str(artifacts / "standing-1280-covered.png"), full_page=True)
    laptop.context.close()

    # On her phone she finds it on the queue, with what is left of it, and revokes it
    phone = login(browser, dashboard_server.url, reviewer, width=390)
    phone.goto("/queue")
    row = phone.locator(f'[data-standing-id="{made.pk}"]')
    expect(row).to_contain_text("4 of 5")
    expect(row).to_contain_text("send_email")
    phone.screenshot(path=str(artifacts / "standing-390-queue.png"), full_page=True)
    revoke = row.get_by_role("button", name=f"Revoke standing approval #{made.pk}")
    box = revoke.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390  # on screen, no sideways scroll
    row.get_by_role("button", name=f"Revoke standing approval #{made.pk}").click()
    expect(phone.locator("body")).to_contain_text(
        f"Standing approval #{made.pk} of send_email revoked"
    )
    expect(phone.locator(f'[data-standing-id="{made.pk}"]')).to_have_count(0)
    assert fits_the_screen(phone)
    phone.screenshot(path=str(artifacts / "standing-390-revoked.png"), full_page=True)
    phone.context.close()
    made.refresh_from_db()
    assert made.end_reason == "revoked"
    assert factories.submit(agent, "send_email", dict(EMAIL)).status == "pending"
