"""The OpenAI Agents SDK adapter in a real ``Runner.run`` loop driven by the SDK's own
scripted model (no network), against the real server: one call approved (runs with the
reviewer's edit), one rejected (the model's next input carries the reason), one that
raises (reported as failed)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from agents import Agent, RunConfig, Runner
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call

import tests.sdk_path  # noqa: F401
from approvals import actions
from approvals.models import Action, Report
from tests import factories
from tests.openai_agents_agent import RUN_CONFIG, build_agent, client_for, ledger_entries
from tests.sdk_support import Decider, approve_with, reject_with
from tests.servers import ROOT

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


@pytest.mark.multiprocess
def test_agents_interrupt__paused_run_serialized__resumed_in_a_new_process__ran_once(
    asgi_server, support_agent, reviewer, tmp_path
):
    # Given tools that pause the run with the SDK's own approval interruption
    token = factories.make_token(support_agent)
    ledger, saved = tmp_path / "ledger.jsonl", tmp_path / "state.json"
    email = {"to": "dana@example.com", "subject": "Your refund", "body": "Refunded 42.18 EUR"}
    refund = {"order_id": "ORD-7711", "amount": 4200.0}
    model = ScriptedModel(
        [
            ModelStep(
                output=[
                    function_call("send_email", email, call_id="c1"),
                    function_call("create_refund_request", refund, call_id="c2"),
                    function_call("approve_refund", {"order_id": "ORD-7711"}, call_id="c3"),
                ]
            ),
        ]
    )
    agent = build_agent(client_for(asgi_server.url, token), ledger, model)

    # When the run reaches the gated calls and the paused state is saved as JSON
    async def first_run() -> list:
        result = await Runner.run(
            agent,
            "Dana's order.",
            context={"airlock_run_id": "ticket-4711"},
            run_config=RUN_CONFIG,
        )
        saved.write_text(result.to_state().to_string())
        return result.interruptions

    interruptions = asyncio.run(first_run())

    # Then the run paused on the two pending calls; the forbidden one is no interruption
    assert sorted(item.tool_name for item in interruptions) == [
        "create_refund_request",
        "send_email",
    ]
    assert ledger_entries(ledger) == []
    pending = dict(Action.objects.filter(status="pending").values_list("tool", "pk"))
    assert set(pending) == {"send_email", "create_refund_request"}

    # When people decide and a new agent process restores the state and resumes
    edited = {**email, "body": "We refunded 42.18 EUR to your card."}
    actions.approve(action_id=pending["send_email"], user=reviewer, arguments=edited)
    actions.reject(
        action_id=pending["create_refund_request"],
        user=reviewer,
        comment="Refund exceeds the order total",
    )
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.openai_agents_agent",
            *("--state", str(saved), "--ledger", str(ledger), "--url", asgi_server.url),
            *("--token", token, "--final", "Emailed Dana."),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    outcome = json.loads(resumed.stdout)

    # Then the approved call ran once with the reviewer's arguments and was reported; the
    # rejected and the denied ones never ran, and the model read why
    assert outcome["still_pending"] == [] and outcome["final_output"] == "Emailed Dana."
    assert ledger_entries(ledger) == [["send_email", "dana@example.com", edited["body"]]]
    outputs = outcome["outputs"]
    assert outputs["c1"] == "Email sent to dana@example.com"
    assert "rejected by a human reviewer: Refund exceeds the order total" in outputs["c2"]
    assert "denied" in outputs["c3"]
    statuses = dict(Action.objects.values_list("tool", "status"))
    assert statuses == {
        "send_email": "executed",
        "create_refund_request": "rejected",
        "approve_refund": "denied",
    }
    email_action = Action.objects.get(tool="send_email")
    assert email_action.correlation_id == "ticket-4711"
    assert Report.objects.get(action=email_action).result == "Email sent to dana@example.com"
