"""The MCP gateway with the real ``mcp`` package against the real server: an MCP client
session lists the proxied tools, a gated call waits for a person's approval and then runs
upstream with the approved arguments, a rejected call answers with the reason. Once
in-process, once as the command-line gateway over stdio in front of a stdio server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import anyio
import mcp_types as types
import pytest
from django.db import connection
from mcp import Client, StdioServerParameters
from mcp.server.mcpserver import MCPServer

import tests.sdk_path  # noqa: F401
from approvals import actions
from approvals.models import Action, Report
from audit.models import AuditEvent
from tests import factories
from tests.sdk_path import SDK_SRC
from tests.sdk_support import Decider, approve_with, reject_with

# isort: split
from airlock_sdk import AsyncAirlock, RetryPolicy
from airlock_sdk.adapters.mcp_gateway import AirlockGateway

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = {"to": "dana@example.com", "subject": "Your refund", "body": "Refunded 42.18 EUR"}


def crm_server(sent: list) -> MCPServer:
    server = MCPServer("crm")

    @server.tool()
    def get_order_status(order_id: str) -> str:
        """Look up an order's delivery status."""
        return f"{order_id}: delivered 8 days late"

    @server.tool()
    def send_email(to: str, subject: str, body: str) -> str:
        """Send an email to a customer."""
        sent.append({"to": to, "subject": subject, "body": body})
        return f"Email sent to {to}"

    return server


def texts(result) -> str:
    return "\n".join(block.text for block in result.content)


def test_gateway_in_process__lists_tools__approved_call_waits_and_runs__rejected_explains(
    asgi_server, support_agent, reviewer
):
    sent: list[dict] = []
    approved_at: list[float] = []
    token = factories.make_token(support_agent)
    client = AsyncAirlock(
        asgi_server.url, token, retry=RetryPolicy(attempts=3, backoff=0.05), poll_seconds=5
    )
    gateway = AirlockGateway(
        crm_server(sent),
        client,
        per_tool={"send_email": {"effect": "write", "summary": lambda a: f"Email {a['to']}"}},
    )

    async def scenario() -> tuple:
        async with gateway.serve() as server, Client(server) as session:
            listing = await session.list_tools()
            status = await session.call_tool("get_order_status", {"order_id": "ORD-7711"})
            approved = await session.call_tool("send_email", EMAIL)
            returned_at = time.monotonic()
            rejected = await session.call_tool("send_email", {**EMAIL, "subject": "Again"})
            return listing, status, approved, returned_at, rejected

    def approve(action: Action) -> None:
        approve_with(reviewer, {**EMAIL, "body": "We refunded 42.18 EUR."})(action)
        approved_at.append(time.monotonic())

    decisions = [("send_email", approve), ("send_email", reject_with(reviewer, "Once is enough"))]
    with Decider(decisions):
        listing, status, approved, returned_at, rejected = asyncio.run(scenario())

    assert sorted(tool.name for tool in listing.tools) == ["get_order_status", "send_email"]
    assert not status.is_error and texts(status) == "ORD-7711: delivered 8 days late"
    assert not approved.is_error and texts(approved) == "Email sent to dana@example.com"
    assert returned_at >= approved_at[0]  # the call waited for the person
    assert sent == [{**EMAIL, "body": "We refunded 42.18 EUR."}]
    assert rejected.is_error
    assert "rejected by a human reviewer: Once is enough" in texts(rejected)
    assert list(Action.objects.order_by("id").values_list("tool", "status")) == [
        ("get_order_status", "executed"),
        ("send_email", "executed"),
        ("send_email", "rejected"),
    ]
    report = Report.objects.get(action__status="executed", action__tool="send_email")
    assert report.result["text"] == "Email sent to dana@example.com"


UPSTREAM = textwrap.dedent(
    """
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("crm")

    @server.tool()
    def send_email(to: str, subject: str, body: str) -> str:
        \"\"\"Send an email to a customer.\"\"\"
        return f"Email sent to {to}: {body}"

    server.run()
    """
)


def _in_thread(fn):
    """Run ``fn`` (Django ORM) in a worker thread of the event loop, closing its connection."""

    def run():
        try:
            return fn()
        finally:
            connection.close()

    return anyio.to_thread.run_sync(run)


