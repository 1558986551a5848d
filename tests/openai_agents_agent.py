"""A small OpenAI Agents SDK support agent for the adapter tests: tools gated in interrupt
mode that write what ran to a ledger file (so runs in another process count too) and the
SDK's scripted model. Run as a script it is the agent process that restores a paused run
from its serialized ``RunState``, applies Airlock's verdicts and resumes::

    python -m tests.openai_agents_agent --state FILE --ledger FILE --url URL --token TOKEN \\
        --final "text of the model's last answer"

It prints the final output and the tool outputs the model read, as JSON. No Django here."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from agents import Agent, RunConfig, Runner, RunState
from agents.testing import ModelStep, ScriptedModel, assistant_message

import tests.sdk_path  # noqa: F401

# isort: split
from airlock_sdk import AsyncAirlock, RetryPolicy
from airlock_sdk.adapters.openai_agents import airlock_function_tool, apply_verdicts

RUN_CONFIG = RunConfig(tracing_disabled=True)


def client_for(url: str, token: str) -> AsyncAirlock:
    return AsyncAirlock(url, token, retry=RetryPolicy(attempts=3, backoff=0.05), poll_seconds=5)


def build_agent(client: AsyncAirlock, ledger: Path, model: ScriptedModel) -> Agent:
    """send_email and create_refund_request (need approval), approve_refund (forbidden)."""

    def record(*entry: object) -> None:
        with ledger.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    @airlock_function_tool(
        client=client, effect="write", interrupt=True, summary=lambda a: f"Email {a['to']}"
    )
    def send_email(to: str, subject: str, body: str) -> str:
        """Send an email to a customer."""
        record("send_email", to, body)
        return f"Email sent to {to}"

    @airlock_function_tool(client=client, effect="write", interrupt=True)
    def create_refund_request(order_id: str, amount: float) -> str:
        """Open a refund request for an order."""
        record("create_refund_request", order_id, amount)
        return "refund opened"

    @airlock_function_tool(client=client, effect="write", interrupt=True)
    def approve_refund(order_id: str) -> str:
        """Approve a refund."""
        record("approve_refund", order_id)
        return "approved"

    tools = [send_email, create_refund_request, approve_refund]
    return Agent(name="Support", instructions="Help.", model=model, tools=tools)


def ledger_entries(ledger: Path) -> list[list]:
    if not ledger.exists():
        return []
    return [json.loads(line) for line in ledger.read_text().splitlines()]


async def resume(args: argparse.Namespace) -> dict:
    model = ScriptedModel([ModelStep(output=[assistant_message(args.final)])])
    agent = build_agent(client_for(args.url, args.token), Path(args.ledger), model)
    state = await RunState.from_string(agent, Path(args.state).read_text())
    still_pending = await apply_verdicts(state)
    result = await Runner.run(agent, state, run_config=RUN_CONFIG)
    outputs = {
        item["call_id"]: item["output"]
        for item in model.calls[-1].input
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    }
    return {
        "still_pending": [d.id for d in still_pending],
        "final_output": result.final_output,
        "outputs": outputs,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--state", "--ledger", "--url", "--token", "--final"):
        parser.add_argument(name, required=True)
    print(json.dumps(asyncio.run(resume(parser.parse_args()))))


if __name__ == "__main__":
    main()
