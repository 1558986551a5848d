"""LangChain / LangGraph: gate tools through Airlock the way LangGraph pauses.

Interrupt mode (servers, anything that restarts)::

    from airlock_sdk.adapters.langchain import AirlockToolNode

    tools = AirlockToolNode([send_email, get_order_status], airlock,
                            per_tool={"send_email": {"effect": "write"}})
    graph = builder.compile(checkpointer=SqliteSaver(conn))   # any durable checkpointer
    graph.invoke({"messages": [...]}, {"configurable": {"thread_id": "ticket-4711"}})
    # paused: result["__interrupt__"][0].value["airlock"] lists the cards to decide
    graph.invoke(Command(resume="decided"), same_config)       # after people decided

When the gate answers ``pending``, the node calls LangGraph's ``interrupt()`` with each
action's id, card link, summary, risk and expiry: the checkpointer holds the pause and no
thread waits. The resume value is only a wake-up: on resume the node re-reads every action
from Airlock and runs only what Airlock says is allowed or approved, with Airlock's
(possibly edited) arguments, then reports the execution. A rejection becomes a
``ToolMessage`` with ``status="error"`` and the reviewer's reason; an edited approval
tells the model what changed. The ``Idempotency-Key`` is the ``thread_id`` plus the tool
call's id, so a replayed node finds its action (no second card) and a call that already
ran answers with the recorded result instead of running again.

Blocking mode (scripts): ``AirlockToolNode(..., block=True)``, or :func:`gate_tools`
to wrap each tool so that the call waits inside the tool for the decision::

    tools = gate_tools([send_email, get_order_status], airlock)
    graph = ...ToolNode(tools)...            # or create_agent(model, tools)
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import patch_config
from langchain_core.tools import BaseTool, ToolException
from langchain_core.tools import tool as make_tool
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, interrupt

from airlock_sdk import gating
from airlock_sdk.adapters._common import (
    async_client,
    correlation_for,
    json_arguments,
    message_for_model,
    recorded_text,
    replay_key,
    sync_client,
)
from airlock_sdk.aio import AsyncAirlock
from airlock_sdk.client import Airlock
from airlock_sdk.decision import DecisionBase
from airlock_sdk.errors import AirlockError, not_permitted_for

# The tool call a gated tool is running (its id survives a resume; a run id would not).
_TOOL_CALL_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "airlock_tool_call_id", default=None
)


def thread_id_of(config: RunnableConfig | None) -> Any:
    return ((config or {}).get("configurable") or {}).get("thread_id")


def _replay_fields(config: RunnableConfig | None, call_id: str | None) -> dict[str, Any]:
    thread = thread_id_of(config)
    return {
        "idempotency_key": replay_key("langgraph", thread, call_id),
        "correlation_id": correlation_for(thread),
    }


def kept_result(output: Any) -> Any:
    """What to keep of a tool's output with the execution report (and to answer a replay
    with): a ``ToolMessage``'s content, the tool messages of a ``Command``, else the value."""
    if isinstance(output, ToolMessage):
        return output.content
    if isinstance(output, Command):
        update = output.update if isinstance(output.update, dict) else {}
        messages = update.get("messages") or []
        return "\n".join(str(m.content) for m in messages if isinstance(m, ToolMessage)) or str(
            output
        )
    return output


