"""The reviewer dashboard in a real Chromium: cards arrive live, decisions reach the agent,
other reviewers' pages follow, a dropped socket catches up, and agent text never runs."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from django.db import connection
from playwright.sync_api import Browser, Page, expect

from audit.chain import Actor
from incidents.actions import engage_kill_switch
from tests import factories

pytestmark = [pytest.mark.browser]

LIVE_TIMEOUT_MS = 10_000  # generous: the machine may be busy; speed is the benchmark's job

REFUND = {
    "tool": "create_refund_request",
    "arguments": {"order_id": "ORD-7711", "amount": 42.18, "currency": "EUR"},
    "summary": "Refund the late delivery of order ORD-7711 (42.18 EUR)",
    "rationale": {
        "objective": "Compensate a customer whose parcel arrived nine days late.",
        "plan": "Create a refund request for the shipping cost and the item.",
        "alternatives": ["Offer a voucher instead", "Escalate to a human agent"],
        "confidence": 0.82,
    },
    "evidence": [
        {
            "kind": "shipping_status",
            "title": "Carrier tracking",
            "content": "Delivered 9 days late",
        },
        {
            "kind": "policy",
            "title": "Refund policy §4",
            "url": "https://policies.example.com/refunds#4",
        },
    ],
    "blast_radius": {
        "environment": "production",
        "reversible": True,
        "amount": {"value": 42.18, "currency": "EUR"},
        "systems": ["payments"],
    },
    "release": {"model": "gpt-x-2026-05", "prompt_version": "support-v14"},
}


def in_thread(function, *args, **kwargs):
    """Call ``function`` in another thread: sync Playwright runs an event loop in this one,
    where the write path's on-commit broadcast (``async_to_sync``) cannot run."""
    result: list = []

    def work():
        try:
            result.append(function(*args, **kwargs))
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=30)
    return result[0]


# What the deployment's Content-Security-Policy will be at its strictest: no inline script,
# no eval, no inline style, nothing from elsewhere. The pages must work under it.
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def enforce_strict_csp(page: Page, violations: list[str]) -> None:
    """Serve every page loaded by GET with ``STRICT_CSP``; record what the browser refuses."""

    def add_policy(route):
        request = route.request
        if request.resource_type != "document" or request.method != "GET":
            route.continue_()
            return
        response = route.fetch()
        route.fulfill(
            response=response,
            headers={**response.headers, "content-security-policy": STRICT_CSP},
        )

    page.route("**/*", add_policy)
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )


@dataclass
class Agent:
    """The agent's side, over the real HTTP API."""

    api: httpx.Client
    token: str

    def submit(self, body: dict) -> dict:
        response = self.api.post(
            "/api/v1/actions",
            json=body,
            headers={"Authorization": f"Bearer {self.token}", "Idempotency-Key": uuid.uuid4().hex},
        )
        assert response.status_code == 201, response.text
        return response.json()

    def get(self, action_id: int, wait: int = 0) -> dict:
        return self.api.get(
            f"/api/v1/actions/{action_id}?wait={wait}",
            headers={"Authorization": f"Bearer {self.token}"},
        ).json()


@dataclass
class Reviewer:
    page: Page
    dialogs: list[str] = field(default_factory=list)

    def card(self, action_id: int):
        return self.page.locator(f"#card-{action_id}")


@pytest.fixture
def agent(dashboard_server, transactional_db, support_agent) -> Iterator[Agent]:
    with httpx.Client(base_url=dashboard_server.url, timeout=60) as api:
        yield Agent(api, factories.make_token(support_agent))


