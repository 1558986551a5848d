"""``@gated``: ask the gate before a function runs, run it only with the approved arguments,
report the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from airlock_sdk._core import RetryPolicy, jsonable
from airlock_sdk.errors import (
    ActionNotPermitted,
    AirlockAPIError,
    AirlockError,
    DecisionTimeout,
    not_permitted_for,
)

if TYPE_CHECKING:
    from airlock_sdk.aio import AsyncAirlock
    from airlock_sdk.client import Airlock
    from airlock_sdk.decision import AsyncDecision, Decision, DecisionBase

logger = logging.getLogger("airlock_sdk")

# Fields of a submission that ``gated`` accepts as a value or as a function of the
# call's arguments (``idempotency_key`` is the submission's header, not a body field).
DYNAMIC_FIELDS = (
    "summary",
    "rationale",
    "evidence",
    "blast_radius",
    "release",
    "on_behalf_of",
    "callback_url",
    "compensation",
    "correlation_id",
    "idempotency_key",
)
STILL_PENDING = "it is still waiting for a human decision, so it did not run"
# Longest a cancelled call spends withdrawing its action (shielded from the cancellation).
WITHDRAW_SECONDS = 15.0
QUIET_RETRY = RetryPolicy(attempts=3, backoff=0.2, max_backoff=1.0, give_up_after=5.0)


@dataclass
class GateSpec:
    """What to tell the gate about each call of a gated function."""

    tool: str
    effect: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None

    def request_fields(self, arguments: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, value in self.fields.items():
            if callable(value):
                value = value(dict(arguments))
            if value is not None:
                out[name] = value
        return out


def make_spec(tool: str, effect: str | None, timeout: float | None, options: dict) -> GateSpec:
    unknown = set(options) - set(DYNAMIC_FIELDS)
    if unknown:
        raise TypeError(f"unknown gated() option(s): {', '.join(sorted(unknown))}")
    if effect is not None and effect not in ("read", "draft", "write"):
        raise ValueError("effect must be 'read', 'draft' or 'write'")
    return GateSpec(tool=tool, effect=effect, fields=dict(options), timeout=timeout)


class Binder:
    """Maps a call's Python arguments to the tool's JSON arguments and back."""

    def __init__(self, func: Callable[..., Any], exclude: tuple[str, ...]) -> None:
        self.signature = inspect.signature(func)
        self.exclude = frozenset(exclude)
        kinds = [p.kind for p in self.signature.parameters.values()]
        self.has_var_positional = inspect.Parameter.VAR_POSITIONAL in kinds

    def split(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(tool arguments, pass-through values that are not sent to the gate)."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        tool_args: dict[str, Any] = {}
        passthrough: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            kind = self.signature.parameters[name].kind
            if name in self.exclude:
                passthrough[name] = value
            elif kind is inspect.Parameter.VAR_KEYWORD:
                tool_args.update(value)
            else:
                tool_args[name] = value
        return jsonable(tool_args, strict=True), passthrough

    def call(
        self, approved: dict[str, Any], passthrough: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments that call the function with ``approved``."""
        remaining = dict(approved)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        P = inspect.Parameter
        for name, param in self.signature.parameters.items():
            if param.kind is P.VAR_KEYWORD:
                continue
            if name in passthrough:
                value = passthrough[name]
            elif name in remaining:
                value = remaining.pop(name)
            else:
                continue  # the default applies (or Python reports the missing argument)
            if param.kind is P.VAR_POSITIONAL:
                args.extend(value or ())
            elif param.kind is P.POSITIONAL_ONLY or (
                self.has_var_positional and param.kind is P.POSITIONAL_OR_KEYWORD
            ):
                args.append(value)
            else:
                kwargs[name] = value
        kwargs.update(remaining)  # a reviewer's extra keys: **kwargs takes them, else TypeError
        return args, kwargs


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def recorded_result(decision: DecisionBase) -> Any:
    """For a submission that found its action already run (a replay with the same
    idempotency key): the recorded result, never a second run. A failed run raises."""
    if decision.status == "failed":
        error = (decision.execution or {}).get("error") or "no error was recorded"
        raise ActionNotPermitted(decision, reason=f"it already ran and failed: {error}")
    return decision.result


