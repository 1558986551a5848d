"""``@gated``: ask the gate before a function runs, run it only with the approved arguments,
report the outcome."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airlock_sdk._core import RetryPolicy, jsonable
from airlock_sdk.errors import (
    AirlockAPIError,
    AirlockError,
    DecisionTimeout,
    not_permitted_for,
)

if TYPE_CHECKING:
    from airlock_sdk.aio import AsyncAirlock
    from airlock_sdk.client import Airlock
    from airlock_sdk.decision import AsyncDecision, Decision

logger = logging.getLogger("airlock_sdk")

# Fields of a submission that ``gated`` accepts as a value or as a function of the
# call's arguments.
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
)
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
    **extra: Any,
) -> Any:
    """Ask the gate about ``tool_args``; when allowed or approved, ``run(approved_args)``
    and report its result (passed through ``report_result`` if given) or its exception
    (re-raised). Raises :class:`~airlock_sdk.ActionNotPermitted` or
    :class:`~airlock_sdk.GateUnavailable` without running anything otherwise. ``extra``
    are submission fields (e.g. ``correlation_id``) the spec does not set."""
    fields = _leased({**extra, **spec.request_fields(tool_args)}, client.config.lease_seconds)
    decision = client.request(spec.tool, tool_args, **fields)
    wait_for_permission(client, decision, spec.timeout)
    try:
        result = run(decision.arguments)
    except Exception as exc:
        report_quietly(client, decision, "failed", error=describe_error(exc))
        raise
    report_quietly(
        client, decision, "succeeded", report_result(result) if report_result else result
    )
    return result


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
            await _awithdraw_quietly(client, decision)
        raise


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
    **extra: Any,
) -> Any:
    """See :func:`execute`; ``run`` returns an awaitable."""
    fields = _leased({**extra, **spec.request_fields(tool_args)}, client.config.lease_seconds)
    decision = await client.request(spec.tool, tool_args, **fields)
    await await_permission(client, decision, spec.timeout)
    try:
        result = await run(decision.arguments)
    except Exception as exc:
        await areport_quietly(client, decision, "failed", error=describe_error(exc))
        raise
    await areport_quietly(
        client, decision, "succeeded", report_result(result) if report_result else result
    )
    return result


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
