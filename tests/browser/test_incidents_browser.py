"""An incident owner stops an agent from the incidents page in a real Chromium; a reviewer's
open queue shows the card cancelled live, and the gate denies the agent's next call."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from tests import servers
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
    expect(ivan.page.locator("li.switch-engaged")).to_contain_text("refund loop at 03:12")
    ivan.page.screenshot(path=str(artifacts / "incidents.png"), full_page=True)

    # The reviewer's open queue hears it without a reload
    expect(rita.card(pending["id"])).to_have_attribute("data-status", "cancelled")
    # And the gate denies the agent's next call
    denied = agent.submit({"tool": "get_order_status", "arguments": {"order_id": "ORD-1"}})
    assert (denied["status"], denied["reason_code"]) == ("denied", "kill_switch")


def _kill_from_another_process(*args: str) -> str:
    """``manage.py kill …`` in its own process, on the test database and the shared Redis."""
    result = subprocess.run(
        [sys.executable, "manage.py", "kill", *args],
        cwd=servers.ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": servers.test_database_url(),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _fits_without_horizontal_scroll(page) -> bool:
    return page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


def test_browser__console_open_at_1280_and_390__switch_from_another_process_appears_live(
    open_queue,  # noqa: F811
    agent,  # noqa: F811
    incident_owner,
):
    agent.submit({"tool": "send_email", "arguments": {"to": "dana@example.com"}})
    # The incident owner has the console open on a laptop and on a phone
    consoles = [
        open_queue(incident_owner, lands_on="/incidents", width=width) for width in (1280, 390)
    ]
    for console in consoles:
        page = console.page
        expect(page.locator("[data-live-status]")).to_have_text("live")
        expect(page.locator("#incident-live[data-live-synced]")).to_have_count(1)
        expect(page.locator("#incident-live")).to_contain_text("Nothing is stopped.")
        expect(page.locator(".health[data-agent='support-assistant']")).to_contain_text(
            "1 call and 0 denials in the last minute"
        )
        page.evaluate("window.airlockNotReloaded = true")
        assert _fits_without_horizontal_scroll(page)

    # When someone stops the agent from a terminal: another process, another connection
    out = _kill_from_another_process(
        "agent", "support-assistant", "--reason", "refund loop from the CLI", "--as", "ops"
    )
    assert "1 pending cancelled" in out

    # Then both consoles show it without a reload, with what it stopped and what a release
    # would resume; the stop button says it is already stopped
    for console in consoles:
        page = console.page
        switch = page.locator("li.switch-engaged")
        expect(switch).to_contain_text("refund loop from the CLI")
        expect(switch).to_contain_text("1 pending cancelled")
        expect(switch).to_contain_text("Gate calls of support-assistant run again.")
        expect(page.locator(".health[data-agent='support-assistant']")).to_contain_text("stopped")
        assert page.evaluate("window.airlockNotReloaded === true")
        assert _fits_without_horizontal_scroll(page)

    # A reload shows the stop button disabled, saying who stopped it
    laptop = consoles[0].page
    laptop.reload()
    form = laptop.locator("form.kill-form[data-agent='support-assistant']")
    expect(form.get_by_role("button", name="Stop support-assistant")).to_be_disabled()
    expect(form).to_contain_text("Already stopped by system:cli:ops")


def test_browser__unknown_tool_and_wrong_confirmation__typed_values_kept(
    open_queue,  # noqa: F811
    agent,  # noqa: F811
    incident_owner,
):
    ivan = open_queue(incident_owner, lands_on="/incidents", width=390)
    page = ivan.page
    # A misspelt tool is not "stopped" silently: the page asks for its own confirmation
    tool_form = page.locator("form.kill-form", has=page.get_by_label("Tool", exact=True))
    anyway = tool_form.get_by_label("anyway: I mean a tool no agent's rule names yet")
    expect(anyway).to_be_hidden()
    tool_form.get_by_label("Tool", exact=True).fill("send_emial")
    tool_form.get_by_label("Reason").fill("mail storm")
    expect(anyway).to_be_visible()
    assert _fits_without_horizontal_scroll(page)
    # The correct name, one of the known tools, needs no such confirmation and engages it
    tool_form.get_by_label("Tool", exact=True).fill("send_email")
    expect(anyway).to_be_hidden()
    tool_form.get_by_role("button", name="Stop this tool").click()
    expect(page.locator(".messages")).to_contain_text("Kill switch engaged on tool:send_email")

    # A wrong confirmation keeps the reason, with the error next to the field
    form = page.locator("form.kill-form[data-agent='support-assistant']")
    form.get_by_label("Reason").fill("refund loop at 03:12")
    form.get_by_label("to confirm").fill("support")
    form.get_by_role("button", name="Stop support-assistant").click()
    form = page.locator("form.kill-form[data-agent='support-assistant']")
    expect(form.locator(".field-error")).to_contain_text("to confirm; nothing was engaged")
    expect(form.get_by_label("Reason")).to_have_value("refund loop at 03:12")