def _leased(fields: dict[str, Any], lease_seconds: int | None) -> dict[str, Any]:
    """Submission fields of a call that will wait for people: with the client's lease, so
    an agent that dies while it waits leaves no live card (its polls renew the lease)."""
    if lease_seconds is not None:
        fields.setdefault("lease_seconds", lease_seconds)
    return fields


def _raise_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def sigterm_ends_the_wait() -> Iterator[None]:
    """While the main thread blocks waiting for people, SIGTERM (a container stop, a
    deploy) ends the wait as Ctrl-C does: the pending action is withdrawn, then the process
    exits (``SystemExit``, status 143). Left alone when SIGTERM already has a handler, or
    outside the main thread (where Python cannot take signals)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.asynccontextmanager
async def asigterm_ends_the_wait() -> AsyncIterator[None]:
    """:func:`sigterm_ends_the_wait` for an awaited wait on asyncio: while the main thread's
    loop waits for people, SIGTERM cancels the waiting task (its pending action is withdrawn,
    shielded, on the way out), then the process exits (``SystemExit``, status 143). Left
    alone when SIGTERM already has a handler (the application's own, or the loop's), outside
    the main thread, and on event loops other than asyncio's."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # another event loop (trio): it handles signals its own way
        loop = None
    task = asyncio.current_task() if loop is not None else None
    if (
        task is None
        or threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    except (NotImplementedError, RuntimeError, ValueError):  # no signals on this loop
        yield
        return
    try:
        yield
    except asyncio.CancelledError:
        if not terminated:
            raise
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+: the cancel was ours
        if uncancel is not None:
            uncancel()
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        loop.remove_signal_handler(signal.SIGTERM)  # back to the default action


# --- synchronous -----------------------------------------------------------------------------


def _withdraw_quietly(client: Airlock, decision: Decision) -> None:
    try:
        client.withdraw(decision, retry=QUIET_RETRY)
    except AirlockError as exc:
        logger.warning("airlock: could not withdraw action %s: %s", decision.id, exc)


def wait_for_permission(client: Airlock, decision: Decision, timeout: float | None) -> Decision:
    """``decision.wait(timeout)``; on a timeout, withdraw the action (unless people decided
    in the meantime, in which case their decision stands); when interrupted (Ctrl-C,
    SIGTERM), withdraw it and re-raise."""
    try:
        with sigterm_ends_the_wait():
            return decision.wait(timeout)
    except DecisionTimeout as timed_out:
        try:
            client.withdraw(decision, retry=QUIET_RETRY)
        except AirlockAPIError as exc:
            if exc.code != "not_pending":
                logger.warning("airlock: could not withdraw action %s: %s", decision.id, exc)
                raise timed_out from None
            decision.refresh()  # people decided just now: their decision stands
            if decision.executable:
                return decision
            raise not_permitted_for(decision) from None
        except AirlockError as exc:
            logger.warning("airlock: could not withdraw action %s: %s", decision.id, exc)
        raise timed_out from None
    except AirlockError:
        raise
    except BaseException:  # interrupted: do not leave people deciding for nothing
        if decision.pending:
            _withdraw_quietly(client, decision)
        raise


def report_quietly(
    client: Airlock, decision: Decision, outcome: str, result: Any = None, error: str = ""
) -> None:
    try:
        client.report(decision, outcome, result, error=error)
    except AirlockError as exc:
        # The tool has run; hiding its result would invite a second run.
        logger.warning("airlock: could not report %s of action %s: %s", outcome, decision.id, exc)


def execute(
    client: Airlock,
    spec: GateSpec,
    tool_args: dict[str, Any],
    run: Callable[[dict[str, Any]], Any],
    report_result: Callable[[Any], Any] | None = None,
    replayed: Callable[[DecisionBase], Any] = recorded_result,
    wait: bool = True,
    answer: Callable[[Any, DecisionBase], Any] | None = None,
    **extra: Any,
) -> Any:
    """Ask the gate about ``tool_args``; when allowed or approved, ``run(approved_args)``
    and report its result (passed through ``report_result`` if given) or its exception
    (re-raised). The caller gets the result, or ``answer(result, decision)`` when given
    (say, the result plus a note of a reviewer's edits for a model). Raises :class:`~airlock_sdk.ActionNotPermitted` or
    :class:`~airlock_sdk.GateUnavailable` without running anything otherwise. ``extra``
    are submission fields (e.g. ``correlation_id``, ``idempotency_key``) the spec does not
    set. When the submission finds its action already run (the same idempotency key
    replayed), nothing runs: ``replayed(decision)`` answers (default: the recorded result).
    ``wait=False`` (interrupt-mode adapters: people decided before this call) refuses a
    still-pending action instead of waiting for it."""
    # Only a call that will wait here carries a lease: interrupt-mode adapters (wait=False)
    # have nothing alive to renew it while paused.
    fields = {**extra, **spec.request_fields(tool_args)}
    if wait:
        fields = _leased(fields, client.config.lease_seconds)
    decision = client.request(spec.tool, tool_args, **fields)
    if decision.already_ran or decision.status == "failed":
        return replayed(decision)
    if wait:
        wait_for_permission(client, decision, spec.timeout)
    else:
        decision.raise_for_status()
        if decision.pending:
            raise ActionNotPermitted(decision, reason=STILL_PENDING)
    try:
        with _granted(decision):
            result = run(decision.arguments)
    except Exception as exc:
        report_quietly(client, decision, "failed", error=describe_error(exc))
        raise
    report_quietly(
        client, decision, "succeeded", report_result(result) if report_result else result
    )
    return answer(result, decision) if answer else result


_current_grant: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "airlock_current_grant", default=None
)


