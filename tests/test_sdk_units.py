"""SDK pieces that need no server: argument binding, hashing, errors, the retry loop's
handling of 5xx/429 answers (through httpx's mock transport; everything else in the SDK
is tested against the real server in test_sdk.py)."""

from __future__ import annotations

import time

import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.types import Command

import tests.sdk_path  # noqa: F401
from approvals.webhooks import sign
from audit.canonical import payload_hash as server_payload_hash
from tests.langgraph_agent import ScriptedChatModel, build_graph
from tests.sdk_support import closed_port

# isort: split
from airlock_sdk import (
    Airlock,
    AirlockAPIError,
    AirlockError,
    GateUnavailable,
    RetryPolicy,
    WebhookVerificationError,
    payload_hash,
    verify_signature,
)
from airlock_sdk.adapters._common import correlation_for, replay_key
from airlock_sdk.adapters.langchain import AirlockToolNode, edit_note, with_edit_note
from airlock_sdk.decision import Decision
from airlock_sdk.errors import ActionRejected, not_permitted_for
from airlock_sdk.gating import Binder

FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.02, give_up_after=5)


def action(**fields) -> dict:
    return {
        "id": 7,
        "tool": "send_email",
        "status": "pending",
        "reason_code": "requires_approval",
        "arguments": {"to": "a@example.com"},
        "payload_hash": "0" * 64,
        **fields,
    }


def test_payload_hash__same_digest_as_the_server():
    for value in [{"b": 1, "a": [1.5, "é", None]}, {"nested": {"z": True, "y": "日本"}}, {}]:
        assert payload_hash(value) == server_payload_hash(value)


def test_binder__round_trip_with_defaults_kwargs_and_positional_only():
    def tool(a, /, b, c=3, *rest, d, e="x", **extra):
        return (a, b, c, rest, d, e, extra)

    binder = Binder(tool, exclude=())
    sent, passthrough = binder.split((1, 2, 4, 5, 6), {"d": 7, "z": 9})
    assert sent == {"a": 1, "b": 2, "c": 4, "rest": [5, 6], "d": 7, "e": "x", "z": 9}
    args, kwargs = binder.call({**sent, "d": 70}, passthrough)
    assert tool(*args, **kwargs) == (1, 2, 4, (5, 6), 70, "x", {"z": 9})


def test_binder__excluded_parameter_passes_through_unsent():
    class Service:
        def send(self, to: str) -> str:
            return to

    binder = Binder(Service.send, exclude=("self",))
    service = Service()
    sent, passthrough = binder.split((service, "a@example.com"), {})
    assert sent == {"to": "a@example.com"} and passthrough == {"self": service}
    args, kwargs = binder.call({"to": "b@example.com"}, passthrough)
    assert Service.send(*args, **kwargs) == "b@example.com"


def test_rejection_message__names_tool_and_reason():
    decision = Decision(None, action(status="rejected", feedback="Not this customer"))  # type: ignore[arg-type]
    exc = not_permitted_for(decision)
    assert isinstance(exc, ActionRejected)
    assert str(exc) == (
        "Airlock: the call to 'send_email' was rejected by a human reviewer: Not this customer"
    )
    executed = Decision(None, action(status="executed"))  # type: ignore[arg-type]
    assert "already executed" in str(not_permitted_for(executed))


def test_client__needs_a_token(monkeypatch):
    monkeypatch.delenv("AIRLOCK_TOKEN", raising=False)
    with pytest.raises(AirlockError, match="token"):
        Airlock("http://127.0.0.1:1")


def scripted_transport(answers: list, seen: list) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, headers = answers.pop(0)
        body = action() if status < 300 else {"code": "error", "detail": "x"}
        return httpx.Response(status, json=body, headers=headers)

    return httpx.MockTransport(handler)


def test_retry__503_and_429_retried_with_one_idempotency_key():
    seen: list[httpx.Request] = []
    answers = [(503, {"Retry-After": "0"}), (429, {"Retry-After": "0"}), (201, {})]
    http = httpx.Client(base_url="http://airlock.test", transport=scripted_transport(answers, seen))
    client = Airlock("http://airlock.test", "alk_x", retry=FAST, http_client=http)
    decision = client.request("send_email", {"to": "a@example.com"})
    assert decision.pending and len(seen) == 3
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1
    assert seen[0].headers["Authorization"] == "Bearer alk_x"


def test_retry__persistent_500__gate_unavailable_after_all_tries():
    seen: list[httpx.Request] = []
    http = httpx.Client(
        base_url="http://airlock.test", transport=scripted_transport([(500, {})] * 4, seen)
    )
    client = Airlock("http://airlock.test", "alk_x", retry=FAST, http_client=http)
    with pytest.raises(GateUnavailable, match="after 4 tries"):
        client.request("send_email", {"to": "a@example.com"})
    assert len(seen) == 4


