"""OpenAI Agents SDK: function tools whose every call is gated by Airlock.

Interrupt mode (servers, anything that restarts) uses the SDK's own human-in-the-loop::

    from airlock_sdk.adapters.openai_agents import airlock_function_tool, apply_verdicts

    @airlock_function_tool(client=airlock, effect="write", interrupt=True,
                           summary=lambda a: f"Email {a['to']}")
    def send_email(to: str, subject: str, body: str) -> str: ...

    agent = Agent(name="Support", tools=[send_email, ...])
    result = await Runner.run(agent, text, context={"airlock_run_id": "ticket-4711"})
    saved = result.to_state().to_string()          # paused: store it, exit if you like
    ...
    state = await RunState.from_string(agent, saved)
    if not await apply_verdicts(state):            # Airlock's verdicts, [] when all decided
        result = await Runner.run(agent, state)

The tool's ``needs_approval`` asks the gate: allowed or denied → no interruption (a denial
is a refusal the model reads); pending → the SDK's own interruption. :func:`apply_verdicts`
reads each interruption's action from Airlock and calls ``state.approve`` or
``state.reject(rejection_message=<the reviewer's reason>)``. On the resumed run the tool
runs with Airlock's (possibly edited) arguments and reports the execution. The
``Idempotency-Key`` is the run's ``airlock_run_id`` (from the run context, so it survives
``to_string``/``from_string``) plus the tool call's id: no second card, and a call that
already ran answers with its recorded result.

Blocking mode (``interrupt=False``, the default) waits for the decision inside the tool
call (up to ``decision_timeout`` seconds, then the action is withdrawn), which works with
``Runner.run``, streaming and any model. A tool that raises is reported as ``failed`` and
the model gets the tool's failure message."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from agents import FunctionTool, function_tool
from agents.run_context import RunContextWrapper
from agents.run_state import RunState
from agents.tool import (
    maybe_invoke_function_tool_failure_error_function,
    set_function_tool_failure_error_function,
)
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
from airlock_sdk.decision import AsyncDecision
from airlock_sdk.errors import ActionNotPermitted, AirlockError, not_permitted_for

RUN_ID_KEY = "airlock_run_id"


def run_id_of(ctx: Any) -> str | None:
    """The run's id that survives a serialized ``RunState``: ``airlock_run_id`` in the run
    context (a dict key or an attribute), e.g. ``Runner.run(agent, input,
    context={"airlock_run_id": ticket_id})``. Without it each submission gets a fresh
    idempotency key (a call id alone is not unique across runs)."""
    context = getattr(ctx, "context", None)
    if isinstance(context, dict):
        value = context.get(RUN_ID_KEY)
    else:
        value = getattr(context, RUN_ID_KEY, None)
    return str(value) if value not in (None, "") else None


def _replay_fields(ctx: Any, call_id: str | None) -> dict[str, Any]:
    run = run_id_of(ctx)
    return {
        "idempotency_key": replay_key("openai-agents", run, call_id),
        "correlation_id": correlation_for(run) or correlation_for(call_id),
    }


def _replayed(decision: Any) -> Any:
    if decision.status == "failed":
        return gating.recorded_result(decision)  # raises: it ran and failed
    return recorded_text(decision)


@dataclasses.dataclass(frozen=True)
class _Gate:
    """What a gated tool asks Airlock with; kept on the tool for :func:`apply_verdicts`."""

    client: Airlock | AsyncAirlock | None
    spec: gating.GateSpec

    async def submit(self, ctx: Any, arguments: dict[str, Any], call_id: str) -> AsyncDecision:
        fields = {**_replay_fields(ctx, call_id), **self.spec.request_fields(arguments)}
        return await async_client(self.client).request(self.spec.tool, arguments, **fields)


def gate_function_tool(
    tool: FunctionTool,
    client: Airlock | AsyncAirlock | None = None,
    *,
    name: str | None = None,
    effect: str | None = None,
    decision_timeout: float | None = None,
    interrupt: bool = False,
    failure_message: Callable[[Any, Exception], str] | None = None,
    **options: Any,
) -> FunctionTool:
    """A copy of ``tool`` whose calls are gated by Airlock under the tool name ``name``
    (default: the tool's name). Gate options (``summary``, ``blast_radius``, ...) are
    values or functions of the arguments dict.

    ``interrupt=True`` pauses the run with the SDK's own approval interruption while people
    decide (see the module docstring); otherwise the call waits for the decision up to
    ``decision_timeout`` seconds (the tool's own ``timeout`` is the SDK's). A tool that
    raises is reported to Airlock as ``failed`` and answered with ``failure_message(ctx,
    exc)`` (default: the tool's own failure message)."""
    spec = gating.make_spec(name or tool.name, effect, decision_timeout, options)
    gate = _Gate(client, spec)
    # The tool's invoker with its failure handling off, so a failure reaches us.
    raw_tool = dataclasses.replace(tool)
    set_function_tool_failure_error_function(raw_tool, None)
    raw = raw_tool.on_invoke_tool

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
            return await raw(ctx, json.dumps(approved))

        call_id = str(getattr(ctx, "tool_call_id", "") or "") or None
        try:
            return await gating.aexecute(
                async_client(client),
                spec,
                arguments,
                invoke,
                replayed=_replayed,
                wait=not interrupt,
                **_replay_fields(ctx, call_id),
            )
        except AirlockError as exc:
            return message_for_model(spec.tool, exc)
        except Exception as exc:  # the tool raised; aexecute reported it as failed
            if failure_message is not None:
                return failure_message(ctx, exc)
            handled = await maybe_invoke_function_tool_failure_error_function(
                function_tool=tool, context=ctx, error=exc
            )
            if handled is None:
                raise
            return handled

    async def needs_approval(
        ctx: RunContextWrapper[Any], arguments: dict[str, Any], call_id: str
    ) -> bool:
        """Ask the gate: only a pending action interrupts the run (an allowed call runs,
        a denied one is answered with the refusal when the SDK invokes the tool)."""
        try:
            decision = await gate.submit(ctx, dict(arguments), call_id)
        except AirlockError:
            return False  # the tool call itself answers (fails closed, says why)
        return decision.pending

    on_invoke_tool.airlock_gate = gate  # type: ignore[attr-defined]
    changes: dict[str, Any] = {"on_invoke_tool": on_invoke_tool}
    if interrupt:
        changes["needs_approval"] = needs_approval
    return dataclasses.replace(tool, **changes)


def airlock_function_tool(
    func: Callable[..., Any] | None = None,
    *,
    client: Airlock | AsyncAirlock | None = None,
    name: str | None = None,
    effect: str | None = None,
    decision_timeout: float | None = None,
    interrupt: bool = False,
    **options: Any,
) -> Any:
    """Like ``agents.function_tool``, gated by Airlock. Keyword arguments that are gate
    options (``summary``, ``rationale``, ``evidence``, ``blast_radius``, ``release``,
    ``on_behalf_of``, ``callback_url``, ``compensation``, ``correlation_id``,
    ``idempotency_key``) go to the gate; the rest (``name_override``, ``timeout``,
    ``strict_mode``, ...) go to ``function_tool``."""
    gate_options = {k: v for k, v in options.items() if k in gating.DYNAMIC_FIELDS}
    tool_options = {k: v for k, v in options.items() if k not in gating.DYNAMIC_FIELDS}

    def wrap(fn: Callable[..., Any]) -> FunctionTool:
        tool = function_tool(fn, **tool_options)
        return gate_function_tool(
            tool,
            client,
            name=name,
            effect=effect,
            decision_timeout=decision_timeout,
            interrupt=interrupt,
            **gate_options,
        )

    return wrap(func) if func is not None else wrap


async def apply_verdicts(
    state: RunState[Any, Any], *, wait: float | None = 0
) -> list[AsyncDecision]:
    """Apply Airlock's decisions to a paused run's interruptions (gated tools only):
    approved or allowed → ``state.approve(item)``; rejected, expired, cancelled, ... →
    ``state.reject(item, rejection_message=<what the model should read>)``. ``wait``: how
    long to wait for each still-pending decision (``None``: until it is decided). Returns
    the actions still pending (an empty list: resume with ``Runner.run(agent, state)``)."""
    pending: list[AsyncDecision] = []
    context = getattr(state, "_context", None)
    for item in state.get_interruptions():
        tool = next(
            (
                t
                for t in getattr(item.agent, "tools", [])
                if getattr(t, "name", None) == item.tool_name
            ),
            None,
        )
        gate = getattr(getattr(tool, "on_invoke_tool", None), "airlock_gate", None)
        if gate is None:
            continue  # not an Airlock-gated tool: the application decides it
        raw = item.raw_item
        call_id = str(getattr(raw, "call_id", None) or raw.get("call_id"))  # type: ignore[union-attr]
        text = getattr(raw, "arguments", None) or raw.get("arguments")  # type: ignore[union-attr]
        decision = await gate.submit(context, json.loads(text or "{}"), call_id)
        if decision.pending and wait != 0:
            # Decided (either way) or still pending when the wait ends: read below.
            with contextlib.suppress(ActionNotPermitted):
                await decision.wait(wait)
        if decision.pending:
            pending.append(decision)
        elif decision.executable or decision.already_ran or decision.status == "failed":
            state.approve(item)  # the tool call answers (runs once, or with the record)
        else:
            reason = message_for_model(gate.spec.tool, not_permitted_for(decision))
            state.reject(item, rejection_message=reason)
    return pending


__all__ = [
    "airlock_function_tool",
    "apply_verdicts",
    "gate_function_tool",
    "run_id_of",
]