def current_grant() -> str | None:
    """Inside a gated tool: the grant Airlock issued for this call, to pass to the tool
    service (``Airlock-Grant`` header) that verifies it. None outside a gated call."""
    return _current_grant.get()


@contextlib.contextmanager
def _granted(decision: Any) -> Iterator[None]:
    token = _current_grant.set(decision.grant)
    try:
        yield
    finally:
        _current_grant.reset(token)


def run_gated(
    client: Airlock,
    spec: GateSpec,
    binder: Binder,
    func: Callable[..., Any],
    args: tuple,
    kwargs: dict,
) -> Any:
    tool_args, passthrough = binder.split(args, kwargs)

    def run(approved: dict[str, Any]) -> Any:
        call_args, call_kwargs = binder.call(approved, passthrough)
        return func(*call_args, **call_kwargs)

    return execute(client, spec, tool_args, run)


# --- asynchronous ----------------------------------------------------------------------------


async def _awithdraw_quietly(client: AsyncAirlock, decision: AsyncDecision) -> None:
    try:
        await client.withdraw(decision, retry=QUIET_RETRY)
    except AirlockError as exc:
        logger.warning("airlock: could not withdraw action %s: %s", decision.id, exc)


async def await_permission(
    client: AsyncAirlock, decision: AsyncDecision, timeout: float | None
) -> AsyncDecision:
    try:
        return await decision.wait(timeout)
    except DecisionTimeout as timed_out:
        try:
            await client.withdraw(decision, retry=QUIET_RETRY)
        except AirlockAPIError as exc:
            if exc.code != "not_pending":
                logger.warning("airlock: could not withdraw action %s: %s", decision.id, exc)
                raise timed_out from None
            await decision.refresh()  # people decided just now: their decision stands
            if decision.executable:
                return decision
            raise not_permitted_for(decision) from None
        except AirlockError as exc:
            logger.warning("airlock: could not withdraw action %s: %s", decision.id, exc)
        raise timed_out from None
    except AirlockError:
        raise
    except BaseException:  # cancelled, interrupted: do not leave people deciding for nothing
        if decision.pending:
            # Shielded: under anyio a cancelled scope cancels every await inside it, so an
            # unshielded withdraw would never be sent (the card stays, gets approved and
            # never runs). Bounded, so a dead server cannot hold the cancellation.
            with anyio.move_on_after(WITHDRAW_SECONDS, shield=True):
                await _awithdraw_quietly(client, decision)
        raise


async def await_informing(
    client: AsyncAirlock,
    decision: AsyncDecision,
    timeout: float | None,
    while_pending: Callable[[AsyncDecision], Awaitable[None]] | None,
) -> AsyncDecision:
    """:func:`await_permission`, running ``while_pending(decision)`` beside the wait (say,
    progress notifications to a client) and cancelling it when the wait ends. SIGTERM
    ends the wait as a cancellation does (the action is withdrawn), then exits with 143."""
    async with asigterm_ends_the_wait():
        if while_pending is None or not decision.pending:
            return await await_permission(client, decision, timeout)
        return await _await_beside(client, decision, timeout, while_pending)


