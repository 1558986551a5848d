"""Cross-origin websocket hijacking, in a real Chromium: a victim is logged into the
dashboard; a page served from another loopback port opens the queue's websocket on
Airlock's port, and the browser sends the victim's session cookie with it (cookies are not
bound to ports). The socket is refused (``core.websocket_origin``), so the page hears
nothing, while the victim's own dashboard in the same browser stays live."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests import factories
from tests.browser.test_dashboard_browser import LIVE_TIMEOUT_MS, in_thread

pytestmark = [pytest.mark.browser]

ATTACK_PAGE = """<!doctype html>
<title>cat pictures</title>
<script>
  window.log = [];
  var socket = new WebSocket("ws://127.0.0.1:%(port)d/ws/queue/");
  socket.onopen = function () { window.log.push("open"); };
  socket.onmessage = function (event) { window.log.push("message " + event.data); };
  socket.onclose = function () { window.log.push("close"); };
</script>
"""


@pytest.fixture
def attacker_site(dashboard_server) -> Iterator[str]:
    """Another site on the same loopback address, another port: one page that opens a
    websocket to Airlock."""
    page = (ATTACK_PAGE % {"port": dashboard_server.port}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_browser__page_on_another_port__queue_socket_refused_despite_victims_cookie(
    browser: Browser, dashboard_server, attacker_site, transactional_db, support_agent, reviewer
):
    context = browser.new_context(base_url=dashboard_server.url)
    try:
        # Given the victim logged into the dashboard, its own socket live
        dashboard = context.new_page()
        dashboard.set_default_timeout(LIVE_TIMEOUT_MS)
        dashboard.goto("/accounts/login/")
        dashboard.fill("#id_username", reviewer.username)
        dashboard.fill("#id_password", "pw-for-tests")
        dashboard.click("button[type=submit]")
        dashboard.wait_for_url(dashboard_server.url + "/")
        expect(dashboard.locator("[data-live-status]")).to_have_text("live")
        # When she opens a page of another site on another port of the same address
        attack = context.new_page()
        attack.set_default_timeout(LIVE_TIMEOUT_MS)
        attack.goto(attacker_site)
        # Then its websocket to Airlock is refused at the handshake
        attack.wait_for_function("window.log.includes('close')")
        # and an action submitted now reaches the victim's dashboard, not the other page
        action = in_thread(factories.submit, support_agent, "send_email")
        expect(dashboard.locator(f"#card-{action.pk}")).to_have_count(1)
        assert attack.evaluate("window.log") == ["close"]
    finally:
        context.close()
