"""The MCP gateway with the real ``mcp`` package against the real server: an MCP client
session lists the proxied tools, a gated call waits for a person's approval and then runs
upstream with the approved arguments, a rejected call answers with the reason. Once
in-process, once as the command-line gateway over stdio in front of a stdio server."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time

import pytest
from mcp import Client, StdioServerParameters
from mcp.server.mcpserver import MCPServer

import tests.sdk_path  # noqa: F401
from approvals.models import Action, Report
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


@pytest.mark.multiprocess
def test_gateway_command_line_over_stdio__gated_call_waits_for_approval(
    asgi_server, support_agent, reviewer, tmp_path
):
    upstream = tmp_path / "crm_server.py"
    upstream.write_text(UPSTREAM)
    token = factories.make_token(support_agent)
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "airlock_sdk.adapters.mcp_gateway",
            "--url",
            asgi_server.url,
            "--",
            sys.executable,
            str(upstream),
        ],
        env={"PYTHONPATH": str(SDK_SRC), "AIRLOCK_TOKEN": token},
    )

    async def scenario() -> tuple:
        async with Client(params) as session:
            listing = await session.list_tools()
            result = await session.call_tool("send_email", EMAIL)
            return listing, result

    with Decider([("send_email", approve_with(reviewer))]):
        listing, result = asyncio.run(scenario())
    assert [tool.name for tool in listing.tools] == ["send_email"]
    assert not result.is_error
    assert texts(result) == "Email sent to dana@example.com: Refunded 42.18 EUR"
    assert Action.objects.get().status == "executed"
