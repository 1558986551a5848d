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
``isError`` result whose text says why (a reviewer's reason for a rejection).

While a call waits it sends progress notifications (``--progress-every`` seconds; clients
whose request timeout resets on progress keep waiting) and, to a client that supports
URL-mode elicitation, the card's link (an ``input_required`` round on 2026-07-28
connections, an ``elicitation/create`` request on older ones). A client that cancels the
call or disconnects withdraws the action (the withdraw is shielded from the cancelled
scope), so no card is left for people to approve in vain."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.server import Server
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.stdio import stdio_server

from airlock_sdk import gating
from airlock_sdk.adapters._common import (
    async_client,
    correlation_for,
    message_for_model,
    recorded_text,
    replay_key,
)
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


def _session_id(ctx: Any) -> str | None:
    """The transport's session id of the request's connection (Streamable HTTP), if any."""
    connection = getattr(getattr(ctx, "session", None), "_connection", None)
    return getattr(connection, "session_id", None)


STATE_PREFIX = "airlock-key:"


def _supports_url_elicitation(session: Any) -> bool:
    capabilities = getattr(session, "client_capabilities", None)
    elicitation = getattr(capabilities, "elicitation", None)
    return getattr(elicitation, "url", None) is not None


def _elicits_by_input_round(session: Any) -> bool:
    """A client that takes URL elicitations on a connection where the server cannot send
    it requests mid-call (2026-07-28): the card goes out as an ``input_required`` round."""
    return _supports_url_elicitation(session) and not getattr(session, "can_send_request", True)


def _waiting_message(airlock: AsyncAirlock, decision: Any) -> tuple[str, str]:
    card = airlock.config.url + str(decision.links.get("card") or "")
    return card, f"Waiting for a human decision on Airlock (action {decision.id}): {card}"


def _card_round(airlock: AsyncAirlock, decision: Any, key: str) -> types.InputRequiredResult:
    """Ask the client to show the card's URL; its retry (with this state) waits for the
    decision, sending progress."""
    card, message = _waiting_message(airlock, decision)
    return types.InputRequiredResult(
        input_requests={
            "airlock_card": types.ElicitRequest(
                params=types.ElicitRequestURLParams(message=message, url=card)
            )
        },
        request_state=STATE_PREFIX + key,
    )


async def _elicit(session: Any, message: str, url: str, elicitation_id: str, ctx: Any) -> None:
    """Point the person at the card (the answer does not decide anything: the card does)."""
    try:
        await session.elicit_url(
            message, url, elicitation_id, related_request_id=getattr(ctx, "request_id", None)
        )
    except Exception as exc:
        logger.info("airlock: the client did not take the card's link: %s", exc)


def _text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


def _for_report(result: types.CallToolResult) -> dict[str, Any]:
    out: dict[str, Any] = {"text": _text_of(result)[:20_000]}
    if result.structured_content is not None:
        out["structured"] = result.structured_content
    return out


def _replayed(decision: Any) -> types.CallToolResult:
    """A call that already ran (the same session and request id again): the recorded
    result, never a second upstream call."""
    if decision.status == "failed":
        error = (decision.execution or {}).get("error") or "the upstream tool failed"
        return _refusal(f"Airlock: this call already ran and failed: {error}")
    recorded = decision.result
    if not isinstance(recorded, dict):
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=recorded_text(decision))]
        )
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=str(recorded.get("text") or ""))],
        structured_content=recorded.get("structured"),
    )


