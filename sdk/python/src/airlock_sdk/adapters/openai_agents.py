"""OpenAI Agents SDK: function tools whose every call is gated by Airlock.

::

    from airlock_sdk.adapters.openai_agents import airlock_function_tool

    @airlock_function_tool(client=airlock, effect="write",
                           summary=lambda a: f"Email {a['to']}")
    def send_email(to: str, subject: str, body: str) -> str:
        ...

    agent = Agent(name="Support", tools=[send_email, ...])

The model sees an ordinary function tool. When it calls it, the arguments go to Airlock
first and the run waits for the decision (the wait happens inside the tool call, so it
works with ``Runner.run``, streaming and any model). The function runs only when allowed
or approved, with the approved (possibly edited) arguments; otherwise the tool's output
is a sentence saying what happened, including a reviewer's reason, so the model can adapt.

Unlike the SDK's own ``needs_approval`` (which pauses the run for the application to
approve in-process), the decision is made by people on Airlock's dashboard, bound to the
exact payload, audited, and may edit the arguments. :func:`gate_function_tool` gates an
existing :class:`agents.FunctionTool` the same way."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from agents import FunctionTool, function_tool
from agents.tool import default_tool_error_function
from agents.tool_context import ToolContext

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

RUN_ID_KEY = "airlock_run_id"


def run_id_of(ctx: Any) -> str | None:
    """The run's id that survives a serialized ``RunState``: ``airlock_run_id`` in the run
    context (a dict key or an attribute), e.g. ``Runner.run(agent, input,
    context={"airlock_run_id": ticket_id})``. Without it each submission gets a fresh
    idempotency key (a call id alone is not unique across runs)."""
    context = getattr(ctx, "context", None)
    value = (
        context.get(RUN_ID_KEY) if isinstance(context, dict) else getattr(context, RUN_ID_KEY, None)
    )
    return str(value) if value not in (None, "") else None


def _replayed(decision: Any) -> Any:
    if decision.status == "failed":
        return gating.recorded_result(decision)  # raises: it ran and failed
    return recorded_text(decision)


def gate_function_tool(
    tool: FunctionTool,
    client: Airlock | AsyncAirlock | None = None,
    *,
    name: str | None = None,
    effect: str | None = None,
    timeout: float | None = None,
    failure_message: Callable[[Any, Exception], str] | None = None,
    **options: Any,
) -> FunctionTool:
    """A copy of ``tool`` whose calls are gated by Airlock under the tool name ``name``
    (default: the tool's name). Gate options (``summary``, ``blast_radius``, ...) are
    values or functions of the arguments dict.

    Exceptions that reach this wrapper (tools built with ``failure_error_function=None``,
    as :func:`airlock_function_tool` does) are reported to Airlock as ``failed`` and turned
    into ``failure_message(ctx, exc)`` for the model (default: the Agents SDK's message)."""
    spec = gating.make_spec(name or tool.name, effect, timeout, options)
    inner = tool.on_invoke_tool
    describe_failure = failure_message or default_tool_error_function

    async def on_invoke_tool(ctx: ToolContext[Any], input_json: str) -> Any:
        try:
            arguments = json.loads(input_json) if input_json else {}
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            return (
                f"Airlock: the call to {spec.tool!r} did not run: arguments are not a JSON object."
            )

        async def invoke(approved: dict[str, Any]) -> Any:
            return await inner(ctx, json.dumps(approved))

        call_id = str(getattr(ctx, "tool_call_id", "") or "") or None
        run = run_id_of(ctx)
        try:
            return await gating.aexecute(
                async_client(client),
                spec,
                arguments,
                invoke,
                replayed=_replayed,
                idempotency_key=replay_key("openai-agents", run, call_id),
                correlation_id=correlation_for(run) or correlation_for(call_id),
            )
        except AirlockError as exc:
            return message_for_model(spec.tool, exc)
        except Exception as exc:  # the tool raised; aexecute reported it as failed
            return describe_failure(ctx, exc)

    return dataclasses.replace(tool, on_invoke_tool=on_invoke_tool)


def airlock_function_tool(
    func: Callable[..., Any] | None = None,
    *,
    client: Airlock | AsyncAirlock | None = None,
    name: str | None = None,
    effect: str | None = None,
    timeout: float | None = None,
    **options: Any,
) -> Any:
    """Like ``agents.function_tool``, gated by Airlock. Keyword arguments that are gate
    options (``summary``, ``rationale``, ``evidence``, ``blast_radius``, ``release``,
    ``on_behalf_of``, ``callback_url``, ``compensation``, ``correlation_id``) go to the
    gate; the rest (``name_override``, ``description_override``, ``strict_mode``, ...) go
    to ``function_tool``."""
    gate_options = {k: v for k, v in options.items() if k in gating.DYNAMIC_FIELDS}
    tool_options = {k: v for k, v in options.items() if k not in gating.DYNAMIC_FIELDS}
    tool_options.setdefault("failure_error_function", None)

    def wrap(fn: Callable[..., Any]) -> FunctionTool:
        tool = function_tool(fn, **tool_options)
        return gate_function_tool(
            tool, client, name=name, effect=effect, timeout=timeout, **gate_options
        )

    return wrap(func) if func is not None else wrap


__all__ = ["airlock_function_tool", "gate_function_tool"]
