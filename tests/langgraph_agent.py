"""A small LangGraph support agent for the adapter tests: a scripted chat model, tools that
write what ran to a ledger file (so runs in another process count too) and a graph whose
tools node is Airlock's. Run as a script it is the agent process that resumes a paused
thread from a SQLite checkpointer after a restart::

    python -m tests.langgraph_agent --db CHECKPOINTS --ledger FILE --url URL --token TOKEN \\
        --thread THREAD --final "text of the model's last answer"

It prints the thread's messages as JSON. No Django here: it is the agent, not the server."""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, InjectedToolCallId, tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import tools_condition
from langgraph.types import Command
from pydantic import Field

import tests.sdk_path  # noqa: F401

# isort: split
from airlock_sdk import Airlock, AsyncAirlock, RetryPolicy
from airlock_sdk.adapters.langchain import AirlockToolNode


class ScriptedChatModel(BaseChatModel):
    """Answers with the scripted messages in order; remembers what it was shown."""

    script: list[AIMessage]
    seen: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        return ChatResult(generations=[ChatGeneration(message=self.script[len(self.seen) - 1])])

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self


def call(name: str, args: dict, call_id: str) -> dict:
    return {"name": name, "args": args, "id": call_id}


def turn(*calls: dict) -> AIMessage:
    return AIMessage(content="", tool_calls=list(calls))


def make_tools(ledger: Path) -> list[BaseTool]:
    """send_email and create_refund_request (need approval), create_ticket_draft (allowed,
    takes the tool call id and answers with a ``Command``); each run appends to ``ledger``."""

    def record(entry: dict) -> None:
        with ledger.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    @tool
    def send_email(to: str, subject: str, body: str) -> str:
        """Send an email to a customer."""
        record({"tool": "send_email", "to": to, "subject": subject, "body": body})
        return f"Email sent to {to}"

    @tool
    def create_refund_request(order_id: str, amount: float) -> str:
        """Open a refund request for an order."""
        record({"tool": "create_refund_request", "order_id": order_id, "amount": amount})
        return "refund opened"

    @tool
    def create_ticket_draft(
        title: str, tool_call_id: Annotated[str, InjectedToolCallId]
    ) -> Command:
        """Draft a support ticket."""
        record({"tool": "create_ticket_draft", "title": title, "tool_call_id": tool_call_id})
        message = ToolMessage(f"Drafted ticket {title!r}", tool_call_id=tool_call_id)
        return Command(update={"messages": [message]})

    return [send_email, create_refund_request, create_ticket_draft]


PER_TOOL = {
    "send_email": {"effect": "write", "summary": lambda a: f"Email {a['to']}"},
    "create_refund_request": {
        "effect": "write",
        "blast_radius": lambda a: {"amount": {"value": a["amount"], "currency": "EUR"}},
    },
    "create_ticket_draft": {"effect": "draft"},
}


def tools_node(client: Airlock | AsyncAirlock, ledger: Path, **options: Any) -> AirlockToolNode:
    return AirlockToolNode(make_tools(ledger), client, per_tool=PER_TOOL, **options)


def build_graph(model: ScriptedChatModel, node: Any, checkpointer: Any = None) -> Any:
    def agent(state: MessagesState) -> dict:
        return {"messages": [model.invoke(state["messages"])]}

    async def aagent(state: MessagesState) -> dict:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", node)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=checkpointer)


def sqlite_checkpointer(path: Path) -> SqliteSaver:
    return SqliteSaver(sqlite3.connect(path, check_same_thread=False))


def client_for(url: str, token: str) -> Airlock:
    return Airlock(url, token, retry=RetryPolicy(attempts=3, backoff=0.05), poll_seconds=5)


def ledger_entries(ledger: Path) -> list[dict]:
    if not ledger.exists():
        return []
    return [json.loads(line) for line in ledger.read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--db", "--ledger", "--url", "--token", "--thread", "--final"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    model = ScriptedChatModel(script=[AIMessage(content=args.final)])
    with client_for(args.url, args.token) as client:
        graph = build_graph(
            model, tools_node(client, Path(args.ledger)), sqlite_checkpointer(Path(args.db))
        )
        config = {"configurable": {"thread_id": args.thread}}
        state = graph.invoke(Command(resume="decided"), config)
    print(
        json.dumps(
            [
                {
                    "type": m.type,
                    "content": m.content,
                    "status": getattr(m, "status", None),
                    "tool_call_id": getattr(m, "tool_call_id", None),
                }
                for m in state["messages"]
            ]
        )
    )


if __name__ == "__main__":
    main()
