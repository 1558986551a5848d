"""Desktop notifications on the queue, in a real Chromium: the reviewer turns them on (the
browser is asked only on that click), chooses the lowest risk that notifies (kept on the
server), and while the tab is in the background a new card at or above it notifies with
plain text; clicking the notification focuses the card. At 1280 px and at 390 px."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from playwright.sync_api import Browser, expect

from accounts.models import DesktopNotificationChoice
from tests import factories
from tests.browser.test_dashboard_browser import in_thread

pytestmark = [pytest.mark.browser]

TIMEOUT_MS = 20_000  # generous: the machine may be busy

# Records what the page's own code does with the Notification API, without changing it:
# the real constructor and permission run underneath. The tab's visibility is under the
# test's control (a headless page is always "visible").
INIT_SCRIPT = """
(() => {
  const Real = window.Notification;
  window.__notifications = [];
  window.__permissionRequests = 0;
  class Recorded extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notifications.push({ title, body: options && options.body, object: this });
    }
    static requestPermission(...args) {
      window.__permissionRequests += 1;
      return Real.requestPermission(...args);
    }
  }
  window.Notification = Recorded;
  let hidden = false;
  Object.defineProperty(document, "visibilityState", { get: () => (hidden ? "hidden" : "visible") });
  Object.defineProperty(document, "hidden", { get: () => hidden });
  window.__setHidden = (value) => {
    hidden = value;
    document.dispatchEvent(new Event("visibilitychange"));
  };
})();
"""

RULES = [
    factories.rule("update_crm_note", "write", "requires_approval", "low"),
    factories.rule("send_email", "write", "requires_approval", "high"),
]


def notifications(page) -> list[dict]:
    return page.evaluate("window.__notifications.map(n => ({title: n.title, body: n.body}))")


def test_browser__desktop_notifications__opt_in_threshold_background_only_click_focuses(
    browser: Browser, dashboard_server, transactional_db, reference_data, reviewer, artifacts
):
    expect.set_options(timeout=TIMEOUT_MS)
    # (In another thread: Playwright's event loop runs in this one, where the write path's
    # on-commit publishing cannot.)
    agent = in_thread(factories.make_agent, "mailer", rules=RULES)
    token = in_thread(factories.make_token, agent)
    api = httpx.Client(base_url=dashboard_server.url, timeout=60)

    def submit(tool: str, summary: str) -> int:
        response = api.post(
            "/api/v1/actions",
            json={"tool": tool, "arguments": {"to": "dana@example.com"}, "summary": summary},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
        )
        assert response.status_code == 201 and response.json()["status"] == "pending"
        return response.json()["id"]

    context = browser.new_context(
        base_url=dashboard_server.url, viewport={"width": 1280, "height": 900}
    )
    try:
        context.add_init_script(INIT_SCRIPT)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        # Given a reviewer on the queue, live
        page.goto("/accounts/login/")
        page.fill("#id_username", reviewer.username)
        page.fill("#id_password", "pw-for-tests")
        page.click("button[type=submit]")
        page.wait_for_url(dashboard_server.url + "/")
        expect(page.locator("[data-live-status]")).to_have_text("live")
        toggle = page.locator("[data-notify-toggle]")
        # Then notifications are offered, off, and the browser was not asked on load
        expect(toggle).to_have_text("Turn on desktop notifications")
        expect(page.locator("[data-notify-form]")).to_be_hidden()
        assert page.evaluate("window.__permissionRequests") == 0

        # When they turn them on: the browser is asked (headless Chromium says no)
        toggle.click()
        status = page.locator("[data-notify-status]")
        expect(status).to_contain_text("This browser blocks notifications from Airlock")
        assert page.evaluate("window.__permissionRequests") == 1
        expect(toggle).to_have_text("Turn on desktop notifications")
        # and once the browser allows Airlock, turning them on works
        context.grant_permissions(["notifications"], origin=dashboard_server.url)
        toggle.click()
        expect(toggle).to_have_text("Turn off desktop notifications")
        expect(toggle).to_have_attribute("aria-pressed", "true")
        # and they choose high risk and above
        page.select_option("#notify-min-risk", "high")
        expect(status).to_contain_text("new cards of high risk and above notify you")
        assert DesktopNotificationChoice.objects.get(user=reviewer).min_risk == "high"
        page.screenshot(path=artifacts / "queue-notifications-1280.png")

        # When a high card arrives while the tab is in front: no notification
        in_front = submit("send_email", "Email while the tab is in front")
        expect(page.locator(f"#card-{in_front}")).to_be_visible()
        # and, with the tab in the background, a low card, then a high one
        page.evaluate("window.__setHidden(true)")
        low = submit("update_crm_note", "Note a low-risk detail")
        expect(page.locator(f"#card-{low}")).to_be_visible()
        hostile = 'Refund <img src=x onerror="alert(1)"> & <b>apologise</b>'
        high = submit("send_email", hostile)
        expect(page.locator(f"#card-{high}")).to_be_visible()
        page.wait_for_function("window.__notifications.length > 0", polling=100)
        # Then only the high card notified, with agent, tool, risk and summary as plain text
        assert notifications(page) == [
            {"title": f"high risk · send_email #{high}", "body": f"Mailer: {hostile}"}
        ]

        # When the reviewer clicks the notification: the window comes forward on that card
        page.evaluate("window.__setHidden(false)")
        page.evaluate("window.__notifications[0].object.dispatchEvent(new Event('click'))")
        expect(page.locator(f"#card-{high}")).to_be_focused()
        expect(page.locator(f"#card-{high}")).to_have_class(re.compile("is-selected"))

        # The threshold follows the person: after a reload it is still high
        page.reload()
        expect(page.locator("#notify-min-risk")).to_have_value("high")
        expect(toggle).to_have_text("Turn off desktop notifications")

        # On a phone, the button and the setting fit the screen
        page.set_viewport_size({"width": 390, "height": 844})
        expect(toggle).to_be_visible()
        expect(page.locator("#notify-min-risk")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        for selector in ("[data-notify-toggle]", "#notify-min-risk", "[data-notify-save]"):
            box = page.locator(selector).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=artifacts / "queue-notifications-390.png")

        # When they turn them off, nothing notifies any more
        toggle.click()
        expect(toggle).to_have_text("Turn on desktop notifications")
        page.evaluate("window.__setHidden(true)")
        later = submit("send_email", "Another high one")
        expect(page.locator(f"#card-{later}")).to_be_visible()
        assert notifications(page) == []  # (a fresh page since the reload)
    finally:
        context.close()
        api.close()