def _refusal(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


class AirlockGateway:
    """Proxies ``upstream`` (anything ``mcp.Client`` accepts: a ``Server``/``MCPServer``
    in-process, ``StdioServerParameters``, a Streamable HTTP URL or a transport) and gates
    each tool call with ``client``.

    ``prefix`` is put before tool names sent to Airlock (e.g. ``"crm."``), so rules can tell
    gateways apart; ``per_tool`` maps an upstream tool name to gate options for it
    (``effect``, ``summary``, ``blast_radius``, ...); other keyword options apply to all.

    While a call waits for people, the gateway sends the client a progress notification
    every ``progress_every`` seconds (when the client asked for progress), so clients with
    request timeouts that reset on progress keep waiting, and, where the client supports
    URL-mode elicitation, one elicitation pointing at the card. A client that cancels the
    call (or disconnects) withdraws the action."""

    def __init__(
        self,
        upstream: Any,
        client: Airlock | AsyncAirlock | None = None,
        *,
        name: str = "airlock-gateway",
        prefix: str = "",
        timeout: float | None = None,
        per_tool: dict[str, dict[str, Any]] | None = None,
        progress_every: float = 15.0,
        **options: Any,
    ) -> None:
        self.upstream = upstream
        self.progress_every = max(0.05, progress_every)
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
        # This server's connection, when the transport names none (stdio, in-process).
        local_session = uuid.uuid4().hex

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

            session = _session_id(ctx) or local_session
            # A retry after the card's URL elicitation carries the first round's key (in
            # request state the server sealed), so it finds the same action.
            state = params.request_state or ""
            key = state.removeprefix(STATE_PREFIX) if state.startswith(STATE_PREFIX) else None
            fields = {
                "idempotency_key": key
                or replay_key("mcp", session, getattr(ctx, "request_id", None)),
                "correlation_id": correlation_for(session),
            }
            # One log line per tool call, whatever its outcome.
            try:
                if not state and _elicits_by_input_round(ctx.session):
                    decision = await airlock.request(
                        spec.tool, arguments, **fields, **spec.request_fields(arguments)
                    )
                    if decision.pending:
                        logger.info("%s: waiting for people (card #%s)", spec.tool, decision.id)
                        return _card_round(airlock, decision, fields["idempotency_key"])
                result = await gating.aexecute(
                    airlock,
                    spec,
                    arguments,
                    run,
                    report_result=_for_report,
                    replayed=_replayed,
                    while_pending=lambda decision: self.keep_informed(ctx, decision, airlock),
                    **fields,
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

        server: Server[Any] = Server(
            self.name, on_list_tools=on_list_tools, on_call_tool=on_call_tool
        )
        # Seals the request state of the card's elicitation round (2026-07-28 clients).
        server.middleware.append(
            RequestStateBoundary(RequestStateSecurity.ephemeral(), default_audience=self.name)
        )
        return server

    async def keep_informed(self, ctx: Any, decision: Any, airlock: AsyncAirlock) -> None:
        """While ``decision`` is pending: progress notifications every ``progress_every``
        seconds and, where the client supports it, a URL-mode elicitation of the card."""
        session = ctx.session
        card, message = _waiting_message(airlock, decision)
        elicitation_id = f"airlock-action-{decision.id}"
        elicited = False
        try:
            async with anyio.create_task_group() as group:
                if _supports_url_elicitation(session) and session.can_send_request:
                    elicited = True
                    group.start_soon(_elicit, session, message, card, elicitation_id, ctx)
                started = time.monotonic()
                while True:
                    await session.report_progress(
                        round(time.monotonic() - started, 1), None, message
                    )
                    await anyio.sleep(self.progress_every)
        finally:
            if elicited:
                with anyio.move_on_after(5, shield=True), contextlib.suppress(Exception):
                    await session.send_elicit_complete(
                        elicitation_id, related_request_id=getattr(ctx, "request_id", None)
                    )

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
    parser.add_argument(
        "--progress-every",
        type=float,
        default=15.0,
        help="seconds between progress notifications while a call waits for people",
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
        upstream,
        client,
        name=args.name,
        prefix=args.prefix,
        timeout=args.timeout,
        progress_every=args.progress_every,
    )
    asyncio.run(gateway.run_stdio())


if __name__ == "__main__":
    main()