async def _await_beside(
    client: AsyncAirlock,
    decision: AsyncDecision,
    timeout: float | None,
    while_pending: Callable[[AsyncDecision], Awaitable[None]],
) -> AsyncDecision:
    outcome: dict[str, Any] = {}
    async with anyio.create_task_group() as group:

        async def wait() -> None:
            try:
                outcome["decision"] = await await_permission(client, decision, timeout)
            except Exception as exc:  # re-raised below, not wrapped in an exception group
                outcome["error"] = exc
            finally:
                group.cancel_scope.cancel()

        async def inform() -> None:
            try:
                await while_pending(decision)
            except Exception as exc:
                logger.warning("airlock: while waiting for action %s: %s", decision.id, exc)

        group.start_soon(inform)
        group.start_soon(wait)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["decision"]


async def areport_quietly(
    client: AsyncAirlock,
    decision: AsyncDecision,
    outcome: str,
    result: Any = None,
    error: str = "",
) -> None:
    try:
        await client.report(decision, outcome, result, error=error)
    except AirlockError as exc:
        logger.warning("airlock: could not report %s of action %s: %s", outcome, decision.id, exc)


async def aexecute(
    client: AsyncAirlock,
    spec: GateSpec,
    tool_args: dict[str, Any],
    run: Callable[[dict[str, Any]], Awaitable[Any]],
    report_result: Callable[[Any], Any] | None = None,
    replayed: Callable[[DecisionBase], Any] = recorded_result,
    wait: bool = True,
    while_pending: Callable[[AsyncDecision], Awaitable[None]] | None = None,
    answer: Callable[[Any, DecisionBase], Any] | None = None,
    **extra: Any,
) -> Any:
    """See :func:`execute`; ``run`` returns an awaitable. ``while_pending(decision)`` runs
    beside a wait for people (cancelled when it ends)."""
    # Only a call that will wait here carries a lease: interrupt-mode adapters (wait=False)
    # have nothing alive to renew it while paused.
    fields = {**extra, **spec.request_fields(tool_args)}
    if wait:
        fields = _leased(fields, client.config.lease_seconds)
    decision = await client.request(spec.tool, tool_args, **fields)
    if decision.already_ran or decision.status == "failed":
        return replayed(decision)
    if wait:
        await await_informing(client, decision, spec.timeout, while_pending)
    else:
        decision.raise_for_status()
        if decision.pending:
            raise ActionNotPermitted(decision, reason=STILL_PENDING)
    try:
        with _granted(decision):
            result = await run(decision.arguments)
    except Exception as exc:
        await areport_quietly(client, decision, "failed", error=describe_error(exc))
        raise
    await areport_quietly(
        client, decision, "succeeded", report_result(result) if report_result else result
    )
    return answer(result, decision) if answer else result


async def arun_gated(
    client: AsyncAirlock,
    spec: GateSpec,
    binder: Binder,
    func: Callable[..., Any],
    args: tuple,
    kwargs: dict,
) -> Any:
    tool_args, passthrough = binder.split(args, kwargs)

    async def run(approved: dict[str, Any]) -> Any:
        call_args, call_kwargs = binder.call(approved, passthrough)
        return await func(*call_args, **call_kwargs)

    return await aexecute(client, spec, tool_args, run)


# --- the decorator ---------------------------------------------------------------------------


def decorator(
    get_sync: Callable[[], Airlock],
    get_async: Callable[[], AsyncAirlock],
    tool: str | None,
    effect: str | None,
    timeout: float | None,
    exclude: tuple[str, ...],
    options: dict[str, Any],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Build the decorator; the clients are looked up at call time."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        spec = make_spec(tool or func.__name__, effect, timeout, options)
        binder = Binder(func, exclude)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await arun_gated(get_async(), spec, binder, func, args, kwargs)

            wrapper: Any = async_wrapper
        else:

            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                return run_gated(get_sync(), spec, binder, func, args, kwargs)

            wrapper = sync_wrapper
        wrapper.airlock_tool = spec.tool
        wrapper.airlock_effect = spec.effect
        wrapper.airlock_spec = spec
        return wrapper

    return wrap


__all__ = ["Binder", "GateSpec", "aexecute", "decorator", "execute", "make_spec"]
