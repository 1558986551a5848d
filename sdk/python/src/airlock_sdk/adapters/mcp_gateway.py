"""An MCP gateway: an MCP server that proxies another MCP server's tools and gates every
call through Airlock, so any MCP client (an IDE, a desktop assistant, an agent framework)
gets human approval without code changes.

Command line (the client starts the gateway instead of the real server)::

    AIRLOCK_URL=http://127.0.0.1:8000 AIRLOCK_TOKEN=alk_... \\
        airlock-mcp-gateway -- python -m my_crm_mcp_server --flag
    # or: python -m airlock_sdk.adapters.mcp_gateway --upstream-url https://crm.example/mcp

In code (e.g. in-process, for tests)::

    gateway = AirlockGateway(upstream_server, AsyncAirlock(url, token))
    async with gateway.serve() as server, mcp.Client(server) as client:
        await client.call_tool("send_email", {...})   # waits for a decision

``tools/list`` returns the upstream tools unchanged. ``tools/call`` submits the tool name
(with ``prefix``) and arguments to Airlock and waits; when allowed or approved, it calls
the upstream tool with the approved (possibly edited) arguments and reports the result
(an upstream ``isError`` result is reported as ``failed``). Otherwise it answers with an
``isError`` result whose text says why (a reviewer's reason for a rejection)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.server import Server
from mcp.server.stdio import stdio_server

from airlock_sdk import gating
from airlock_sdk.adapters._common import async_client, message_for_model
from airlock_sdk.aio import AsyncAirlock
from airlock_sdk.client import Airlock
from airlock_sdk.errors import AirlockError

__all__ = ["AirlockGateway", "UpstreamToolError", "configure_logging", "main"]

logger = logging.getLogger("airlock_sdk.mcp_gateway")


class UpstreamToolError(Exception):
    """The upstream tool answered with ``isError``; reported to Airlock as ``failed``."""

    def __init__(self, result: types.CallToolResult) -> None:
        self.result = result
        super().__init__(_text_of(result) or "the upstream tool reported an error")


def _text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


def _for_report(result: types.CallToolResult) -> dict[str, Any]:
    out: dict[str, Any] = {"text": _text_of(result)[:20_000]}
    if result.structured_content is not None:
        out["structured"] = result.structured_content
    return out


def _refusal(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


class AirlockGateway:
    """Proxies ``upstream`` (anything ``mcp.Client`` accepts: a ``Server``/``MCPServer``
    in-process, ``StdioServerParameters``, a Streamable HTTP URL or a transport) and gates
    each tool call with ``client``.

    ``prefix`` is put before tool names sent to Airlock (e.g. ``"crm."``), so rules can tell
    gateways apart; ``per_tool`` maps an upstream tool name to gate options for it
    (``effect``, ``summary``, ``blast_radius``, ...); other keyword options apply to all."""

    def __init__(
        self,
        upstream: Any,
        client: Airlock | AsyncAirlock | None = None,
        *,
        name: str = "airlock-gateway",
        prefix: str = "",
        timeout: float | None = None,
        per_tool: dict[str, dict[str, Any]] | None = None,
        **options: Any,
    ) -> None:
        self.upstream = upstream
        self.client = client
        self.name = name
        self.prefix = prefix
        self.timeout = timeout
        self.per_tool = per_tool or {}
        self.options = options
        gating.make_spec("probe", None, timeout, options)  # refuse unknown options early

    def spec_for(self, tool: str) -> gating.GateSpec:
        options = {**self.options, **self.per_tool.get(tool, {})}
        effect = options.pop("effect", None)
        timeout = options.pop("timeout", self.timeout)
        return gating.make_spec(self.prefix + tool, effect, timeout, options)

    def build_server(self, upstream: Client) -> Server[Any]:
        """A low-level MCP server answering from the connected ``upstream`` client."""
        airlock = async_client(self.client)

        async def on_list_tools(
            ctx: Any, params: types.PaginatedRequestParams | None
        ) -> types.ListToolsResult:
            listing = await upstream.list_tools(cursor=params.cursor if params else None)
            return types.ListToolsResult(tools=listing.tools, next_cursor=listing.next_cursor)

        async def on_call_tool(ctx: Any, params: types.CallToolRequestParams) -> Any:
            tool = params.name
            arguments = dict(params.arguments or {})
            spec = self.spec_for(tool)

            async def run(approved: dict[str, Any]) -> types.CallToolResult:
                result = await upstream.call_tool(tool, approved)
                if result.is_error:
                    raise UpstreamToolError(result)
                return result

            # One log line per tool call, whatever its outcome.
            try:
                result = await gating.aexecute(
                    airlock, spec, arguments, run, report_result=_for_report
                )
            except AirlockError as exc:
                logger.info("%s: not run: %s", spec.tool, exc)
                return _refusal(message_for_model(spec.tool, exc))
            except UpstreamToolError as exc:
                logger.info("%s: ran; upstream answered an error (reported failed)", spec.tool)
                return exc.result
            except Exception as exc:
                logger.warning("%s: failed upstream (reported failed): %s", spec.tool, exc)
                raise
            logger.info("%s: ran (reported succeeded)", spec.tool)
            return result

        return Server(self.name, on_list_tools=on_list_tools, on_call_tool=on_call_tool)

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[Server[Any]]:
        """Connect to the upstream server and yield the gateway's MCP server."""
        async with Client(self.upstream) as upstream:
            yield self.build_server(upstream)

    async def run_stdio(self) -> None:
        """Serve MCP over this process's stdin/stdout until the client disconnects."""
        async with self.serve() as server, stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())


def configure_logging(level: int = logging.INFO) -> None:
    """The command line's log, on stderr (stdout carries MCP): one line per tool call.
    httpx logs every HTTP request at INFO — each long-poll of a call that waits for people
    — so it is held to warnings."""
    logging.basicConfig(level=level, stream=sys.stderr, format="%(name)s: %(message)s")
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="airlock-mcp-gateway",
        description="Serve an MCP server's tools over stdio, gating every call through Airlock.",
    )
    parser.add_argument("--url", default=os.environ.get("AIRLOCK_URL"), help="Airlock URL")
    parser.add_argument(
        "--token",
        default=os.environ.get("AIRLOCK_TOKEN"),
        help="agent token (better: the AIRLOCK_TOKEN environment variable)",
    )
    parser.add_argument("--prefix", default="", help="prefix for tool names sent to Airlock")
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds to wait for a decision"
    )
    parser.add_argument("--name", default="airlock-gateway", help="this server's MCP name")
    parser.add_argument("--upstream-url", help="a Streamable HTTP MCP server to proxy")
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]: a stdio MCP server"
    )
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if bool(command) == bool(args.upstream_url):
        parser.error("give exactly one upstream: --upstream-url URL or -- COMMAND [ARGS...]")
    # The upstream server gets this environment, minus the agent's Airlock token.
    env = {k: v for k, v in os.environ.items() if k != "AIRLOCK_TOKEN"}
    upstream: Any = args.upstream_url or StdioServerParameters(
        command=command[0], args=command[1:], env=env
    )
    configure_logging()
    client = AsyncAirlock(args.url, args.token)
    gateway = AirlockGateway(
        upstream, client, name=args.name, prefix=args.prefix, timeout=args.timeout
    )
    asyncio.run(gateway.run_stdio())


if __name__ == "__main__":
    main()