class AirlockGatedTool(BaseTool):
    """A tool that asks Airlock before running ``inner`` and waits for the decision inside
    the call (blocking mode). Build it with :func:`gate_tool`."""

    inner: BaseTool
    airlock_spec: Any
    airlock_client: Any = None
    handle_tool_error: bool = True

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        token = _TOOL_CALL_ID.set(_call_id_of(input))
        try:
            return super().invoke(input, config, **kwargs)
        finally:
            _TOOL_CALL_ID.reset(token)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        token = _TOOL_CALL_ID.set(_call_id_of(input))
        try:
            return await super().ainvoke(input, config, **kwargs)
        finally:
            _TOOL_CALL_ID.reset(token)

    def _split(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(arguments the model chose, which go to the gate; injected ones, which do not)."""
        schema = self.inner.tool_call_schema
        if isinstance(schema, dict):
            visible = set((schema.get("properties") or {}).keys())
        else:
            visible = set(getattr(schema, "model_fields", {}) or kwargs)
        gated = {k: v for k, v in kwargs.items() if k in visible}
        injected = {k: v for k, v in kwargs.items() if k not in visible}
        return json_arguments(gated), injected

    def _inner_input(self, approved: dict[str, Any], injected: dict[str, Any]) -> Any:
        """The inner tool's input: the full ToolCall when there is one, so tools with an
        ``InjectedToolCallId`` (returning ``Command``/``ToolMessage``) get their call id."""
        call_id = _TOOL_CALL_ID.get()
        args = {**approved, **injected}
        if call_id is None:
            return args
        args.pop("tool_call_id", None)
        return {"type": "tool_call", "name": self.inner.name, "args": args, "id": call_id}

    def _run(
        self,
        *args: Any,
        config: RunnableConfig,
        run_manager: CallbackManagerForToolRun | None = None,
        **kwargs: Any,
    ) -> Any:
        gated, injected = self._split(kwargs)
        child = patch_config(config, callbacks=run_manager.get_child() if run_manager else None)

        def run(approved: dict[str, Any]) -> Any:
            return self.inner.invoke(self._inner_input(approved, injected), config=child)

        try:
            return gating.execute(
                sync_client(self.airlock_client),
                self.airlock_spec,
                gated,
                run,
                report_result=kept_result,
                replayed=_replayed,
                answer=with_edit_note,
                **_replay_fields(config, _TOOL_CALL_ID.get()),
            )
        except AirlockError as exc:
            raise ToolException(message_for_model(self.airlock_spec.tool, exc)) from exc

    async def _arun(
        self,
        *args: Any,
        config: RunnableConfig,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
        **kwargs: Any,
    ) -> Any:
        gated, injected = self._split(kwargs)
        child = patch_config(config, callbacks=run_manager.get_child() if run_manager else None)

        async def run(approved: dict[str, Any]) -> Any:
            return await self.inner.ainvoke(self._inner_input(approved, injected), config=child)

        try:
            return await gating.aexecute(
                async_client(self.airlock_client),
                self.airlock_spec,
                gated,
                run,
                report_result=kept_result,
                replayed=_replayed,
                answer=with_edit_note,
                **_replay_fields(config, _TOOL_CALL_ID.get()),
            )
        except AirlockError as exc:
            raise ToolException(message_for_model(self.airlock_spec.tool, exc)) from exc


def _call_id_of(input: Any) -> str | None:
    if isinstance(input, dict) and input.get("type") == "tool_call" and input.get("id"):
        return str(input["id"])
    return None


def _replayed(decision: DecisionBase) -> Any:
    if decision.status == "failed":
        return gating.recorded_result(decision)  # raises: it ran and failed
    return recorded_text(decision)


def gate_tool(
    tool: BaseTool | Callable[..., Any],
    client: Airlock | AsyncAirlock | None = None,
    *,
    name: str | None = None,
    effect: str | None = None,
    timeout: float | None = None,
    **options: Any,
) -> AirlockGatedTool:
    """Wrap ``tool`` (a ``BaseTool`` or a function, made a tool with ``@tool``) so that
    every call is gated by Airlock under the tool name ``name`` (default: the tool's),
    waiting inside the call (blocking mode; see :class:`AirlockToolNode` for interrupts).

    ``client`` is an :class:`~airlock_sdk.Airlock` or :class:`~airlock_sdk.AsyncAirlock`
    (default: the module default client); sync and async runs both work. ``summary``,
    ``blast_radius``, ``rationale``, ``evidence``, ``release``, ... are values or functions
    of the arguments dict, as in :meth:`~airlock_sdk.Airlock.gated`. Inside a graph with a
    ``thread_id`` the idempotency key is the thread plus the tool call's id."""
    inner = tool if isinstance(tool, BaseTool) else make_tool(tool)
    spec = gating.make_spec(name or inner.name, effect, timeout, options)
    return AirlockGatedTool(
        name=inner.name,
        description=inner.description,
        args_schema=inner.args_schema,
        return_direct=inner.return_direct,
        inner=inner,
        airlock_spec=spec,
        airlock_client=client,
    )


def gate_tools(
    tools: Sequence[BaseTool | Callable[..., Any]],
    client: Airlock | AsyncAirlock | None = None,
    *,
    per_tool: dict[str, dict[str, Any]] | None = None,
    **options: Any,
) -> list[AirlockGatedTool]:
    """:func:`gate_tool` for each tool; ``per_tool`` maps a tool name to extra options
    (``effect``, ``summary``, ``blast_radius``, ...) for that tool."""
    gated = []
    for tool in tools:
        inner = tool if isinstance(tool, BaseTool) else make_tool(tool)
        gated.append(
            gate_tool(inner, client, **{**options, **(per_tool or {}).get(inner.name, {})})
        )
    return gated


# --- the interrupting tool node --------------------------------------------------------------


@dataclass
class _Gated:
    """One tool call of the node's turn and Airlock's answer about it."""

    call_id: str
    spec: gating.GateSpec
    fields: dict[str, Any]
    block: bool
    decision: Any = None
    # Why it must not run when Airlock's answer is not enough to say so: a wait that ended
    # (timeout, then withdrawn) or a gate that could not be reached (fail closed).
    refusal: AirlockError | None = None

    @property
    def pending(self) -> bool:
        return self.refusal is None and self.decision is not None and self.decision.pending

    def ask(self, client: Airlock) -> None:
        fields = dict(self.fields)
        arguments = fields.pop("arguments")
        try:
            self.decision = client.request(self.spec.tool, arguments, **fields)
            if self.block and self.decision.pending:
                gating.wait_for_permission(client, self.decision, self.spec.timeout)
        except AirlockError as exc:
            self.refusal = exc

    async def aask(self, client: AsyncAirlock) -> None:
        fields = dict(self.fields)
        arguments = fields.pop("arguments")
        try:
            self.decision = await client.request(self.spec.tool, arguments, **fields)
            if self.block and self.decision.pending:
                await gating.await_permission(client, self.decision, self.spec.timeout)
        except AirlockError as exc:
            self.refusal = exc


# The node's gated calls of the current run, by tool call id (a context variable: the
# node's calls run in threads or tasks that copy the context; concurrent runs do not mix).
_GATED: contextvars.ContextVar[dict[str, _Gated] | None] = contextvars.ContextVar(
    "airlock_gated_calls", default=None
)


class AirlockToolNode(ToolNode):
    """A ``ToolNode`` whose every tool call is gated by Airlock (see the module docstring).

    ``client``: an :class:`~airlock_sdk.Airlock` or :class:`~airlock_sdk.AsyncAirlock`
    (default: the module default client). ``per_tool`` maps a tool name to gate options
    (``effect``, ``summary``, ``blast_radius``, ...); other keyword options apply to all.
    ``block=True`` waits for people inside the node (up to ``timeout`` seconds, then the
    action is withdrawn) instead of interrupting. ``node_options`` go to ``ToolNode``
    (``name``, ``handle_tool_errors``, ``messages_key``, ...)."""

    def __init__(
        self,
        tools: Sequence[BaseTool | Callable[..., Any]],
        client: Airlock | AsyncAirlock | None = None,
        *,
        block: bool = False,
        timeout: float | None = None,
        per_tool: dict[str, dict[str, Any]] | None = None,
        node_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            tools,
            wrap_tool_call=self._gate_call,
            awrap_tool_call=self._agate_call,
            **(node_options or {}),
        )
        self.airlock_client = client
        self.block = block
        self.timeout = timeout
        self.specs = {}
        for tool_name in self.tools_by_name:
            tool_options = {**options, **(per_tool or {}).get(tool_name, {})}
            effect = tool_options.pop("effect", None)
            tool_timeout = tool_options.pop("timeout", timeout)
            self.specs[tool_name] = gating.make_spec(
                tool_options.pop("name", tool_name), effect, tool_timeout, tool_options
            )

    # --- the node: ask about every call, pause while any is pending, then run ------------

    def _gated_calls(self, input: Any, config: RunnableConfig) -> dict[str, _Gated]:
        tool_calls, _ = self._parse_input(input)
        calls: dict[str, _Gated] = {}
        for call in tool_calls:
            spec = self.specs.get(call["name"])
            if spec is None or not call.get("id"):
                continue  # an unknown tool: ToolNode answers it
            arguments = json_arguments(dict(call.get("args") or {}))
            fields = {**_replay_fields(config, call["id"]), **spec.request_fields(arguments)}
            calls[call["id"]] = _Gated(
                call["id"], spec, {"arguments": arguments, **fields}, self.block
            )
        if not self.block and calls and thread_id_of(config) is None:
            raise ValueError(
                "AirlockToolNode pauses with interrupt(): compile the graph with a "
                "checkpointer and pass a thread_id, or use block=True."
            )
        return calls

    def _func(self, input: Any, config: RunnableConfig, runtime: Any) -> Any:
        calls = self._gated_calls(input, config)
        client = sync_client(self.airlock_client)
        for gated in calls.values():
            gated.ask(client)
        pending = [g for g in calls.values() if g.pending]
        while pending:
            interrupt(self._interrupt_value(client.config.url, pending))
            for gated in pending:
                gated.decision.refresh()
            pending = [g for g in pending if g.pending]
        token = _GATED.set(calls)
        try:
            return super()._func(input, config, runtime)
        finally:
            _GATED.reset(token)

    async def _afunc(self, input: Any, config: RunnableConfig, runtime: Any) -> Any:
        calls = self._gated_calls(input, config)
        client = async_client(self.airlock_client)
        # Blocking mode waits here: SIGTERM withdraws every waiting call, then exits (143).
        async with gating.asigterm_ends_the_wait():
            await asyncio.gather(*(g.aask(client) for g in calls.values()))
        pending = [g for g in calls.values() if g.pending]
        while pending:
            interrupt(self._interrupt_value(client.config.url, pending))
            await asyncio.gather(*(g.decision.refresh() for g in pending))
            pending = [g for g in pending if g.pending]
        token = _GATED.set(calls)
        try:
            return await super()._afunc(input, config, runtime)
        finally:
            _GATED.reset(token)

    @staticmethod
    def _interrupt_value(base_url: str, pending: list[_Gated]) -> dict[str, Any]:
        """What the application sees in ``__interrupt__``: the cards people must decide."""
        return {
            "airlock": [
                {
                    "action_id": g.decision.id,
                    "tool": g.decision.tool,
                    "tool_call_id": g.call_id,
                    "card": base_url + str(g.decision.links.get("card") or ""),
                    "summary": g.fields.get("summary") or "",
                    "risk": g.decision.risk,
                    "expires_at": (
                        g.decision.expires_at.isoformat() if g.decision.expires_at else None
                    ),
                }
                for g in pending
            ]
        }

    # --- one call: run only what Airlock allows, with its arguments, and report ----------

    def _verdict(self, request: Any) -> tuple[_Gated | None, ToolMessage | None]:
        """(the gated call, or None when not gated; a ready answer when it must not run)."""
        gated = (_GATED.get() or {}).get(request.tool_call.get("id"))
        if gated is None:
            return None, None
        decision = gated.decision
        call = request.tool_call
        if gated.refusal is not None:
            return gated, _error(call, message_for_model(gated.spec.tool, gated.refusal))
        if decision.already_ran:
            return gated, ToolMessage(
                content=recorded_text(decision), name=call["name"], tool_call_id=call["id"]
            )
        if not decision.executable:
            return gated, _error(
                call, message_for_model(gated.spec.tool, not_permitted_for(decision))
            )
        return gated, None

    def _gate_call(self, request: Any, execute: Callable[[Any], Any]) -> Any:
        gated, answer = self._verdict(request)
        if gated is None:
            return execute(request)
        if answer is not None:
            return answer
        client = sync_client(self.airlock_client)
        decision = gated.decision
        try:
            output = execute(_with_arguments(request, decision.arguments))
        except GraphBubbleUp:
            raise
        except Exception as exc:
            gating.report_quietly(client, decision, "failed", error=gating.describe_error(exc))
            raise
        outcome, result, error = _outcome(output)
        gating.report_quietly(client, decision, outcome, result, error)
        return with_edit_note(output, decision)

    async def _agate_call(self, request: Any, execute: Callable[[Any], Any]) -> Any:
        gated, answer = self._verdict(request)
        if gated is None:
            return await execute(request)
        if answer is not None:
            return answer
        client = async_client(self.airlock_client)
        decision = gated.decision
        try:
            output = await execute(_with_arguments(request, decision.arguments))
        except GraphBubbleUp:
            raise
        except Exception as exc:
            await gating.areport_quietly(
                client, decision, "failed", error=gating.describe_error(exc)
            )
            raise
        outcome, result, error = _outcome(output)
        await gating.areport_quietly(client, decision, outcome, result, error)
        return with_edit_note(output, decision)


def _error(call: Any, text: str) -> ToolMessage:
    return ToolMessage(content=text, name=call["name"], tool_call_id=call["id"], status="error")


def _with_arguments(request: Any, arguments: dict[str, Any]) -> Any:
    return request.override(tool_call={**request.tool_call, "args": dict(arguments)})


def _outcome(output: Any) -> tuple[str, Any, str]:
    """(outcome, kept result, error) of what ToolNode made of the tool's run."""
    if isinstance(output, ToolMessage) and output.status == "error":
        return "failed", None, str(output.content)
    return "succeeded", kept_result(output), ""


def edit_note(decision: DecisionBase) -> str:
    """What the model is told when a reviewer changed the arguments or commented."""
    parts = []
    if decision.edited:
        changes = []
        for key in sorted(set(decision.original_arguments) | set(decision.arguments)):
            before = decision.original_arguments.get(key)
            after = decision.arguments.get(key)
            if before != after:
                changes.append(f"{key}: {json.dumps(before)} -> {json.dumps(after)}")
        parts.append("arguments edited by a reviewer: " + "; ".join(changes))
    comments = [
        str(d.get("comment"))
        for d in decision.decisions
        if d.get("verdict") == "approve" and d.get("comment") and not d.get("voided")
    ]
    if comments:
        parts.append("approver's comment: " + " / ".join(comments))
    return f"(Airlock: {'; '.join(parts)}.)" if parts else ""


def with_edit_note(output: Any, decision: DecisionBase) -> Any:
    """The tool's output as the model should see it: followed by :func:`edit_note` when a
    reviewer edited the arguments or commented (the one wording for every mode). A string
    or a ``ToolMessage`` gets the note appended, the tool messages of a ``Command`` too;
    any other value becomes its JSON text (what ``ToolNode`` would show) plus the note."""
    note = edit_note(decision)
    if not note:
        return output
    if isinstance(output, ToolMessage):
        if not isinstance(output.content, str):
            return output
        return output.model_copy(update={"content": f"{output.content}\n{note}"})
    if isinstance(output, Command):
        update = output.update if isinstance(output.update, dict) else None
        if not update or not update.get("messages"):
            return output
        messages = [with_edit_note(m, decision) for m in update["messages"]]
        return dataclasses.replace(output, update={**update, "messages": messages})
    if isinstance(output, str):
        return f"{output}\n{note}"
    try:
        text = json.dumps(output, ensure_ascii=False)
    except (TypeError, ValueError):
        text = str(output)
    return f"{text}\n{note}"


__all__ = [
    "AirlockGatedTool",
    "AirlockToolNode",
    "edit_note",
    "gate_tool",
    "gate_tools",
    "kept_result",
    "with_edit_note",
]
