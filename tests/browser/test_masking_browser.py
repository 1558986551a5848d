"""Masked arguments as a reviewer without ``audit.view_sensitive`` meets them in Chromium,
from login, on a laptop (1280 px) and on a phone (390 px): the card and its argument editor
show ``[masked]`` for the card number, and approving an edit of another field runs with the
real card number kept."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from approvals.models import Action
from tests import factories
from tests.browser.test_decision_integrity_browser import TIMEOUT_MS, login

pytestmark = [pytest.mark.browser]

CARD = "4111111111111111"
ARGUMENTS = {"order_id": "ORD-1", "amount": 40, "card_number": CARD}
RULES = [factories.rule("create_refund_request", "write", "requires_approval", "medium")]


def card_fits(page: Page, action_id: int) -> bool:
    """The card (arguments, editor) fits the screen's width. (The trace below it, with its
    long JSON details, is not this test's subject.)"""
    return page.evaluate(
        f"document.getElementById('card-{action_id}').getBoundingClientRect().right"
        " <= window.innerWidth + 1"
    )


def edit_amount_and_approve(page: Page, action_id: int, amount: int) -> None:
    page.goto(f"/actions/{action_id}")
    card = page.locator(f"#card-{action_id}")
    expect(card.locator(".card-arguments")).to_contain_text('"card_number": "[masked]"')
    assert CARD not in page.content()
    card.locator('[data-shortcut="edit"]').click()
    editor = card.locator("textarea[name=arguments]")
    shown = json.loads(editor.input_value())
    assert shown == {**ARGUMENTS, "card_number": "[masked]"}
    editor.fill(json.dumps({**shown, "amount": amount}))
    card.get_by_role("button", name="Approve edited arguments").click()
    expect(page.locator(f"#card-{action_id}")).to_contain_text("Approved")
    assert CARD not in page.content()
    assert card_fits(page, action_id)


def test_browser__masked_card__edit_another_field_and_approve__laptop_and_phone(
    browser, dashboard_server, transactional_db, reference_data, reviewer
):
    expect.set_options(timeout=TIMEOUT_MS)
    payments = factories.make_agent("payments", rules=RULES)
    laptop, phone = (
        factories.submit(payments, "create_refund_request", ARGUMENTS, summary=f"Refund {n}")
        for n in ("laptop", "phone")
    )
    # Rita, a reviewer without the sensitive-data right, logs in on her laptop
    page = login(browser, dashboard_server.url, reviewer, width=1280)
    expect(page.locator(f"#card-{laptop.pk} .card-arguments")).to_contain_text("[masked]")
    assert CARD not in page.content()
    edit_amount_and_approve(page, laptop.pk, 45)
    # Then on her phone, same session
    page.set_viewport_size({"width": 390, "height": 900})
    edit_amount_and_approve(page, phone.pk, 46)
    # What runs is her edit, with the card number she never saw
    for action, amount in ((laptop, 45), (phone, 46)):
        stored = Action.objects.get(pk=action.pk)
        assert (stored.status, stored.arguments) == ("approved", {**ARGUMENTS, "amount": amount})
    page.context.close()
