"""An incident owner stops an agent from the incidents page in a real Chromium; a reviewer's
open queue shows the card cancelled live, and the gate denies the agent's next call."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_dashboard_browser import agent, open_queue  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser]


def test_browser__incident_owner_stops_agent__queue_shows_cancelled__gate_denies(
    open_queue,  # noqa: F811
    agent,  # noqa: F811
    reviewer,
    incident_owner,
    artifacts,
):
    pending = agent.submit({"tool": "send_email", "arguments": {"to": "dana@example.com"}})
    rita = open_queue(reviewer)
    expect(rita.card(pending["id"])).to_have_attribute("data-status", "pending")

    # An incident owner lands on the incident console
    ivan = open_queue(incident_owner, lands_on="/incidents")
    form = ivan.page.locator("form.kill-form[data-agent='support-assistant']")
    form.get_by_label("Reason").fill("refund loop at 03:12")
    form.get_by_label("to confirm").fill("support-assistant")
    form.get_by_role("button", name="Stop support-assistant").click()
    expect(ivan.page.locator(".messages")).to_contain_text("1 pending cancelled")
    expect(ivan.page.locator("tr.switch-engaged")).to_contain_text("refund loop at 03:12")
    ivan.page.screenshot(path=str(artifacts / "incidents.png"), full_page=True)

    # The reviewer's open queue hears it without a reload
    expect(rita.card(pending["id"])).to_have_attribute("data-status", "cancelled")
    # And the gate denies the agent's next call
    denied = agent.submit({"tool": "get_order_status", "arguments": {"order_id": "ORD-1"}})
    assert (denied["status"], denied["reason_code"]) == ("denied", "kill_switch")
