"""Environments in a real Chromium, from login, on a laptop (1280 px) and a phone (390 px):
a governance owner issues a staging-bound token, which then cannot act in production; an
incident owner stops an agent in production only, and its staging work keeps running."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import expect

from approvals.models import Action
from tests import factories
from tests.browser.test_dashboard_browser import open_queue  # noqa: F401 - fixture
from tests.browser.test_reviewer_journey_browser import no_horizontal_scroll

pytestmark = [pytest.mark.browser]


def _submit(server, token: str, body: dict) -> dict:
    with httpx.Client(base_url=server.url, timeout=60) as api:
        response = api.post(
            "/api/v1/actions",
            json=body,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
        )
    assert response.status_code == 201, response.text
    return response.json()


def test_governance_owner_issues_a_staging_token__it_cannot_act_in_production(
    open_queue,  # noqa: F811
    dashboard_server,
    transactional_db,
    support_agent,
    artifacts,
):
    gwen = factories.make_user("gwen", groups=("governance_owner",))
    for width in (1280, 390):
        page = open_queue(gwen, width=width, lands_on="/changes").page
        page.goto("/agents/support-assistant/tokens")
        form = page.locator("form", has=page.get_by_role("button", name="Create a token"))
        form.get_by_label("Name").fill(f"ci-{width}")
        form.get_by_label("Environment").select_option("staging")
        assert no_horizontal_scroll(page), f"tokens form at {width} px"
        form.get_by_role("button", name="Create a token").click()

        expect(page.locator("[data-testid=new-token-environment]")).to_contain_text(
            "Bound to staging"
        )
        token = page.locator("[data-testid=new-token]").inner_text().strip()
        assert no_horizontal_scroll(page), f"new token at {width} px"
        page.screenshot(path=str(artifacts / f"environment-token-{width}.png"), full_page=True)

        # The token list says where each token acts
        page.goto("/agents/support-assistant/tokens")
        row = page.locator("tr", has_text=f"ci-{width}")
        expect(row).to_contain_text("staging")
        assert no_horizontal_scroll(page), f"token list at {width} px"
        page.screenshot(path=str(artifacts / f"environment-token-list-{width}.png"), full_page=True)

        # The agent holding it acts in staging, never in production
        denied = _submit(
            dashboard_server,
            token,
            {
                "tool": "get_order_status",
                "arguments": {"order_id": "ORD-1"},
                "blast_radius": {"environment": "production"},
            },
        )
        assert (denied["status"], denied["reason_code"]) == ("denied", "environment_mismatch")
        allowed = _submit(
            dashboard_server, token, {"tool": "get_order_status", "arguments": {"order_id": "1"}}
        )
        assert (allowed["status"], allowed["environment"]) == ("allowed", "staging")


def test_incident_owner_stops_production_only__staging_keeps_running(
    open_queue,  # noqa: F811
    dashboard_server,
    transactional_db,
    support_agent,
    incident_owner,
    artifacts,
):
    production = factories.make_token(support_agent, environment="production")
    staging = factories.make_token(support_agent, environment="staging")
    email = {"tool": "send_email", "arguments": {"to": "dana@example.com"}}
    in_production = _submit(dashboard_server, production, email)
    in_staging = _submit(dashboard_server, staging, email)

    laptop = open_queue(incident_owner, lands_on="/incidents", width=1280).page
    form = laptop.locator("form.kill-form[data-agent='support-assistant']")
    form.get_by_label("Reason").fill("bad deploy in production")
    form.get_by_label("Environment").select_option("production")
    form.get_by_label("to confirm").fill("support-assistant")
    form.get_by_role("button", name="Stop support-assistant").click()
    expect(laptop.locator(".messages")).to_contain_text(
        "Kill switch engaged on agent:support-assistant in production: 1 pending cancelled"
    )
    switch = laptop.locator("li.switch-engaged")
    expect(switch).to_contain_text("production only")
    expect(switch).to_contain_text("Gate calls of support-assistant in production run again.")
    # Stopped in production only: another environment's switch may still be engaged
    form = laptop.locator("form.kill-form[data-agent='support-assistant']")
    expect(form.get_by_role("button", name="Stop support-assistant")).to_be_enabled()
    assert no_horizontal_scroll(laptop)
    laptop.screenshot(path=str(artifacts / "environment-switch-1280.png"), full_page=True)

    phone = open_queue(incident_owner, lands_on="/incidents", width=390).page
    expect(phone.locator("li.switch-engaged")).to_contain_text("production only")
    assert no_horizontal_scroll(phone)
    phone.screenshot(path=str(artifacts / "environment-switch-390.png"), full_page=True)

    statuses = dict(Action.objects.values_list("id", "status"))
    assert statuses[in_production["id"]] == "cancelled"
    assert statuses[in_staging["id"]] == "pending"
    read = {"tool": "get_order_status", "arguments": {"order_id": "ORD-1"}}
    assert _submit(dashboard_server, production, read)["reason_code"] == "kill_switch"
    assert _submit(dashboard_server, staging, read)["status"] == "allowed"