@pytest.mark.multiprocess
def test_gateway_command_line_over_stdio__progress_and_card_while_waiting__cancel_withdraws(
    asgi_server, support_agent, reviewer, tmp_path
):
    # Given a client that accepts URL elicitations, talking over stdio to the command-line
    # gateway in front of a stdio upstream server
    upstream = tmp_path / "crm_server.py"
    upstream.write_text(UPSTREAM)
    token = factories.make_token(support_agent)
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            *("-m", "airlock_sdk.adapters.mcp_gateway", "--url", asgi_server.url),
            *("--progress-every", "0.2", "--", sys.executable, str(upstream)),
        ],
        env={"PYTHONPATH": str(SDK_SRC), "AIRLOCK_TOKEN": token},
    )
    elicited: list[str] = []
    progress: list[list[str]] = [[], []]

    async def on_elicitation(context, params):
        elicited.append(params.url)
        return types.ElicitResult(action="accept")

    def approve_pending() -> None:
        actions.approve(action_id=Action.objects.get(status="pending").pk, user=reviewer)

    async def scenario() -> tuple:
        async with Client(params, elicitation_callback=on_elicitation) as session:
            listing = await session.list_tools()
            results: dict = {}
            for index in (0, 1):
                heard = anyio.Event()

                async def on_progress(value, total, message, index=index, heard=heard):
                    progress[index].append(message)
                    heard.set()

                async def call(index=index, on_progress=on_progress):
                    with anyio.CancelScope() as scope:
                        results[f"scope{index}"] = scope
                        results[index] = await session.call_tool(
                            "send_email", EMAIL, progress_callback=on_progress
                        )

                async with anyio.create_task_group() as group:
                    group.start_soon(call)
                    # When the call is waiting: progress arrives (then people approve the
                    # first call; the client cancels the second)
                    with anyio.fail_after(120):
                        await heard.wait()
                    if index == 0:
                        await _in_thread(approve_pending)
                    else:
                        results["scope1"].cancel()
            # Then the cancelled call's action is withdrawn
            with anyio.fail_after(60):
                while await _in_thread(lambda: Action.objects.order_by("id").last().status) != (
                    "cancelled"
                ):
                    await anyio.sleep(0.1)
            return listing, results.get(0), results.get(1)

    listing, approved, cancelled = asyncio.run(scenario())

    first, second = Action.objects.order_by("id")
    card = f"{asgi_server.url}/actions/{first.pk}"
    assert [tool.name for tool in listing.tools] == ["send_email"]
    assert card in progress[0][0] and f"/actions/{second.pk}" in progress[1][0]
    assert not approved.is_error
    assert texts(approved) == "Email sent to dana@example.com: Refunded 42.18 EUR"
    assert cancelled is None
    assert (first.status, second.status) == ("executed", "cancelled")
    assert elicited[0] == card


# An MCP client in its own process: it calls send_email through the command-line gateway
# (which it starts over stdio, as an IDE would) and waits for the answer.
CLIENT = textwrap.dedent(
    """
    import asyncio, os, sys
    from mcp import Client, StdioServerParameters

    async def main():
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "airlock_sdk.adapters.mcp_gateway", "--url", sys.argv[1],
                  "--progress-every", "0.2", "--", sys.executable, sys.argv[2]],
            env={name: os.environ[name] for name in ("PYTHONPATH", "AIRLOCK_TOKEN")},
        )
        async with Client(params) as session:
            result = await session.call_tool(
                "send_email", {"to": "dana@example.com", "subject": "Hi", "body": "Refunded"}
            )
            print("ANSWERED", result, flush=True)

    asyncio.run(main())
    """
)


@pytest.mark.multiprocess
def test_gateway_command_line_over_stdio__client_killed_while_waiting__action_withdrawn(
    asgi_server, support_agent, tmp_path
):
    # Given a real MCP client process whose call waits in the command-line gateway
    upstream = tmp_path / "crm_server.py"
    upstream.write_text(UPSTREAM)
    token = factories.make_token(support_agent)
    env = {**os.environ, "PYTHONPATH": str(SDK_SRC), "AIRLOCK_TOKEN": token}
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, asgi_server.url, str(upstream)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the gateway and upstream are in it
    )
    try:

        def card() -> Action | None:
            assert client.poll() is None, client.communicate()[0]  # still waiting
            return Action.objects.filter(tool="send_email").first()

        action = wait_for(card, "the gateway's card")
        assert action.status == "pending"
        # When the client dies without a word: the gateway's stdin is closed under it
        client.kill()
        output, _ = client.communicate(timeout=60)
        # Then the gateway withdraws the action (shielded from the cancelled call)
        wait_for(
            lambda: Action.objects.filter(pk=action.pk, status="cancelled").exists(),
            "the action to be withdrawn",
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(client.pid, signal.SIGKILL)  # whatever of the group is still alive
        client.wait(timeout=60)
    assert "ANSWERED" not in output
    action.refresh_from_db()
    assert action.feedback == "Withdrawn by the agent."
    assert AuditEvent.objects.filter(verb="action.withdrawn", target_id=str(action.pk)).exists()


def wait_for(condition, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)  # polling the database for what the processes did
    raise AssertionError(f"timed out waiting for {what}")
