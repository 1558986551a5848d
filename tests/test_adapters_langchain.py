"""The LangChain/LangGraph adapter in a real LangGraph agent loop (StateGraph + ToolNode)
driven by a scripted chat model, against the real server: one tool call is approved (and
runs with the reviewer's edit), one is rejected (and the model reads the reason)."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.prebuilt import ToolNode

import tests.sdk_path  # noqa: F401
from approvals.models import Action
from tests import factories
from tests.langgraph_agent import ScriptedChatModel, build_graph
from tests.sdk_support import Decider, approve_with, reject_with

# isort: split
from airlock_sdk import Airlock, AsyncAirlock, RetryPolicy
from airlock_sdk.adapters.langchain import AirlockToolNode, gate_tools

pytestmark = pytest.mark.django_db(transaction=True)


def call(name: str, args: dict, call_id: str) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


SENT: list[dict] = []


@tool
def send_email(to: str, subject: str, body: str) -> str:
    """Send an email to a customer."""
    SENT.append({"to": to, "subject": subject, "body": body})
    return f"Email sent to {to}"


@tool
def create_refund_request(order_id: str, amount: float) -> str:
    """Open a refund request for an order."""
    raise AssertionError("a rejected refund must never run")


@pytest.mark.parametrize("mode", ["sync", "async", "node_block"])
def test_langgraph_agent__approved_call_runs_edited__rejected_call_reason_reaches_model(
    asgi_server, support_agent, reviewer, mode
):
    SENT.clear()
    email = {"to": "dana@example.com", "subject": "Your refund", "body": "Refunded 42.18 EUR"}
    model = ScriptedChatModel(
        script=[
            call("send_email", email, "call-1"),
            call("create_refund_request", {"order_id": "ORD-7711", "amount": 4200.0}, "call-2"),
            AIMessage(content="I emailed Dana; the refund was refused, so I escalated."),
        ]
    )
    token = factories.make_token(support_agent)
    retry = RetryPolicy(attempts=3, backoff=0.05, give_up_after=5)
    client = (AsyncAirlock if mode == "async" else Airlock)(
        asgi_server.url, token, retry=retry, poll_seconds=5
    )
    per_tool = {
        "send_email": {"effect": "write", "summary": lambda a: f"Email {a['to']}"},
        "create_refund_request": {
            "effect": "write",
            "blast_radius": lambda a: {"amount": {"value": a["amount"], "currency": "EUR"}},
        },
    }
    inner = [send_email, create_refund_request]
    if mode == "node_block":  # the interrupting node, told to wait inside instead
        node = AirlockToolNode(inner, client, block=True, per_tool=per_tool)
    else:
        node = ToolNode(gate_tools(inner, client, per_tool=per_tool))
    graph = build_graph(model, node)
    edited = {**email, "body": "We refunded 42.18 EUR to your card."}
    decisions = [
        ("send_email", approve_with(reviewer, edited, comment="Say where the money goes")),
        ("create_refund_request", reject_with(reviewer, "Refund exceeds the order total")),
    ]
    start = {"messages": [HumanMessage("Dana's order ORD-7711 arrived late.")]}
    with Decider(decisions):
        final = asyncio.run(graph.ainvoke(start)) if mode == "async" else graph.invoke(start)

    assert [edited] == SENT
    tool_messages = [m for m in final["messages"] if isinstance(m, ToolMessage)]
    assert [m.status for m in tool_messages] == ["success", "error"]
    # The model is told what the reviewer changed and what they said, in every mode.
    assert tool_messages[0].content == (
        "Email sent to dana@example.com\n(Airlock: arguments edited by a reviewer: body: "
        '"Refunded 42.18 EUR" -> "We refunded 42.18 EUR to your card."; '
        "approver's comment: Say where the money goes.)"
    )
    # The model's last turn saw the rejection and the reviewer's reason.
    last_seen = model.seen[-1][-1]
    assert isinstance(last_seen, ToolMessage) and last_seen.tool_call_id == "call-2"
    assert "rejected by a human reviewer: Refund exceeds the order total" in last_seen.content
    statuses = dict(Action.objects.values_list("tool", "status"))
    assert statuses == {"send_email": "executed", "create_refund_request": "rejected"}
    assert Action.objects.get(tool="send_email").summary == "Email dana@example.com"
