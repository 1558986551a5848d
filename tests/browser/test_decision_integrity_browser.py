"""Decision integrity as reviewers meet it in Chromium: an edit that raises the risk raises
the bar on the card, and a click on a card whose arguments changed since is refused with a
reason — one reviewer on a laptop, the other on a 390 px phone with a stale tab."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Browser, Page, expect

from approvals.models import Action, Decision
from tests import factories

pytestmark = [pytest.mark.browser]

TIMEOUT_MS = 10_000  # generous: the machine may be busy

PAYMENT_RULES = [
    {
        **factories.rule("create_refund_request", "write", "requires_approval", "medium"),
        "argument_limits": [{"field": "amount", "op": "<=", "value": 50000}],
        "blast_radius_from_arguments": {"amount": "amount"},
    }
]


def login(browser: Browser, base_url: str, user, *, width: int, javascript: bool = True) -> Page:
    context = browser.new_context(
        base_url=base_url,
        viewport={"width": width, "height": 900},
        java_script_enabled=javascript,
    )
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


def test_browser__edit_raises_the_bar__and_a_stale_card_is_refused(
    browser, dashboard_server, transactional_db, reference_data, reviewer, reviewer2
):
    expect.set_options(timeout=TIMEOUT_MS)
    payments = factories.make_agent("payments", rules=PAYMENT_RULES)
    action = factories.submit(
        payments,
        "create_refund_request",
        {"order_id": "ORD-7711", "amount": 40},
        summary="Refund order ORD-7711",
    )
    assert (action.risk, action.required_approvals) == ("medium", 1)

    # Rita opens the action on her phone (an old tab: no script, so nothing refreshes it)
    rita = login(browser, dashboard_server.url, reviewer, width=390, javascript=False)
    rita.goto(f"/actions/{action.pk}")
    expect(rita.locator(f"#card-{action.pk}")).to_contain_text("0 of 1")
    assert fits_the_screen(rita)

    # Rob, on his laptop, edits the refund up to 2,500 and approves it
    rob = login(browser, dashboard_server.url, reviewer2, width=1280)
    card = rob.locator(f"#card-{action.pk}")
    expect(card).to_be_visible()
    card.locator('[data-shortcut="edit"]').click()
    card.locator("textarea[name=arguments]").fill(
        json.dumps({"order_id": "ORD-7711", "amount": 2500})
    )
    card.get_by_role("button", name="Approve edited arguments").click()
    # His card now says what the edited payload needs: high risk, two people
    expect(rob.locator(f"#card-{action.pk}")).to_contain_text("needs more approvals")
    expect(rob.locator(f"#card-{action.pk} .badge-risk")).to_have_text("high")
    expect(rob.locator(f"#card-{action.pk}")).to_contain_text("1 of 2")
    fresh = Action.objects.get(pk=action.pk)
    assert (fresh.status, fresh.risk, fresh.required_approvals) == ("pending", "high", 2)

    # Rita approves what her stale screen shows (40): refused, and told why
    rita.locator(f"#card-{action.pk}").get_by_role("button", name="Approve").click()
    expect(rita.locator(f"#card-{action.pk} .notice--error")).to_contain_text("arguments changed")
    assert not Decision.objects.filter(action_id=action.pk, reviewer=reviewer).exists()
    # The page she got back shows the payload that will run now
    expect(rita.locator(f"#card-{action.pk}")).to_contain_text("2500")
    assert fits_the_screen(rita)
    # and approving that is her second, valid approval
    rita.locator(f"#card-{action.pk}").get_by_role("button", name="Approve").click()
    expect(rita.locator("body")).to_contain_text("Approved")
    assert Action.objects.get(pk=action.pk).status == "approved"
    rita.context.close()
    rob.context.close()
