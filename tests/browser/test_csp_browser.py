"""The Content-Security-Policy the server sends (no inline script or style, nothing from
elsewhere) in a real Chromium: the API docs render every operation, and the reviewer's
queue goes live over its websocket, with no violation reported on the way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

pytestmark = [pytest.mark.browser]

TIMEOUT_MS = 15_000  # generous: the machine may be busy


@pytest.fixture
def context(browser: Browser, dashboard_server) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=dashboard_server.url)
    yield context
    context.close()


def watch_csp(page: Page) -> list[str]:
    """What the browser refused, as it reports it in the console."""
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return violations


def test_api_docs__under_served_csp__render_every_operation__no_violation(
    context: BrowserContext, transactional_db: None
) -> None:
    # Given the docs page, loaded as the server serves it
    page = context.new_page()
    violations = watch_csp(page)
    response = page.goto("/api/docs/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    # Then Swagger UI renders the schema's operations (its start-up script ran)
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/actions").first).to_be_visible()
    assert operations.count() >= 30
    # and an operation opens (the UI's own code runs, styled from /static/)
    page.locator(".opblock-summary", has_text="/api/v1/kill-switches").first.click()
    expect(page.locator(".opblock-body").first).to_be_visible(timeout=TIMEOUT_MS)
    # with nothing refused by the policy
    assert violations == []


def test_queue__under_served_csp__goes_live_over_websocket__no_violation(
    context: BrowserContext, transactional_db: None, reviewer
) -> None:
    page = context.new_page()
    violations = watch_csp(page)
    page.goto("/accounts/login/")
    page.fill("#id_username", reviewer.username)
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    # 'self' covers the same-origin websocket: the queue's socket connects
    expect(page.locator("[data-live-status]")).to_have_text("live", timeout=TIMEOUT_MS)
    # and the policy is really enforced: an injected inline script does not run
    inline_ran = page.evaluate(
        """() => { const s = document.createElement("script");
                   s.textContent = "window.inlineRan = true;";
                   document.head.appendChild(s); return window.inlineRan === true; }"""
    )
    assert not inline_ran
    assert [v for v in violations if "inline" not in v or "script-src" not in v] == []
    assert len(violations) == 1  # the one inline script injected above, refused