def test_client_errors__not_retried():
    seen: list[httpx.Request] = []
    http = httpx.Client(
        base_url="http://airlock.test", transport=scripted_transport([(400, {})], seen)
    )
    client = Airlock("http://airlock.test", "alk_x", retry=FAST, http_client=http)
    with pytest.raises(AirlockAPIError):
        client.request("send_email", {"to": "a@example.com"})
    assert len(seen) == 1


def test_request__unknown_field_and_non_json_arguments_refused_locally():
    client = Airlock("http://airlock.test", "alk_x")
    with pytest.raises(TypeError):
        client.request("send_email", {"when": object()})
    with pytest.raises(TypeError):
        client.request("send_email", ["not", "a", "dict"])  # type: ignore[arg-type]


def test_verify_signature__matches_the_servers_signer():
    body = b'{"event":"action.approved","action_id":1}'
    header = sign("whsec_test", body)
    assert verify_signature("whsec_test", body, header) > 0
    for bad_body, bad_header in [
        (body + b" ", header),
        (body, header.replace("v1=", "v1=0")),
        (body, None),
        (body, "v1=abc"),
        (body, sign("whsec_test", body, timestamp=int(time.time()) - 3600)),
    ]:
        with pytest.raises(WebhookVerificationError):
            verify_signature("whsec_test", bad_body, bad_header)
    rotated = f"{sign('whsec_old', body)},v1={sign('whsec_test', body).split('v1=')[1]}"
    assert verify_signature("whsec_test", body, rotated)


def test_replay_key__stable_plain_and_bounded__none_without_a_conversation():
    assert replay_key("langgraph", "ticket-1", "call-1") == "langgraph:ticket-1:call-1"
    assert replay_key("langgraph", None, "call-1") is None  # a call id alone is not unique
    assert replay_key("langgraph", "ticket-1", None) is None
    odd = replay_key("mcp", "sëssion with spaces", 3)
    assert odd == replay_key("mcp", "sëssion with spaces", 3) and odd.isascii() and " " not in odd
    assert len(replay_key("x", "t" * 500, "c")) <= 200
    assert correlation_for("ticket-1") == "ticket-1" and len(correlation_for("t" * 90)) <= 80


def test_edit_note__names_changed_arguments_and_the_approvers_comment():
    decision = Decision(
        None,
        action(
            status="approved",
            arguments={"to": "a@example.com", "body": "Kind regards"},
            original_arguments={"to": "a@example.com", "body": "Regards"},
            decisions=[
                {"verdict": "approve", "comment": "Be kinder", "voided": False},
                {"verdict": "approve", "comment": "old", "voided": True},
            ],
        ),
    )
    assert edit_note(decision) == (
        '(Airlock: arguments edited by a reviewer: body: "Regards" -> "Kind regards"; '
        "approver's comment: Be kinder.)"
    )
    assert edit_note(Decision(None, action(status="approved"))) == ""


def test_with_edit_note__every_output_shape_carries_the_note_unless_nothing_changed():
    edited = Decision(
        None,
        action(
            status="approved",
            arguments={"amount": 40},
            original_arguments={"amount": 42},
            decisions=[{"verdict": "approve", "comment": "", "voided": False}],
        ),
    )
    note = "(Airlock: arguments edited by a reviewer: amount: 42 -> 40.)"
    assert with_edit_note("Refund opened", edited) == f"Refund opened\n{note}"
    assert with_edit_note({"refund": "RF-1"}, edited) == f'{{"refund": "RF-1"}}\n{note}'
    message = ToolMessage(content="Refund opened", tool_call_id="call-1")
    assert with_edit_note(message, edited).content == f"Refund opened\n{note}"
    command = Command(update={"messages": [message], "refunds": 1})
    noted = with_edit_note(command, edited)
    assert noted.update["messages"][0].content == f"Refund opened\n{note}"
    assert noted.update["refunds"] == 1
    untouched = Decision(None, action(status="approved", arguments={"amount": 42}))
    assert with_edit_note("Refund opened", untouched) == "Refund opened"


def test_tool_node__gate_unreachable__error_tool_message_and_nothing_runs():
    ran = []

    @tool
    def send_email(to: str) -> str:
        """Send an email."""
        ran.append(to)
        return "sent"

    client = Airlock(f"http://127.0.0.1:{closed_port()}", "alk_test", retry=FAST)
    call = {"name": "send_email", "args": {"to": "a@example.com"}, "id": "call-1"}
    model = ScriptedChatModel(script=[AIMessage("", tool_calls=[call]), AIMessage("Sorry.")])
    graph = build_graph(model, AirlockToolNode([send_email], client, block=True))
    final = graph.invoke({"messages": [HumanMessage("Email a@example.com")]})
    message = final["messages"][-2]
    assert ran == [] and message.status == "error"
    assert "could not be reached" in message.content
