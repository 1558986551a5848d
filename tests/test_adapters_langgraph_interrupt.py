"""LangGraph's own human-in-the-loop with Airlock: ``AirlockToolNode`` pauses the graph with
``interrupt()`` while people decide (the checkpointer holds the pause, no thread waits) and,
on resume, runs only what Airlock approved, with Airlock's arguments. Against the real
server with a scripted model: a thread paused in this process and resumed in a new one
from a SQLite checkpointer; a parallel turn with one approval (edited) and one rejection;
a replay of the resumed node; a tool that takes its tool call id and answers a Command."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.prebuilt import ToolNode
from langgraph.types import Command

import tests.sdk_path  # noqa: F401
from approvals import actions
from approvals.models import Action, Report
from tests import factories
from tests.langgraph_agent import (
    ScriptedChatModel,
    build_graph,
    call,
    client_for,
    ledger_entries,
    make_tools,
    sqlite_checkpointer,
    tools_node,
    turn,
)
from tests.servers import ROOT

# isort: split
from airlock_sdk import AsyncAirlock, RetryPolicy
from airlock_sdk.adapters.langchain import gate_tools

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = {"to": "dana@example.com", "subject": "Your refund", "body": "Refunded 42.18 EUR"}
START = {"messages": [HumanMessage("Dana's order ORD-7711 arrived late.")]}


def tool_messages(state: dict) -> dict[str, ToolMessage]:
    return {m.tool_call_id: m for m in state["messages"] if isinstance(m, ToolMessage)}


@pytest.mark.multiprocess
def test_tool_node__paused_then_resumed_in_a_new_process__tool_ran_once_one_card_reported(
    asgi_server, support_agent, reviewer, tmp_path
):
    # Given a graph with a durable checkpointer whose model asks to send an email
    token = factories.make_token(support_agent)
    ledger, db = tmp_path / "ledger.jsonl", tmp_path / "checkpoints.sqlite"
    config = {"configurable": {"thread_id": "ticket-4711"}}
    model = ScriptedChatModel(script=[turn(call("send_email", EMAIL, "call-1"))])
    checkpointer = sqlite_checkpointer(db)
    with client_for(asgi_server.url, token) as client:
        graph = build_graph(model, tools_node(client, ledger), checkpointer)
        # When it runs: the gate answers pending
        paused = graph.invoke(START, config)
    checkpointer.conn.close()

    # Then the graph paused with LangGraph's interrupt, naming the card; nothing ran
    action = Action.objects.get()
    (interrupt,) = paused["__interrupt__"]
    (card,) = interrupt.value["airlock"]
    assert card["action_id"] == action.pk and card["tool_call_id"] == "call-1"
    assert card["card"] == f"{asgi_server.url}/actions/{action.pk}"
    assert (card["summary"], card["risk"]) == ("Email dana@example.com", "medium")
    assert card["expires_at"] is not None
    assert action.status == "pending" and ledger_entries(ledger) == []

    # When a person approves and a new agent process resumes the thread
    actions.approve(action_id=action.pk, user=reviewer)
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.langgraph_agent",
            *("--db", str(db), "--ledger", str(ledger), "--url", asgi_server.url),
            *("--token", token, "--thread", "ticket-4711", "--final", "I emailed Dana."),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    # Then the email went out once, there is one card, and its report is recorded
    messages = json.loads(resumed.stdout)
    tool_message = next(m for m in messages if m["type"] == "tool")
    assert (tool_message["content"], tool_message["status"]) == (
        "Email sent to dana@example.com",
        "success",
    )
    assert messages[-1]["content"] == "I emailed Dana."
    assert ledger_entries(ledger) == [{"tool": "send_email", **EMAIL}]
    action = Action.objects.get()
    assert (action.status, action.correlation_id) == ("executed", "ticket-4711")
    assert Report.objects.get(action=action).result == "Email sent to dana@example.com"


def test_tool_node__parallel_turn_one_approved_edited_one_rejected__replay_opens_no_card(
    asgi_server, support_agent, reviewer, tmp_path
):
    # Given an async graph whose model asks for an email and a refund in one turn
    token = factories.make_token(support_agent)
    ledger = tmp_path / "ledger.jsonl"
    config = {"configurable": {"thread_id": "ticket-4712"}}
    refund = {"order_id": "ORD-7711", "amount": 4200.0}
    model = ScriptedChatModel(
        script=[
            turn(
                call("send_email", EMAIL, "call-1"), call("create_refund_request", refund, "call-2")
            ),
            AIMessage(content="Emailed Dana; the refund was refused."),
            AIMessage(content="(replayed)"),
        ]
    )
    client = AsyncAirlock(
        asgi_server.url, token, retry=RetryPolicy(attempts=3, backoff=0.05), poll_seconds=5
    )
    graph = build_graph(model, tools_node(client, ledger), InMemorySaver())

    async def run(value: object, run_config: dict = config) -> dict:
        return await graph.ainvoke(value, run_config)

    # When it runs: one interrupt lists both cards
    paused = asyncio.run(run(START))
    (interrupt,) = paused["__interrupt__"]
    cards = interrupt.value["airlock"]
    assert [c["tool_call_id"] for c in cards] == ["call-1", "call-2"]
    assert [c["tool"] for c in cards] == ["send_email", "create_refund_request"]

    # When it is woken before anyone decided: it pauses again, with no new card
    again = asyncio.run(run(Command(resume="wake up")))
    assert [c["action_id"] for c in again["__interrupt__"][0].value["airlock"]] == [
        c["action_id"] for c in cards
    ]
    assert Action.objects.count() == 2

    # When a reviewer approves the email with an edit and a comment, rejects the refund,
    # and the graph resumes
    edited = {**EMAIL, "body": "We refunded 42.18 EUR to your card."}
    actions.approve(
        action_id=cards[0]["action_id"],
        user=reviewer,
        arguments=edited,
        comment="Friendlier wording",
    )
    actions.reject(
        action_id=cards[1]["action_id"], user=reviewer, comment="Refund exceeds the order total"
    )
    final = asyncio.run(run(Command(resume="decided")))

    # Then only the approved call ran, with the reviewer's arguments, and the model was
    # told about the edit and the rejection's reason
    assert "__interrupt__" not in final
    assert ledger_entries(ledger) == [{"tool": "send_email", **edited}]
    messages = tool_messages(final)
    email, refused = messages["call-1"], messages["call-2"]
    assert email.status == "success" and email.content.startswith("Email sent to dana@example.com")
    assert 'arguments edited by a reviewer: body: "Refunded 42.18 EUR" -> ' in email.content
    assert "approver's comment: Friendlier wording" in email.content
    assert refused.status == "error"
    assert "rejected by a human reviewer: Refund exceeds the order total" in refused.content
    assert final["messages"][-1].content == "Emailed Dana; the refund was refused."
    statuses = dict(Action.objects.values_list("tool", "status"))
    assert statuses == {"send_email": "executed", "create_refund_request": "rejected"}

    # When the resumed node is replayed from the paused checkpoint
    paused_checkpoint = next(
        snapshot
        for snapshot in graph.get_state_history(config)
        if snapshot.next == ("tools",) and snapshot.interrupts
    )
    replayed = asyncio.run(run(None, paused_checkpoint.config))

    # Then no card is opened and nothing runs again: the recorded result answers
    assert Action.objects.count() == 2
    assert ledger_entries(ledger) == [{"tool": "send_email", **edited}]
    assert tool_messages(replayed)["call-1"].content == "Email sent to dana@example.com"
    assert tool_messages(replayed)["call-2"].status == "error"


@pytest.mark.parametrize("node", ["tool_node", "gated_tools"])
def test_injected_tool_call_id_tool__allowed__runs_at_once_and_its_command_lands(
    asgi_server, support_agent, tmp_path, node
):
    # Given a tool that takes its tool call id and answers with a Command, gated by the
    # interrupting node or wrapped for a plain ToolNode
    token = factories.make_token(support_agent)
    ledger = tmp_path / "ledger.jsonl"
    config = {"configurable": {"thread_id": f"ticket-4713-{node}"}}
    model = ScriptedChatModel(
        script=[
            turn(call("create_ticket_draft", {"title": "Late delivery"}, "call-7")),
            AIMessage(content="Drafted."),
        ]
    )
    with client_for(asgi_server.url, token) as client:
        tools = (
            tools_node(client, ledger)
            if node == "tool_node"
            else ToolNode(gate_tools(make_tools(ledger), client))
        )
        # When the model calls it (Airlock allows drafts)
        final = build_graph(model, tools, InMemorySaver()).invoke(START, config)

    # Then it ran once with its call id, and its ToolMessage reached the state
    assert "__interrupt__" not in final
    assert ledger_entries(ledger) == [
        {"tool": "create_ticket_draft", "title": "Late delivery", "tool_call_id": "call-7"}
    ]
    assert tool_messages(final)["call-7"].content == "Drafted ticket 'Late delivery'"
    action = Action.objects.get()
    assert (action.status, action.correlation_id) == ("executed", f"ticket-4713-{node}")
    assert Report.objects.get(action=action).result == "Drafted ticket 'Late delivery'"
