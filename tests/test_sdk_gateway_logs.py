"""The MCP gateway's log, as its operator reads it: one line per tool call (ran, or not run
and why), not one per HTTP request to Airlock — a call that waits for people long-polls
many times."""

from __future__ import annotations

import asyncio
import logging

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

import tests.sdk_path  # noqa: F401
from tests import factories
from tests.sdk_support import Decider, approve_with, reject_with

# isort: split
from airlock_sdk import AsyncAirlock, RetryPolicy
from airlock_sdk.adapters.mcp_gateway import AirlockGateway, configure_logging

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = {"to": "dana@example.com", "subject": "Your refund", "body": "Refunded"}


@pytest.fixture
def gateway_logging(caplog):
    """The command line's logging setup, undone afterwards."""
    chatty = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    caplog.set_level(logging.INFO)
    configure_logging()
    yield caplog
    for name, level in chatty.items():
        logging.getLogger(name).setLevel(level)


def upstream() -> MCPServer:
    server = MCPServer("crm")

    @server.tool()
    def get_order_status(order_id: str) -> str:
        """Look up an order."""
        return f"{order_id}: delivered"

    @server.tool()
    def send_email(to: str, subject: str, body: str) -> str:
        """Send an email."""
        return f"Email sent to {to}"

    return server


def test_gateway_log__one_line_per_tool_call__no_http_request_lines(
    asgi_server, support_agent, reviewer, gateway_logging
):
    # Given the gateway, logging as its command line does, and an agent whose writes wait
    # for people (polling every second while they think)
    client = AsyncAirlock(
        asgi_server.url,
        factories.make_token(support_agent),
        retry=RetryPolicy(attempts=3, backoff=0.05),
        poll_seconds=1,
    )
    gateway = AirlockGateway(upstream(), client)

    async def scenario() -> None:
        async with gateway.serve() as server, Client(server) as session:
            await session.call_tool("get_order_status", {"order_id": "ORD-1"})
            await session.call_tool("send_email", EMAIL)
            await session.call_tool("send_email", {**EMAIL, "subject": "Again"})

    # When three calls go through: allowed, approved after a while, rejected
    decisions = [
        ("send_email", approve_with(reviewer)),
        ("send_email", reject_with(reviewer, "Once is enough")),
    ]
    with Decider(decisions, think=2.5):
        asyncio.run(scenario())
    # Then the log has one line per call, saying what happened, and no HTTP chatter
    lines = [
        record.getMessage()
        for record in gateway_logging.records
        if record.levelno >= logging.INFO and record.name.startswith("airlock_sdk")
    ]
    assert lines == [
        "get_order_status: ran (reported succeeded)",
        "send_email: ran (reported succeeded)",
        lines[2],
    ]
    assert lines[2].startswith("send_email: not run:") and "Once is enough" in lines[2]
    assert not [r for r in gateway_logging.records if r.name.startswith(("httpx", "httpcore"))]