@pytest.fixture
def open_queue(browser: Browser, dashboard_server):
    contexts = []

    expect.set_options(timeout=LIVE_TIMEOUT_MS)

    def login(user, *, width: int = 1280, prepare=None, lands_on: str = "/") -> Reviewer:
        """Log ``user`` in; they land on their home, ``lands_on`` (a reviewer's is the queue,
        live and caught up once; another home is left as it is)."""
        context = browser.new_context(
            base_url=dashboard_server.url, viewport={"width": width, "height": 900}
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(LIVE_TIMEOUT_MS)
        reviewer = Reviewer(page)
        page.on(
            "dialog", lambda dialog: (reviewer.dialogs.append(dialog.message), dialog.dismiss())
        )
        if prepare:
            prepare(page)
        page.goto("/accounts/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", "pw-for-tests")
        page.click("button[type=submit]")
        page.wait_for_url(dashboard_server.url + lands_on)
        if lands_on != "/":
            return reviewer
        expect(page.locator("[data-live-status]")).to_have_text("live")
        expect(page.locator("[data-live-synced]")).to_have_count(1)  # caught up once
        return reviewer

    yield login
    for context in contexts:
        context.close()


def test_browser__card_arrives_live__keyboard_approve__agent_long_poll_returns_approved(
    open_queue, agent, reviewer, artifacts
):
    # Given a reviewer on the queue, with the socket up, under the strictest CSP
    violations: list[str] = []
    rita = open_queue(reviewer, prepare=lambda page: enforce_strict_csp(page, violations))
    rita.page.reload()  # the page after the login redirect was not routed: load it again
    expect(rita.page.locator("[data-live-status]")).to_have_text("live")
    # When the agent submits through the API
    action = agent.submit(REFUND)
    # Then the card appears without a reload, showing what the reviewer needs
    card = rita.card(action["id"])
    expect(card).to_be_visible()
    expect(card).to_contain_text("create_refund_request")
    expect(card).to_contain_text("gpt-x-2026-05")
    expect(card.locator(".badge-risk")).to_have_text("medium")
    expect(card).to_contain_text("0 of 1")
    # and a riskier one arrives above it
    riskier = agent.submit(
        {
            "tool": "send_email",
            "arguments": {"to": "all-customers@example.com", "template": "apology-v2"},
            "summary": "Apologise to every customer affected by the outage",
            "blast_radius": {"environment": "production", "users_affected": 4200},
        }
    )
    expect(rita.page.locator("[data-queue-count]")).to_have_text("2")
    assert rita.page.locator(".cards .card").evaluate_all(
        "cards => cards.map(c => Number(c.dataset.actionId))"
    ) == [riskier["id"], action["id"]]
    rita.page.screenshot(path=artifacts / "queue.png", full_page=True)

    # When the agent long-polls and the reviewer approves with the keyboard (j j, then a)
    answer: dict = {}
    poll = threading.Thread(target=lambda: answer.update(agent.get(action["id"], wait=30)))
    poll.start()
    rita.page.keyboard.press("j")
    rita.page.keyboard.press("j")
    expect(card).to_have_class(re.compile("is-selected"))
    rita.page.keyboard.press("a")
    # Then the card says so and the agent's long-poll returns approved
    expect(card).to_contain_text("Approved: the agent may now run")
    poll.join(timeout=30)
    assert answer["status"] == "approved"
    # and nothing on the way needed an exception to the CSP (which is really enforced)
    assert violations == []
    inline_ran = rita.page.evaluate(
        """() => { const s = document.createElement("script");
                   s.textContent = "window.inlineRan = true;";
                   document.head.appendChild(s); return window.inlineRan === true; }"""
    )
    assert not inline_ran


def test_browser__reject_needs_reason__edit_rejects_bad_json__then_shows_diff(
    open_queue, agent, reviewer, artifacts
):
    rita = open_queue(reviewer)
    to_reject = agent.submit({"tool": "send_email", "arguments": {"to": "x@example.com"}})
    to_edit = agent.submit(REFUND)
    page = rita.page

    # Reject: the reason is required before anything is sent
    card = rita.card(to_reject["id"])
    reject = card.get_by_role("button", name=f"Reject send_email #{to_reject['id']}", exact=True)
    card.locator("summary", has_text="Reject").click()
    reject.click()
    expect(card).to_have_attribute("data-status", "pending")
    card.get_by_label("Reason for the agent").fill("Wrong recipient: use the billing contact")
    reject.click()
    expect(card).to_have_attribute("data-status", "rejected")
    assert agent.get(to_reject["id"])["feedback"] == "Wrong recipient: use the billing contact"

    # Edit: invalid JSON is refused with a message, the draft is kept
    card = rita.card(to_edit["id"])
    card.locator("summary", has_text="Edit arguments").click()
    editor = card.locator("textarea[name=arguments]")
    editor.fill('{"order_id": "ORD-7711", "amount": 40,}')
    card.get_by_role("button", name="Approve edited arguments").click()
    expect(card.locator(".field-error")).to_contain_text("not valid JSON")
    expect(card).to_have_attribute("data-status", "pending")
    expect(editor).to_have_value('{"order_id": "ORD-7711", "amount": 40,}')
    # then valid JSON is approved and the card shows the diff
    editor.fill('{"order_id": "ORD-7711", "amount": 40, "currency": "EUR"}')
    card.get_by_role("button", name="Approve edited arguments").click()
    expect(card).to_have_attribute("data-status", "approved")
    expect(card.locator(".diff-removed")).to_contain_text('"amount": 42.18')
    expect(card.locator(".diff-added")).to_contain_text('"amount": 40')
    assert agent.get(to_edit["id"])["arguments"]["amount"] == 40
    page.goto(f"/actions/{to_edit['id']}")
    expect(page.locator(".trace")).to_contain_text("edited the arguments of")
    page.screenshot(path=artifacts / "action.png", full_page=True)
    page.goto("/decided")
    expect(page.locator(".decided-table tbody tr")).to_have_count(2)
    page.screenshot(path=artifacts / "decided.png", full_page=True)


def test_browser__second_reviewer_page__follows_decisions_and_kill_switch_live(
    open_queue, agent, reviewer, reviewer2
):
    rita, rob = open_queue(reviewer), open_queue(reviewer2)
    high = agent.submit({**REFUND, "blast_radius": {"amount": {"value": 5000, "currency": "EUR"}}})
    other = agent.submit({"tool": "send_email", "arguments": {"to": "y@example.com"}})
    expect(rob.card(high["id"])).to_contain_text("0 of 2")

    # When Rita approves, Rob's card shows one of two approvals, by her
    approve_high = f"Approve create_refund_request #{high['id']}"
    rita.card(high["id"]).get_by_role("button", name=approve_high, exact=True).click()
    expect(rob.card(high["id"])).to_contain_text("1 of 2")
    expect(rob.card(high["id"])).to_contain_text("by rita")
    # When Rob gives the second approval, Rita's page shows it decided
    rob.card(high["id"]).get_by_role("button", name=approve_high, exact=True).click()
    expect(rita.card(high["id"])).to_have_attribute("data-status", "approved")
    expect(rita.card(high["id"])).to_contain_text("Approved by rita, rob")

    # When an incident owner stops the agent, the waiting card shows as cancelled
    expect(rob.card(other["id"])).to_have_attribute("data-status", "pending")
    in_thread(
        engage_kill_switch,
        scope="agent",
        target="support-assistant",
        reason="runaway",
        actor=Actor.system("t"),
    )
    expect(rob.card(other["id"])).to_have_attribute("data-status", "cancelled")
    expect(rob.card(other["id"])).to_contain_text("Stopped by kill switch: runaway")
    expect(rob.page.locator("[data-queue-count]")).to_have_text("0")


def test_browser__socket_drops__page_reconnects_and_catches_up(open_queue, agent, reviewer):
    # Given a socket whose events are lost (delivery is at most once)
    sockets: list = []
    lose_events = {"on": True}

    def route(ws):
        server = ws.connect_to_server()
        if lose_events["on"]:
            server.on_message(lambda message: None)
        sockets.append(ws)

    rita = open_queue(reviewer, prepare=lambda page: page.route_web_socket("**/ws/queue/", route))
    action = agent.submit({"tool": "send_email", "arguments": {"to": "z@example.com"}})
    rita.page.wait_for_timeout(1000)
    expect(rita.card(action["id"])).to_have_count(0)
    # When the socket drops and the page reconnects
    lose_events["on"] = False
    sockets[-1].close()
    # Then the page re-reads the queue and the missed card is there
    expect(rita.card(action["id"])).to_be_visible()
    assert len(sockets) >= 2


def test_browser__server_says_resync__page_re_reads_on_the_same_socket(open_queue, agent, reviewer):
    # Given an open socket whose events were lost (its server was cut off from Redis)
    sockets: list = []

    def route(ws):
        ws.connect_to_server().on_message(lambda message: None)
        sockets.append(ws)

    rita = open_queue(reviewer, prepare=lambda page: page.route_web_socket("**/ws/queue/", route))
    action = agent.submit({"tool": "send_email", "arguments": {"to": "r@example.com"}})
    rita.page.wait_for_timeout(1000)
    expect(rita.card(action["id"])).to_have_count(0)
    # When the server says its connection came back (core/channel_layer.py)
    sockets[-1].send(json.dumps({"type": "resync"}))
    # Then the page re-reads the queue and the missed card is there, without reconnecting
    expect(rita.card(action["id"])).to_be_visible()
    assert len(sockets) == 1


def test_browser__xss_in_agent_text__shown_as_text_never_run(
    open_queue, dashboard_server, transactional_db, support_agent, reviewer, artifacts
):
    rita = open_queue(reviewer, width=390)
    payload = "<script>alert('xss')</script>"
    # The API refuses a javascript: URL; the write path is called directly to prove the page
    # is safe even with data that got past validation.
    action = in_thread(
        factories.submit,
        support_agent,
        "send_email",
        {"to": "a@example.com", "body": "<img src=x onerror=alert('args')>"},
        summary=payload,
        rationale={"objective": "<svg onload=alert('why')>"},
        evidence=[
            {
                "kind": "<b>kind</b>",
                "title": "<img src=x onerror=alert('title')>",
                "content": payload,
            },
            {"kind": "link", "title": "Click me", "url": "javascript:alert('url')"},
        ],
    )
    action = {"id": action.pk}
    card = rita.card(action["id"])
    expect(card.locator(".card-summary")).to_have_text(payload)
    expect(card.locator(".evidence")).to_contain_text("<img src=x onerror=alert('title')>")
    expect(card.locator(".evidence-url")).to_contain_text("javascript:alert('url')")
    assert card.locator("a[href^='javascript:'], script, img, svg").count() == 0
    rita.page.screenshot(path=artifacts / "queue-narrow.png", full_page=True)
    rita.page.goto(f"/actions/{action['id']}")
    expect(rita.page.locator(".card-summary")).to_have_text(payload)
    rita.page.wait_for_timeout(300)
    assert rita.dialogs == []
