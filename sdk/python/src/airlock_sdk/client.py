"""The synchronous client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from airlock_sdk import _core, gating
from airlock_sdk._core import AlreadyDone, Call, Config, Retry, RetryPolicy
from airlock_sdk.decision import Decision, DecisionBase
from airlock_sdk.errors import GateUnavailable

if TYPE_CHECKING:
    from airlock_sdk.aio import AsyncAirlock


class Airlock:
    """A client of one agent's Airlock API (thread-safe; share one per agent).

    ``url`` and ``token`` default to the environment variables ``AIRLOCK_URL`` and
    ``AIRLOCK_TOKEN``. ``release`` (model, prompt_version, tool_schema_version, ...) is sent
    with every request unless a request names its own. Network failures and 5xx/429
    answers are retried with backoff per ``retry``; after that every method raises
    :class:`~airlock_sdk.GateUnavailable` (fail closed). ``lease_seconds`` is the lease
    the blocking wait of :meth:`gated` keeps on a pending action (its polls renew it; an
    agent that dies leaves no live card behind); ``None`` for none."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        release: dict[str, Any] | None = None,
        poll_seconds: float = 25.0,
        expiry_grace: float = 3.0,
        lease_seconds: int | None = _core.DEFAULT_LEASE_SECONDS,
        http_client: httpx.Client | None = None,
        config: Config | None = None,
    ) -> None:
        self.config = config or Config.build(
            url,
            token,
            timeout=timeout,
            retry=retry,
            release=release,
            poll_seconds=poll_seconds,
            expiry_grace=expiry_grace,
            lease_seconds=lease_seconds,
        )
        self._http = http_client or httpx.Client(
            base_url=self.config.url, headers=self.config.headers(), timeout=self.config.timeout
        )
        if http_client is not None:
            self._http.headers.update(self.config.headers())
        self.clock_offset = 0.0
        self._twin: AsyncAirlock | None = None
        self._twin_lock = threading.Lock()

    # --- the agent API ---------------------------------------------------------------------

    def request(
        self,
        tool: str,
        arguments: dict[str, Any],
        *,
        summary: str | None = None,
        rationale: dict[str, Any] | None = None,
        evidence: list[dict[str, Any]] | None = None,
        blast_radius: dict[str, Any] | None = None,
        release: dict[str, Any] | None = None,
        on_behalf_of: str | None = None,
        callback_url: str | None = None,
        compensation: dict[str, Any] | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        lease_seconds: int | None = None,
    ) -> Decision:
        """Ask the gate about one tool call. Returns the :class:`Decision` whatever the
        outcome (``allowed``, ``denied``, ``shadowed``, ``pending``, or ``approved`` at once
        when people's standing approval covers the call); ``decision.wait()``
        turns it into "run it" or an exception. Retries reuse one Idempotency-Key, so a
        retried call never creates a second action. ``lease_seconds`` (5..3600): the
        action is cancelled (``agent_gone``) unless the agent keeps reading it or calls
        :meth:`heartbeat` — only for an agent that stays alive while it waits."""
        call = _core.submit_call(
            self.config,
            tool,
            arguments,
            idempotency_key,
            {
                "summary": summary,
                "rationale": rationale,
                "evidence": evidence,
                "blast_radius": blast_radius,
                "release": release,
                "on_behalf_of": on_behalf_of,
                "callback_url": callback_url,
                "compensation": compensation,
                "correlation_id": correlation_id,
                "lease_seconds": lease_seconds,
            },
        )
        return Decision(self, self._send(call))

    def get(self, action_id: int, wait: float = 0) -> Decision:
        """Read one of this agent's actions (long-poll up to ``wait`` s for a change)."""
        return Decision(self, self._get_data(action_id, wait))

    def wait(self, decision: Decision | int, timeout: float | None = None) -> Decision:
        """``decision.wait(timeout)``, also for an action id."""
        if not isinstance(decision, Decision):
            decision = self.get(decision)
        return decision.wait(timeout)

    def report(
        self,
        decision: DecisionBase,
        outcome: str = "succeeded",
        result: Any = None,
        *,
        error: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Decision:
        """Report that the approved call ran (``succeeded``, with its ``result``) or
        ``failed`` (with ``error``). Carries the decision's ``payload_hash``; accepted once."""
        call = _core.report_call(decision.id, decision.payload_hash, outcome, result, error)
        return self._send_then_read(call, decision, retry)

    def withdraw(self, decision: DecisionBase, *, retry: RetryPolicy | None = None) -> Decision:
        """Cancel a pending action the agent no longer needs."""
        return self._send_then_read(_core.withdraw_call(decision.id), decision, retry)

    def heartbeat(self, decision: DecisionBase) -> Decision:
        """Renew the lease of a pending action submitted with ``lease_seconds`` (reads of the
        action renew it too). Raises :class:`~airlock_sdk.AirlockAPIError` ``agent_gone``
        when the lease had already lapsed, ``not_pending`` once it was decided."""
        data = self._send(_core.heartbeat_call(decision.id))
        if isinstance(decision, Decision) and decision._client is self:
            decision._update(data)
            return decision
        return Decision(self, data)

    def report_rollback(
        self, decision: DecisionBase, outcome: str = "rolled_back", result: Any = None
    ) -> Decision:
        """Report the result of a rollback people requested (``rolled_back`` or ``failed``)."""
        return self._send_then_read(_core.rollback_call(decision.id, outcome, result), decision)

    def gated(
        self,
        tool: str | None = None,
        *,
        effect: str | None = None,
        timeout: float | None = None,
        exclude: tuple[str, ...] = ("self", "cls"),
        **options: Any,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate a function so that every call asks the gate first.

        The call's arguments (by parameter name, defaults filled in; ``exclude`` names are
        passed through unsent) are the tool's arguments. ``summary``, ``rationale``,
        ``evidence``, ``blast_radius``, ``release``, ``on_behalf_of``, ``callback_url``,
        ``compensation``, ``correlation_id`` and ``idempotency_key`` are values or functions
        of the arguments dict. The function runs only when allowed or approved, with the
        approved (possibly edited) arguments; its result or exception is reported. A key
        that survives a restart (say, a conversation id plus the tool call's id) makes the
        call replay-safe: a replay finds the same action (no second card) and, once it ran,
        returns the recorded result instead of running the function again. Otherwise it raises
        :class:`~airlock_sdk.ActionDenied`, :class:`~airlock_sdk.ActionRejected`,
        :class:`~airlock_sdk.ActionExpired`, ... (``str(exc)`` is for the model) or
        :class:`~airlock_sdk.GateUnavailable`. ``effect`` (read/draft/write) documents the
        tool; Airlock's rules decide. Async functions are gated with an async client."""
        return gating.decorator(
            lambda: self, self.async_twin, tool, effect, timeout, exclude, options
        )

    # --- plumbing -------------------------------------------------------------------------

    def async_twin(self) -> AsyncAirlock:
        """An :class:`AsyncAirlock` with this client's settings (for async gated functions)."""
        from airlock_sdk.aio import AsyncAirlock

        with self._twin_lock:
            if self._twin is None:
                self._twin = AsyncAirlock(config=self.config)
            return self._twin

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Airlock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Airlock {self.config.url}>"

    def _get_data(self, action_id: int, wait: float = 0) -> dict[str, Any]:
        return self._send(_core.get_call(self.config, action_id, wait))

    def _send_then_read(
        self, call: Call, decision: DecisionBase, retry: RetryPolicy | None = None
    ) -> Decision:
        try:
            data = self._send(call, retry)
        except AlreadyDone:
            # An earlier try of this call did it and its answer was lost: read the result.
            data = self._get_data(decision.id)
        if isinstance(decision, Decision) and decision._client is self:
            decision._update(data)
            return decision
        return Decision(self, data)

    def _send(self, call: Call, retry: RetryPolicy | None = None) -> dict[str, Any]:
        policy = retry or self.config.retry
        started = time.monotonic()
        last: BaseException | None = None
        hint: float | None = None
        tries = 0
        timeout = httpx.Timeout(call.timeout or self.config.timeout, connect=self.config.timeout)
        for attempt in range(max(1, policy.attempts)):
            if attempt:
                delay = hint if hint is not None else policy.delay(attempt - 1)
                if time.monotonic() - started + delay > policy.give_up_after:
                    break
                time.sleep(delay)
            tries += 1
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    json=call.body,
                    params=call.params,
                    headers=call.headers,
                    timeout=timeout,
                )
            except httpx.UnsupportedProtocol as exc:
                raise GateUnavailable(f"Bad Airlock URL {self.config.url!r}: {exc}") from exc
            except httpx.TransportError as exc:
                last, hint = exc, None
                continue
            offset = _core.server_clock_offset(response)
            if offset is not None:
                self.clock_offset = offset
            try:
                return _core.read_response(response, call, retried=attempt > 0)
            except Retry as exc:
                last, hint = exc, exc.delay
        raise GateUnavailable(
            f"Airlock at {self.config.url} did not answer {call.method} {call.path} "
            f"after {tries} tries ({type(last).__name__}: {last}); failing closed."
        ) from last
