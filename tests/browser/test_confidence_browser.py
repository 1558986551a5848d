"""Confidence routing in Chromium. Gwen, a governance owner, from login in one browser
context: on her laptop (1280 px) she sets a minimum confidence on a tool rule (the preview
says it tightens, it applies at once, the rules table shows it); on her phone (390 px) she
raises it the same way, without sideways scrolling. The agent's unsure call then waits,
and Rita, a reviewer, sees why on its card (``low_confidence``, both numbers) at both
widths; Gwen's readiness line counts it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from rollout.models import ToolRule
from tests import factories
from tests.browser.test_reviewer_journey_browser import no_horizontal_scroll

pytestmark = [pytest.mark.browser]

TIMEOUT_MS = 15_000  # generous: the machine may be busy
TOOL = "get_order_status"


def log_in(browser: Browser, base_url: str, username: str, home: str) -> Page:
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(home))
    return page


def set_minimum(page: Page, value: str, line: str) -> None:
    page.goto("/agents/support-assistant/policy")
    page.click(f"tr[data-tool={TOOL}] a:text('Change')")
    page.get_by_label("Minimum confidence").fill(value)
    page.fill("#id_reason", "unsure answers go to a person")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("[data-testid=change-lines]").first).to_contain_text(line)
    expect(page.locator("[data-testid=preview-classification]")).to_contain_text("Tightening")
    page.get_by_role("button", name="Apply now").click()
    page.wait_for_url(re.compile(r"/agents/support-assistant"))


def test_browser__owner_sets_min_confidence__reviewer_sees_low_confidence_on_the_card(
    browser, dashboard_server, transactional_db, support_agent, reviewer, artifacts
):
    expect.set_options(timeout=TIMEOUT_MS)
    factories.make_user("gwen", groups=("governance_owner",))
    gwen = log_in(browser, dashboard_server.url, "gwen", r"/changes$")

    # On her laptop: add a minimum of 0.7; it applies at once and the rules table shows it
    set_minimum(gwen, "0.7", f"{TOOL}: add minimum confidence 0.7")
    gwen.goto("/agents/support-assistant/policy")
    cell = gwen.locator(f"tr[data-tool={TOOL}] [data-testid=min-confidence]")
    expect(cell).to_have_text("0.7")
    gwen.screenshot(path=str(artifacts / "confidence-1280-rules.png"), full_page=True)

    # On her phone: raise it to 0.8, the same way, nothing off the screen
    gwen.set_viewport_size({"width": 390, "height": 900})
    gwen.goto(f"/agents/support-assistant/rules/edit/{TOOL}")
    assert no_horizontal_scroll(gwen), "rule form at 390 px"
    gwen.screenshot(path=str(artifacts / "confidence-390-rule-form.png"), full_page=True)
    set_minimum(gwen, "0.8", f"{TOOL}: raise minimum confidence 0.7 → 0.8")
    gwen.goto("/agents/support-assistant/policy")
    expect(cell).to_have_text("0.8")
    assert no_horizontal_scroll(gwen), "policy section at 390 px"
    assert ToolRule.objects.get(agent=support_agent, tool=TOOL).min_confidence == 0.8

    # The agent asks with confidence 0.55: the call waits for a person
    action = factories.submit(
        support_agent, TOOL, {"order_id": "ORD-7"}, rationale={"confidence": 0.55}
    )
    assert (action.status, action.reason_code) == ("pending", "low_confidence")

    # Rita sees why on its card, on a laptop and on a phone
    rita = log_in(browser, dashboard_server.url, reviewer.username, r"/$")
    for width in (1280, 390):
        rita.set_viewport_size({"width": width, "height": 900})
        rita.goto(f"/actions/{action.pk}")
        gate = rita.locator(f"#card-{action.pk} .card-gate")
        expect(gate).to_contain_text("low_confidence")
        expect(gate).to_contain_text(
            f"confidence 0.55 is below {TOOL}'s minimum 0.8 to run without a person"
        )
        assert no_horizontal_scroll(rita), f"card at {width} px"
        rita.screenshot(path=str(artifacts / f"confidence-{width}-card.png"), full_page=True)
    rita.context.close()

    # Gwen's readiness line counts the escalation
    gwen.goto("/agents/support-assistant")
    expect(gwen.locator("[data-testid=low-confidence]")).to_contain_text(
        "Low-confidence escalations: 1"
    )
    assert no_horizontal_scroll(gwen), "overview at 390 px"
    gwen.screenshot(path=str(artifacts / "confidence-390-readiness.png"), full_page=True)
    gwen.context.close()
