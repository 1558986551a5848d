"""The OpenAI Agents SDK adapter in a real ``Runner.run`` loop driven by the SDK's own
scripted model (no network), against the real server: one call approved (runs with the
reviewer's edit), one rejected (the model's next input carries the reason), one that
raises (reported as failed)."""

from __future__ import annotations

import asyncio

import pytest
from agents import Agent, RunConfig, Runner
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call

import tests.sdk_path  # noqa: F401
from approvals.models import Action, Report
from tests import factories
from tests.sdk_support import Decider, approve_with, reject_with

# isort: split
from airlock_sdk import AsyncAirlock, RetryPolicy
from airlock_sdk.adapters.openai_agents import airlock_function_tool

pytestmark = pytest.mark.django_db(transaction=True)


def test_agents_runner__approved_runs_edited__rejected_reason_reaches_model(
    asgi_server, support_agent, reviewer
):
    token = factories.make_token(support_agent)
    client = AsyncAirlock(
        asgi_server.url, token, retry=RetryPolicy(attempts=3, backoff=0.05), poll_seconds=5
    )
    ran: list[tuple] = []

    @airlock_function_tool(client=client, effect="write", summary=lambda a: f"Email {a['to']}")
    def send_email(to: str, subject: str, body: str) -> str:
        """Send an email to a customer."""
        ran.append(("send_email", to, body))
        return f"Email sent to {to}"

    @airlock_function_tool(
        client=client,
        effect="write",
        blast_radius=lambda a: {"amount": {"value": a["amount"], "currency": "EUR"}},
    )
    def create_refund_request(order_id: str, amount: float) -> str:
        """Open a refund request for an order."""
        ran.append(("create_refund_request", order_id, amount))
        return "refund opened"

    @airlock_function_tool(client=client, effect="read")
    def get_order_status(order_id: str) -> str:
        """Look up an order."""
        raise LookupError(f"no order {order_id}")

    email = {"to": "dana@example.com", "subject": "Your refund", "body": "Refunded 42.18 EUR"}
    model = ScriptedModel(
        [
            ModelStep(output=[function_call("get_order_status", {"order_id": "X"}, call_id="c0")]),
            ModelStep(output=[function_call("send_email", email, call_id="c1")]),
            ModelStep(
                output=[
                    function_call(
                        "create_refund_request",
                        {"order_id": "ORD-7711", "amount": 4200.0},
                        call_id="c2",
                    )
                ]
            ),
            ModelStep(output=[assistant_message("Emailed Dana; the refund was refused.")]),
        ]
    )
    agent = Agent(
        name="Support",
        instructions="Help customers.",
        model=model,
        tools=[get_order_status, send_email, create_refund_request],
    )
    edited = {**email, "body": "We refunded 42.18 EUR to your card."}
    decisions = [
        ("send_email", approve_with(reviewer, edited)),
        ("create_refund_request", reject_with(reviewer, "Refund exceeds the order total")),
    ]
    with Decider(decisions):
        result = asyncio.run(
            Runner.run(
                agent, "Dana's order arrived late.", run_config=RunConfig(tracing_disabled=True)
            )
        )

    assert result.final_output == "Emailed Dana; the refund was refused."
    assert ran == [("send_email", "dana@example.com", edited["body"])]
    outputs = {
        item["call_id"]: item["output"]
        for item in model.calls[-1].input
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    }
    assert outputs["c1"] == "Email sent to dana@example.com"
    assert "rejected by a human reviewer: Refund exceeds the order total" in outputs["c2"]
    assert outputs["c0"] == "An error occurred while running the tool. Please try again."
    statuses = dict(Action.objects.values_list("tool", "status"))
    assert statuses == {
        "get_order_status": "failed",
        "send_email": "executed",
        "create_refund_request": "rejected",
    }
    assert Action.objects.get(tool="send_email").correlation_id == "c1"
    failed = Report.objects.get(action__tool="get_order_status")
    assert "LookupError: no order X" in failed.error
