"""The Python SDK (sdk/python) against the real ASGI server: outcomes, waiting, reports,
the decorator, retries and failing closed. People decide from other threads through the
same write path as the dashboard."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.utils import timezone

import tests.sdk_path  # noqa: F401
from approvals import actions
from approvals.models import Action, Report
from audit.canonical import payload_hash
from audit.chain import Actor
from incidents.actions import engage_kill_switch
from tests import factories
from tests.sdk_support import Decider, FlakyProxy, approve_with, closed_port, later, reject_with

# isort: split
import airlock_sdk
from airlock_sdk import (
    ActionCancelled,
    ActionDenied,
    ActionExpired,
    ActionRejected,
    ActionShadowed,
    Airlock,
    AirlockAPIError,
    AsyncAirlock,
    AuthenticationError,
    DecisionTimeout,
    GateUnavailable,
    RetryPolicy,
    WebhookVerificationError,
    parse_webhook,
)

pytestmark = pytest.mark.django_db(transaction=True)

FAST_RETRY = RetryPolicy(attempts=4, backoff=0.05, max_backoff=0.2, give_up_after=5)
RELEASE = {"model": "scripted-1", "prompt_version": "support-v1", "tool_schema_version": "t-1"}
REFUND = {"order_id": "ORD-7711", "amount": 42.18, "currency": "EUR"}


@pytest.fixture
def token(support_agent):
    return factories.make_token(support_agent)


@pytest.fixture
def airlock(asgi_server, transactional_db, token):
    with Airlock(
        asgi_server.url, token, retry=FAST_RETRY, release=RELEASE, poll_seconds=5
    ) as client:
        yield client


# --- outcomes ---------------------------------------------------------------------------------


def test_request__allowed_read__wait_returns_at_once_and_report_executes(airlock):
    decision = airlock.request("get_order_status", {"order_id": "ORD-1"}, summary="Look up ORD-1")
    assert (decision.status, decision.reason_code) == ("allowed", "allowed")
    assert decision.executable and decision.payload_hash == payload_hash({"order_id": "ORD-1"})
    assert decision.wait(timeout=5) is decision
    airlock.report(decision, "succeeded", {"status": "shipped"})
    assert decision.status == "executed"
    report = Report.objects.get(action_id=decision.id)
    assert report.result == {"status": "shipped"}
    action = Action.objects.get(pk=decision.id)
    assert action.release.model == "scripted-1" and action.summary == "Look up ORD-1"


def test_report__short_result__returned_with_the_action__long_one_omitted(airlock):
    # Given two allowed calls, one reported with a short result, one with a long one
    short = airlock.request("get_order_status", {"order_id": "ORD-1"})
    long = airlock.request("get_order_status", {"order_id": "ORD-2"})
    airlock.report(short, "succeeded", {"status": "shipped"})
    airlock.report(long, "succeeded", "x" * 9000)
    # When the agent reads them back
    short_read, long_read = airlock.get(short.id), airlock.get(long.id)
    # Then the short result comes back with the report; the long one is stored, not returned
    assert short_read.execution["outcome"] == "succeeded"
    assert short_read.result == {"status": "shipped"}
    assert long_read.result is None and long_read.execution["result_omitted"] is True
    assert Report.objects.get(action_id=long.id).result == "x" * 9000
    assert airlock.request("get_order_status", {"order_id": "ORD-3"}).execution is None


def test_gated__stable_idempotency_key__replay_returns_recorded_result_without_running(
    airlock,
):
    # Given a gated tool whose key and correlation id come from the conversation
    calls = []

    @airlock.gated(
        tool="get_order_status",
        idempotency_key=lambda a: f"ticket-9:{a['order_id']}",
        correlation_id="ticket-9",
    )
    def get_order_status(order_id: str) -> dict:
        calls.append(order_id)
        return {"order_id": order_id, "status": "shipped"}

    # When the same call is made again (a replay after a restart)
    first = get_order_status("ORD-1")
    replayed = get_order_status("ORD-1")
    # Then the tool ran once, one action exists, and the replay got the recorded result
    assert calls == ["ORD-1"]
    assert first == replayed == {"order_id": "ORD-1", "status": "shipped"}
    action = Action.objects.get()
    assert (action.status, action.correlation_id) == ("executed", "ticket-9")


def test_gated__replay_of_a_failed_call__raises_without_running_again(airlock):
    calls = []

    @airlock.gated(tool="get_order_status", idempotency_key="ticket-10:lookup")
    def get_order_status(order_id: str) -> dict:
        calls.append(order_id)
        raise LookupError("no such order")

    with pytest.raises(LookupError):
        get_order_status("ORD-404")
    with pytest.raises(airlock_sdk.ActionNotPermitted, match="already ran and failed"):
        get_order_status("ORD-404")
    assert calls == ["ORD-404"] and Action.objects.get().status == "failed"


def test_request__forbidden_tool__denied_answer_and_wait_raises_with_reason(airlock):
    decision = airlock.request("approve_refund", {"order_id": "ORD-1"})
    assert (decision.status, decision.reason_code) == ("denied", "tool_forbidden")
    with pytest.raises(ActionDenied) as caught:
        decision.wait()
    assert caught.value.reason_code == "tool_forbidden"
    assert caught.value.reason and caught.value.reason in str(caught.value)
    assert "approve_refund" in str(caught.value)


def test_request__sends_context_fields_the_card_shows(airlock):
    decision = airlock.request(
        "create_refund_request",
        REFUND,
        summary="Refund 42.18 EUR for ORD-7711",
        rationale={"objective": "Resolve T-1", "plan": "Refund", "confidence": 0.8},
        evidence=[{"kind": "tracking", "title": "Carrier", "content": "8 days late"}],
        blast_radius={"environment": "production", "amount": {"value": 42.18, "currency": "EUR"}},
        compensation={"tool": "cancel_refund", "window_seconds": 3600},
        correlation_id="ticket-T-1",
    )
    assert decision.pending and decision.risk == "medium" and decision.expires_at is not None
    action = Action.objects.get(pk=decision.id)
    assert action.rationale["objective"] == "Resolve T-1"
    assert action.evidence[0]["title"] == "Carrier"
    assert action.blast_radius["environment"] == "production"
    assert action.correlation_id == "ticket-T-1"


def test_request__server_schema_error__api_error_with_fields(airlock):
    with pytest.raises(AirlockAPIError) as caught:
        airlock.request("send_email", {"to": "a@example.com"}, rationale={"confidence": 3})
    assert (caught.value.status_code, caught.value.code) == (400, "invalid")
    assert "rationale" in caught.value.fields


def test_request__bad_token__authentication_error_without_retries(asgi_server, transactional_db):
    with Airlock(asgi_server.url, "alk_wrong", retry=FAST_RETRY) as client:
        started = time.monotonic()
        with pytest.raises(AuthenticationError):
            client.request("get_order_status", {"order_id": "1"})
    assert time.monotonic() - started < 2


def test_shadow_tier__shadowed__decorated_function_never_runs(asgi_server, reference_data):
    agent = factories.make_agent("deploy-bot", tier="shadow")
    calls = []
    with Airlock(asgi_server.url, factories.make_token(agent), retry=FAST_RETRY) as client:

        @client.gated(tool="update_crm_note", effect="write")
        def update_crm_note(customer: str, note: str) -> None:
            calls.append(note)

        with pytest.raises(ActionShadowed) as caught:
            update_crm_note("C-1", "called twice")
    assert calls == []
    assert caught.value.decision.status == "shadowed"


def test_gated__standing_approval__approved_at_once_runs_like_allowed(
    asgi_server, reference_data, reviewer
):
    from approvals.standing import Terms

    bounds = {"allowed": True, "max_minutes": 60, "max_uses": 5, "max_risk": "medium"}
    rules = [
        {**rule, "standing": bounds} if rule["tool"] == "send_email" else rule
        for rule in factories.SUPPORT_RULES
    ]
    agent = factories.make_agent("mail-bot", rules=rules)
    first = factories.submit(agent, "send_email", {"to": "a@example.com"})
    actions.approve(action_id=first.pk, user=reviewer, standing_terms=Terms(30, 3))
    calls = []
    with Airlock(asgi_server.url, factories.make_token(agent), retry=FAST_RETRY) as client:

        @client.gated(tool="send_email", effect="write", timeout=30)
        def send_email(to: str) -> str:
            calls.append(to)
            return "sent"

        # No person decides: the gate's answer is already "approved"
        assert send_email("a@example.com") == "sent"
    assert calls == ["a@example.com"]
    action = Action.objects.exclude(pk=first.pk).get()
    assert (action.status, action.reason_code) == ("executed", "standing_approval")


# --- waiting for people -----------------------------------------------------------------------


def test_gated__approved_with_edit__runs_once_with_edited_arguments_and_reports(airlock, reviewer):
    calls = []

    @airlock.gated(
        tool="create_refund_request",
        effect="write",
        summary=lambda a: f"Refund {a['amount']} {a['currency']} for {a['order_id']}",
        blast_radius=lambda a: {"amount": {"value": a["amount"], "currency": a["currency"]}},
    )
    def create_refund_request(order_id: str, amount: float, currency: str = "EUR") -> dict:
        calls.append((order_id, amount, currency))
        return {"refund_id": "R-1", "amount": amount}

    edited = {**REFUND, "amount": 40.0}
    with Decider([("create_refund_request", approve_with(reviewer, edited, "cap at 40"))]):
        result = create_refund_request("ORD-7711", 42.18)
    assert calls == [("ORD-7711", 40.0, "EUR")]
    assert result == {"refund_id": "R-1", "amount": 40.0}
    action = Action.objects.get()
    assert action.status == "executed"
    assert action.original_arguments == REFUND and action.arguments == edited
    assert action.summary == "Refund 42.18 EUR for ORD-7711"
    report = Report.objects.get(action=action)
    assert report.payload_hash == payload_hash(edited)
    assert report.result == {"refund_id": "R-1", "amount": 40.0}


def test_wait__rejected__raises_rejected_with_reviewer_reason(airlock, reviewer):
    decision = airlock.request("send_email", {"to": "dana@example.com", "subject": "Hi"})
    with (
        Decider([("send_email", reject_with(reviewer, "Wrong customer: ticket is Dan's"))]),
        pytest.raises(ActionRejected) as caught,
    ):
        decision.wait(timeout=20)
    assert caught.value.reason == "Wrong customer: ticket is Dan's"
    assert "rejected by a human reviewer: Wrong customer" in str(caught.value)
    assert decision.status == "rejected"


def test_gated__rejected__function_never_runs(airlock, reviewer):
    calls = []

    @airlock.gated(tool="send_email", effect="write")
    def send_email(to: str, subject: str, body: str = "") -> None:
        calls.append(to)

    with (
        Decider([("send_email", reject_with(reviewer, "Do not email customers on Sunday"))]),
        pytest.raises(ActionRejected, match="Do not email customers on Sunday"),
    ):
        send_email("dana@example.com", "Hi")
    assert calls == []
    assert not Report.objects.exists()


def test_wait__expired_by_the_server__raises_expired(airlock):
    decision = airlock.request("send_email", {"to": "dana@example.com"})
    Action.objects.filter(pk=decision.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    with (
        later(lambda: actions.expire(action_id=decision.id), delay=0.3),
        pytest.raises(ActionExpired) as caught,
    ):
        decision.wait(timeout=20)
    assert decision.status == "expired"
    assert "Expired" in caught.value.reason


def test_wait__past_expiry__expired_by_the_servers_read(asgi_server, transactional_db, token):
    with Airlock(asgi_server.url, token, retry=FAST_RETRY, expiry_grace=0.2) as client:
        decision = client.request("send_email", {"to": "dana@example.com"})
        Action.objects.filter(pk=decision.id).update(
            expires_at=timezone.now() - timedelta(seconds=2)
        )
        decision.refresh()
        started = time.monotonic()
        with pytest.raises(ActionExpired, match="expired"):
            decision.wait()
    assert time.monotonic() - started < 5
    # The server does not wait for its expiry task: reading the action expired it.
    assert Action.objects.get(pk=decision.id).status == "expired"


def test_wait__kill_switch_mid_wait__cancelled_then_new_calls_denied(airlock, support_agent):
    calls = []

    @airlock.gated(tool="send_email", effect="write")
    def send_email(to: str) -> None:
        calls.append(to)

    engage = lambda: engage_kill_switch(  # noqa: E731
        scope="agent", target=support_agent.slug, reason="Runaway emails", actor=Actor.system("t")
    )
    with (
        later(engage, delay=0.5),
        pytest.raises(ActionCancelled) as caught,
    ):
        send_email("dana@example.com")
    assert "Runaway emails" in str(caught.value)
    with pytest.raises(ActionDenied) as denied:
        send_email("dana@example.com")
    assert denied.value.reason_code == "kill_switch"
    assert calls == []


def test_gated__timeout__withdraws_and_never_runs(airlock):
    calls = []

    @airlock.gated(tool="send_email", effect="write", timeout=1.0)
    def send_email(to: str) -> None:
        calls.append(to)

    with pytest.raises(DecisionTimeout):
        send_email("dana@example.com")
    assert calls == []
    assert Action.objects.get().status == "cancelled"


def test_gated__function_raises__reported_failed_and_reraised(airlock):
    @airlock.gated(tool="get_order_status", effect="read")
    def get_order_status(order_id: str) -> dict:
        raise LookupError(f"no order {order_id}")

    with pytest.raises(LookupError):
        get_order_status("ORD-404")
    action = Action.objects.get()
    assert action.status == "failed"
    assert "LookupError: no order ORD-404" in Report.objects.get(action=action).error


@pytest.mark.parametrize(
    ("tool", "arguments", "reason_code"),
    [
        ("approve_refund", {"order_id": "ORD-1", "amount": 5.0}, "tool_forbidden"),
        ("launch_rocket", {"order_id": "ORD-1", "amount": 5.0}, "tool_unknown"),
        ("create_refund_request", {"order_id": "ORD-1", "amount": 20000.0}, "argument_limit"),
    ],
)
def test_gated__denied__function_never_runs(airlock, tool, arguments, reason_code):
    calls = []

    @airlock.gated(tool=tool, effect="write")
    def act(order_id: str, amount: float) -> None:
        calls.append(order_id)

    with pytest.raises(ActionDenied) as caught:
        act(**arguments)
    assert caught.value.reason_code == reason_code
    assert calls == []
    assert Action.objects.get().status == "denied"


def test_gated__method_and_kwargs__self_is_not_sent(airlock):
    class Mailer:
        sent: list = []

        @airlock.gated(tool="get_order_status", effect="read")
        def lookup(self, order_id: str, **extra: str) -> str:
            self.sent.append((order_id, extra))
            return "ok"

    assert Mailer().lookup("ORD-2", region="eu") == "ok"
    assert Mailer.sent == [("ORD-2", {"region": "eu"})]
    assert Action.objects.get().arguments == {"order_id": "ORD-2", "region": "eu"}


def test_gated__unserialisable_argument__type_error_before_asking(airlock):
    @airlock.gated(tool="get_order_status")
    def lookup(order_id: object) -> None:
        raise AssertionError("must not run")

    with pytest.raises(TypeError):
        lookup(object())
    assert not Action.objects.exists()


def test_module_level_gated__uses_configured_client(asgi_server, transactional_db, token):
    calls = []

    @airlock_sdk.gated(tool="get_order_status", effect="read")
    def get_order_status(order_id: str) -> str:
        calls.append(order_id)
        return "shipped"

    client = airlock_sdk.configure(asgi_server.url, token, retry=FAST_RETRY)
    try:
        assert get_order_status("ORD-3") == "shipped"
    finally:
        client.close()
    assert calls == ["ORD-3"] and Action.objects.get().status == "executed"


# --- retries and failing closed -----------------------------------------------------------------


def test_server_down__gate_unavailable_and_function_never_runs(transactional_db):
    calls = []
    client = Airlock(f"http://127.0.0.1:{closed_port()}", "alk_x", retry=FAST_RETRY)

    @client.gated(tool="send_email", effect="write")
    def send_email(to: str) -> None:
        calls.append(to)

    started = time.monotonic()
    with pytest.raises(GateUnavailable, match="failing closed") as caught:
        send_email("dana@example.com")
    assert calls == []
    assert "after 4 tries" in str(caught.value)
    assert 0.1 < time.monotonic() - started < 5  # backed off between tries, then gave up
    client.close()


def test_restarting_server__connections_refused_then_answered__retried(asgi_server, token):
    with (
        FlakyProxy(asgi_server.port, refuse=2) as proxy,
        Airlock(proxy.url, token, retry=FAST_RETRY) as client,
    ):
        decision = client.request("get_order_status", {"order_id": "ORD-1"})
    assert decision.status == "allowed"
    assert proxy.connections >= 3


def test_lost_response__retry_reuses_idempotency_key__one_action(asgi_server, token):
    with (
        FlakyProxy(asgi_server.port, drop_response_when=b"POST /api/v1/actions ") as proxy,
        Airlock(proxy.url, token, retry=FAST_RETRY) as client,
    ):
        decision = client.request("send_email", {"to": "dana@example.com"})
    assert proxy.dropped == 1
    assert decision.pending
    assert Action.objects.count() == 1 and Action.objects.get().pk == decision.id


def test_lost_report_response__retry_sees_already_reported__returns_executed(asgi_server, token):
    with (
        FlakyProxy(asgi_server.port, drop_response_when=b"/execution") as proxy,
        Airlock(proxy.url, token, retry=FAST_RETRY) as client,
    ):
        decision = client.request("get_order_status", {"order_id": "ORD-1"})
        client.report(decision, "succeeded", {"status": "shipped"})
    assert proxy.dropped == 1
    assert decision.status == "executed"
    assert Report.objects.count() == 1


def test_report__revoked_by_kill_switch__409_revoked(airlock, support_agent):
    decision = airlock.request("get_order_status", {"order_id": "ORD-1"})
    engage_kill_switch(
        scope="agent", target=support_agent.slug, reason="Stop", actor=Actor.system("t")
    )
    with pytest.raises(AirlockAPIError) as caught:
        airlock.report(decision, "succeeded")
    assert (caught.value.status_code, caught.value.code) == (409, "revoked")


# --- async ------------------------------------------------------------------------------------


def test_async_client__gated_coroutine_approved_and_rejected(asgi_server, token, reviewer):
    calls = []

    async def scenario() -> tuple:
        async with AsyncAirlock(asgi_server.url, token, retry=FAST_RETRY, poll_seconds=5) as client:

            @client.gated(tool="send_email", effect="write")
            async def send_email(to: str, subject: str) -> str:
                calls.append(subject)
                return f"sent {subject}"

            first = await send_email("dana@example.com", "Refund issued")
            with pytest.raises(ActionRejected) as caught:
                await send_email("dana@example.com", "Second email")
            return first, caught.value.reason

    decisions = [
        ("send_email", approve_with(reviewer)),
        ("send_email", reject_with(reviewer, "One email is enough")),
    ]
    with Decider(decisions):
        first, reason = asyncio.run(scenario())
    assert first == "sent Refund issued" and reason == "One email is enough"
    assert calls == ["Refund issued"]
    assert sorted(Action.objects.values_list("status", flat=True)) == ["executed", "rejected"]


def test_async_client__server_down__gate_unavailable(transactional_db):
    async def scenario() -> None:
        client = AsyncAirlock(f"http://127.0.0.1:{closed_port()}", "alk_x", retry=FAST_RETRY)
        try:
            await client.request("get_order_status", {"order_id": "1"})
        finally:
            await client.aclose()

    with pytest.raises(GateUnavailable):
        asyncio.run(scenario())


def test_sync_client_gating_a_coroutine_uses_its_async_twin(airlock):
    @airlock.gated(tool="get_order_status", effect="read")
    async def get_order_status(order_id: str) -> str:
        return f"{order_id}: shipped"

    assert asyncio.run(get_order_status("ORD-9")) == "ORD-9: shipped"
    assert Action.objects.get().status == "executed"


# --- webhooks ---------------------------------------------------------------------------------


def test_webhook__delivered_by_the_outbox__verifies_with_the_agents_secret(
    airlock, support_agent, reviewer, settings
):
    from approvals.models import Outbox
    from approvals.tasks import deliver_outbox

    received: list[tuple[bytes, str]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body, self.headers["X-Airlock-Signature"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    try:
        url = f"http://127.0.0.1:{server.server_port}/airlock"
        decision = airlock.request("send_email", {"to": "dana@example.com"}, callback_url=url)
        actions.approve(action_id=decision.id, user=reviewer)
        deliver_outbox(Outbox.objects.get(action_id=decision.id).pk)
    finally:
        server.shutdown()
    (body, header) = received[0]
    event = parse_webhook(support_agent.webhook_secret, body, header)
    assert (event["event"], event["action_id"], event["status"]) == (
        "action.approved",
        decision.id,
        "approved",
    )
    assert json.loads(body)["payload_hash"] == decision.payload_hash
    with pytest.raises(WebhookVerificationError):
        parse_webhook("whsec_someone_else", body, header)
