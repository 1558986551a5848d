"""A governance owner, from login, in one browser context: walks the agent page's sections,
previews a loosening rule change (readable line, "loosening", the delta against today's
policy), proposes it and lands on the change request; then opens old policy versions from
the agent's history and reverts to them (a mixed revert with its tightening parts applied
now, a version with nothing to revert, a loosening revert proposed), and sets
per-environment overrides (a stricter production tier at once, a sandbox-only tool as a
change request); on a laptop and on a phone, without horizontal scrolling."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from governance import actions as governance_actions
from governance.models import ChangeRequest
from rollout.models import Agent, EnvironmentOverride
from tests import factories
from tests.browser.test_reviewer_journey_browser import no_horizontal_scroll

pytestmark = [pytest.mark.browser]

SECTIONS = ["Overview", "Policy", "Access", "Tokens", "Metrics", "History"]


def test_governance_owner__previews_then_proposes_a_loosening__then_reverts__laptop_and_phone(
    browser, dashboard_server, transactional_db, support_agent, artifacts
):
    gwen = factories.make_user("gwen", groups=("governance_owner",))
    big = factories.submit(support_agent, "create_refund_request", {"amount": 15000})
    context = browser.new_context(
        base_url=dashboard_server.url, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    expect.set_options(timeout=15_000)
    page.goto("/accounts/login/")
    page.fill("#id_username", "gwen")
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/changes$"))  # a governance owner's home

    changes = [
        (
            "create_refund_request",
            "argument_limits",
            "amount <= 20000",
            "limit amount ≤ 10,000 → ≤ 20,000",
        ),
        ("send_email", "rule", "allowed", "rule requires_approval → allowed"),
    ]
    for width, (tool, field, value, line) in zip((1280, 390), changes, strict=True):
        page.set_viewport_size({"width": width, "height": 900})
        # Every section of the agent page has its own URL and tab, and fits the screen
        page.goto("/agents/support-assistant")
        for label in SECTIONS:
            page.get_by_role("navigation", name="Sections of support-assistant").get_by_role(
                "link", name=label
            ).click()
            expect(page.locator(".agent-tabs [aria-current=page]")).to_have_text(label)
            assert no_horizontal_scroll(page), f"{label} at {width} px"

        # The policy section: the readable rules table, then change one rule
        page.goto("/agents/support-assistant/policy")
        expect(page.locator("tr[data-tool=create_refund_request]")).to_contain_text(
            "amount ≤ 10,000"
        )
        page.click(f"tr[data-tool={tool}] a:text('Change')")
        if field == "rule":
            page.select_option("#id_rule", value)
        else:
            page.fill(f"#id_{field}", value)
        page.fill("#id_reason", f"more room for {tool}")
        page.get_by_role("button", name="Preview").click()

        # The preview: the readable line, a loosening, the delta; nothing written yet
        expect(page.locator("h1")).to_have_text("Preview a change to support-assistant")
        expect(page.locator("[data-testid=change-lines]").first).to_contain_text(
            f"loosens {tool}: {line}"
        )
        expect(page.locator("[data-testid=preview-classification]")).to_contain_text("Loosening")
        if tool == "create_refund_request":
            expect(page.locator("[data-testid=delta-denied]")).to_have_text("1 fewer")
            expect(page.locator(f"a[href='/actions/{big.pk}']")).to_be_visible()
        assert not ChangeRequest.objects.filter(after__tools__has_key=tool).exists()
        assert no_horizontal_scroll(page), f"preview at {width} px"

        # Propose: the same values, now a change request for another owner
        page.get_by_role("button", name="Propose for approval").click()
        page.wait_for_url(re.compile(r"/changes/\d+$"))
        expect(page.locator(".policy-diff")).to_contain_text(f"{tool}: {line}")
        expect(page.locator("[data-testid=change-status]")).to_have_text("open")
        assert no_horizontal_scroll(page), f"change request at {width} px"
        cr = ChangeRequest.objects.get(after__tools__has_key=tool)
        assert cr.reason == f"more room for {tool}" and cr.author == gwen

    # Reverting, in the same session: version 2 demoted the agent (at once), version 3 added
    # a tool (approved by a second owner)
    gus = factories.make_user("gus", groups=("governance_owner",))
    governance_actions.propose_change(
        agent=support_agent, user=gwen, changes={"tier": "read_only"}, reason="demote"
    )
    added = governance_actions.propose_change(
        agent=support_agent,
        user=gwen,
        changes={"tools": {"post_tweet": {"effect": "read", "rule": "allowed"}}},
        reason="tweets",
    ).change_request
    governance_actions.approve_change_request(change_request_id=added.pk, user=gus)

    # Laptop: version 1 from the history; its revert is mixed (promote back, drop post_tweet)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/agents/support-assistant/history")
    page.get_by_role("link", name="v1", exact=True).click()
    page.wait_for_url(re.compile(r"/versions/1$"))
    expect(page.locator("#revert-form #id_reason")).to_have_value("Revert to version 1")
    page.screenshot(path=str(artifacts / "revert-version-1280.png"), full_page=True)
    page.get_by_role("button", name="Preview the revert").click()
    expect(page.locator("h1")).to_have_text("Preview reverting support-assistant to version 1")
    expect(page.locator("[data-testid=preview-classification]")).to_have_attribute(
        "data-classification", "mixed"
    )
    expect(page.locator("[data-testid=change-lines]").first).to_contain_text("post_tweet")
    assert no_horizontal_scroll(page), "revert preview at 1280 px"
    page.screenshot(path=str(artifacts / "revert-preview-1280.png"), full_page=True)
    page.get_by_role("button", name="Apply the tightening parts now, propose the rest").click()
    page.wait_for_url(re.compile(r"/changes/\d+$"))
    expect(page.locator("[data-testid=change-status]")).to_have_text("open")
    expect(page.get_by_text("The tightening parts applied at once")).to_be_visible()
    agent = Agent.objects.get(slug="support-assistant")
    assert (
        agent.current_policy.number == 4
        and "post_tweet" not in agent.current_policy.snapshot["tools"]
    )
    revert_request = ChangeRequest.objects.get(reason="Revert to version 1")
    assert set(revert_request.after) == {"tier"} and revert_request.author == gwen

    # Phone: version 2 matches the live policy now (read_only, no post_tweet): nothing to
    # revert; version 3 brings post_tweet back, a loosening for another owner
    page.set_viewport_size({"width": 390, "height": 900})
    page.goto("/agents/support-assistant/history")
    page.get_by_role("link", name="v2", exact=True).click()
    expect(page.locator("[data-testid=nothing-to-revert]")).to_be_visible()
    expect(page.locator("#revert-form")).to_have_count(0)
    page.screenshot(path=str(artifacts / "revert-nothing-390.png"), full_page=True)
    page.goto("/agents/support-assistant/history")
    page.get_by_role("link", name="v3", exact=True).click()
    page.fill("#revert-form #id_reason", "tweets were fine")
    assert no_horizontal_scroll(page), "version page at 390 px"
    page.get_by_role("button", name="Preview the revert").click()
    expect(page.locator("[data-testid=preview-classification]")).to_contain_text("Loosening")
    assert no_horizontal_scroll(page), "revert preview at 390 px"
    page.screenshot(path=str(artifacts / "revert-preview-390.png"), full_page=True)
    page.get_by_role("button", name="Propose for approval").click()
    page.wait_for_url(re.compile(r"/changes/\d+$"))
    expect(page.locator(".policy-diff")).to_contain_text("post_tweet")
    assert ChangeRequest.objects.get(reason="tweets were fine").status == "open"
    page.screenshot(path=str(artifacts / "revert-request-390.png"), full_page=True)
    context.close()


def test_governance_owner__keeps_a_case_from_a_trace__sees_it_flagged_on_a_loosening_preview(
    browser, dashboard_server, transactional_db, reference_data, artifacts
):
    # Given an autonomous agent's email that waited for people, and a governor who audits
    agent = factories.make_agent("mail-agent", tier="autonomous")
    gina = factories.make_user("gina", groups=("governance_owner", "auditor"))
    email = factories.submit(agent, "send_email", {"to": "a@example.com", "api_key": "sk-9"})
    context = browser.new_context(
        base_url=dashboard_server.url, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    expect.set_options(timeout=15_000)
    page.goto("/accounts/login/")
    page.fill("#id_username", "gina")
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.wait_for_load_state()

    # When she keeps it from its trace, expecting it to wait for a human
    page.goto(f"/audit/actions/{email.pk}")
    page.get_by_text(f"Keep #{email.pk} as a regression case").click()
    page.screenshot(path=str(artifacts / "case-keep-trace-1280.png"), full_page=True)
    page.get_by_label("The gate should").select_option("pending")
    page.get_by_label("Note (optional)").fill("mail must wait for people")
    page.get_by_role("button", name="Keep as a case").click()
    # Then the agent's cases list it, masked, answered as expected today
    page.wait_for_url(re.compile(r"/agents/mail-agent/cases#case-\d+$"))
    row = page.locator("[data-testid=case-table] tbody tr").first
    expect(row).to_contain_text("waits for a human")
    expect(row).to_contain_text("[redacted]")
    expect(row).to_have_attribute("data-differs", "false")
    page.screenshot(path=str(artifacts / "cases-list-1280.png"), full_page=True)

    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        # When a loosening that lets send_email run on its own is previewed
        page.goto("/agents/mail-agent/rules/edit/send_email")
        page.select_option("#id_rule", "allowed")
        page.select_option("#id_base_risk", "low")
        page.fill("#id_reason", "trust mail")
        page.get_by_role("button", name="Preview").click()
        # Then the kept case is listed as one it would flip, against expectation
        flips = page.locator("[data-testid=case-flip-table] tbody tr")
        expect(flips).to_have_count(1)
        expect(flips.first).to_have_attribute("data-differs", "true")
        expect(flips.first).to_contain_text("not as expected")
        assert no_horizontal_scroll(page), f"preview at {width} px"
        page.locator("[data-testid=case-flips]").screenshot(
            path=str(artifacts / f"case-flips-{width}.png")
        )
    # And on a phone the cases page and the trace fit the screen; the trace now says the
    # action is kept (with a link to it) instead of offering to keep it again
    for path in ("/agents/mail-agent/cases", f"/audit/actions/{email.pk}"):
        page.goto(path)
        assert no_horizontal_scroll(page), f"{path} at 390 px"
        page.screenshot(path=str(artifacts / f"case-page-390-{path.split('/')[-1]}.png"))
    expect(page.get_by_test_id("kept-case")).to_contain_text("regression case #")
    expect(page.get_by_text(f"Keep #{email.pk} as a regression case")).to_have_count(0)
    page.get_by_test_id("kept-case").get_by_role("link").click()
    page.wait_for_url(re.compile(r"/agents/mail-agent/cases"))
    page.screenshot(path=str(artifacts / "case-kept-link-390.png"), full_page=True)

    # Per-environment overrides, same session. Laptop: production gets a stricter tier —
    # previewed (nothing written), then applied at once as a tightening.
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/agents/mail-agent/policy")
    expect(page.locator("[data-testid=no-overrides]")).to_be_visible()
    tier_form = page.locator("#environment-tier-form")
    tier_form.get_by_label("Environment").select_option("production")
    tier_form.get_by_label("Tier there").select_option("supervised")
    tier_form.get_by_label("Reason").fill("production waits for people")
    tier_form.get_by_role("button", name="Preview").click()
    expect(page.locator("[data-testid=change-lines]").first).to_contain_text(
        "production: demote autonomous → supervised"
    )
    expect(page.locator("[data-testid=preview-classification]")).to_contain_text("Tightening")
    assert not EnvironmentOverride.objects.exists()
    page.screenshot(path=str(artifacts / "environment-tier-preview-1280.png"), full_page=True)
    page.get_by_role("button", name="Apply now").click()
    page.wait_for_url(re.compile(r"/agents/mail-agent/policy$"))
    section = page.locator("#environments")
    expect(section.locator("[data-environment=production]")).to_contain_text("supervised")
    assert no_horizontal_scroll(page), "overrides at 1280 px"
    section.screenshot(path=str(artifacts / "environment-overrides-1280.png"))

    # Phone: a tool allowed only in sandbox, from the rule form with an environment — a
    # loosening, so a change request for another owner.
    page.set_viewport_size({"width": 390, "height": 900})
    page.goto("/agents/mail-agent/policy")
    assert no_horizontal_scroll(page), "overrides at 390 px"
    page.get_by_role("link", name="Set a tool's rule for an environment").click()
    page.get_by_label("Environment").select_option("sandbox")
    page.get_by_label("Tool").fill("reset_fixtures")
    page.select_option("#id_effect", "write")
    page.select_option("#id_rule", "allowed")
    page.fill("#id_reason", "only in sandbox")
    assert no_horizontal_scroll(page), "environment rule form at 390 px"
    page.screenshot(path=str(artifacts / "environment-rule-form-390.png"), full_page=True)
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("[data-testid=change-lines]").first).to_contain_text(
        "sandbox: add reset_fixtures"
    )
    expect(page.locator("[data-testid=preview-classification]")).to_contain_text("Loosening")
    assert no_horizontal_scroll(page), "environment rule preview at 390 px"
    page.get_by_role("button", name="Propose for approval").click()
    page.wait_for_url(re.compile(r"/changes/\d+$"))
    expect(page.locator(".policy-diff")).to_contain_text("sandbox: add reset_fixtures")
    page.screenshot(path=str(artifacts / "environment-rule-request-390.png"), full_page=True)
    assert ChangeRequest.objects.get(reason="only in sandbox").status == "open"
    # With a tool's rule overridden in production too, the overrides fit the phone screen and
    # the agent's own rule says where it differs.
    governance_actions.propose_change(
        agent=agent,
        user=gina,
        changes={"environments": {"production": {"tools": {"send_email": {"rule": "forbidden"}}}}},
        reason="no production mail",
    )
    page.goto("/agents/mail-agent/policy")
    expect(page.locator("tr[data-tool=send_email] [data-testid=overridden-in]")).to_have_text(
        "differs in production"
    )
    expect(page.locator("#environments tr[data-tool=send_email]")).to_contain_text("forbidden")
    assert no_horizontal_scroll(page), "overrides with a tool at 390 px"
    page.locator("#environments").screenshot(path=str(artifacts / "environment-overrides-390.png"))
    context.close()
