"""The asynchronous client: the same API as :class:`~airlock_sdk.Airlock`, awaitable."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from airlock_sdk import _core, gating
from airlock_sdk._core import AlreadyDone, Call, Config, Retry, RetryPolicy
from airlock_sdk.decision import AsyncDecision, DecisionBase
from airlock_sdk.errors import GateUnavailable

if TYPE_CHECKING:
    from airlock_sdk.client import Airlock


class AsyncAirlock:
    """Asynchronous client of one agent's Airlock API. See :class:`~airlock_sdk.Airlock`.

    The underlying ``httpx.AsyncClient`` is created per event loop, so one instance can
    serve code that runs several loops one after another (tests, ``asyncio.run`` per
    task)."""

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
        http_client: httpx.AsyncClient | None = None,
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
        self._given_http = http_client
        if http_client is not None:
            http_client.headers.update(self.config.headers())
        self._client: httpx.AsyncClient | None = None
        self._client_loop: Callable[[], asyncio.AbstractEventLoop | None] = lambda: None
        self.clock_offset = 0.0
        self._twin: Airlock | None = None
        self._twin_lock = threading.Lock()

    # --- the agent API ---------------------------------------------------------------------

    async def request(
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
    ) -> AsyncDecision:
        """See :meth:`Airlock.request`."""
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
        return AsyncDecision(self, await self._send(call))

    async def get(self, action_id: int, wait: float = 0) -> AsyncDecision:
        return AsyncDecision(self, await self._get_data(action_id, wait))

    async def wait(
        self, decision: AsyncDecision | int, timeout: float | None = None
    ) -> AsyncDecision:
        if not isinstance(decision, AsyncDecision):
            decision = await self.get(decision)
        return await decision.wait(timeout)

    async def report(
        self,
        decision: DecisionBase,
        outcome: str = "succeeded",
        result: Any = None,
        *,
        error: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> AsyncDecision:
        call = _core.report_call(decision.id, decision.payload_hash, outcome, result, error)
        return await self._send_then_read(call, decision, retry)

    async def withdraw(
        self, decision: DecisionBase, *, retry: RetryPolicy | None = None
    ) -> AsyncDecision:
        return await self._send_then_read(_core.withdraw_call(decision.id), decision, retry)

    async def heartbeat(self, decision: DecisionBase) -> AsyncDecision:
        """See :meth:`Airlock.heartbeat`."""
        data = await self._send(_core.heartbeat_call(decision.id))
        if isinstance(decision, AsyncDecision) and decision._client is self:
            decision._update(data)
            return decision
        return AsyncDecision(self, data)

    async def report_rollback(
        self, decision: DecisionBase, outcome: str = "rolled_back", result: Any = None
    ) -> AsyncDecision:
        return await self._send_then_read(
            _core.rollback_call(decision.id, outcome, result), decision
        )

    def gated(
        self,
        tool: str | None = None,
        *,
        effect: str | None = None,
        timeout: float | None = None,
        exclude: tuple[str, ...] = ("self", "cls"),
        **options: Any,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """See :meth:`Airlock.gated`; sync functions are gated with a sync twin client."""
        return gating.decorator(
            self.sync_twin, lambda: self, tool, effect, timeout, exclude, options
        )

    # --- plumbing -------------------------------------------------------------------------

    def sync_twin(self) -> Airlock:
        from airlock_sdk.client import Airlock

        with self._twin_lock:
            if self._twin is None:
                self._twin = Airlock(config=self.config)
            return self._twin

    def _http(self) -> httpx.AsyncClient:
        if self._given_http is not None:
            return self._given_http
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop() is not loop or self._client.is_closed:
            # A client's connections belong to the loop that opened them: a new loop gets a
            # new client (the old one is dropped with its loop).
            self._client = httpx.AsyncClient(
                base_url=self.config.url,
                headers=self.config.headers(),
                timeout=self.config.timeout,
            )
            self._client_loop = weakref.ref(loop)
        return self._client

    async def aclose(self) -> None:
        if self._given_http is not None:
            await self._given_http.aclose()
        if self._client is not None and self._client_loop() is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None

    async def __aenter__(self) -> AsyncAirlock:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncAirlock {self.config.url}>"

    async def _get_data(self, action_id: int, wait: float = 0) -> dict[str, Any]:
        return await self._send(_core.get_call(self.config, action_id, wait))

    async def _send_then_read(
        self, call: Call, decision: DecisionBase, retry: RetryPolicy | None = None
    ) -> AsyncDecision:
        try:
            data = await self._send(call, retry)
        except AlreadyDone:
            data = await self._get_data(decision.id)
        if isinstance(decision, AsyncDecision) and decision._client is self:
            decision._update(data)
            return decision
        return AsyncDecision(self, data)

    async def _send(self, call: Call, retry: RetryPolicy | None = None) -> dict[str, Any]:
        policy = retry or self.config.retry
        started = time.monotonic()
        last: BaseException | None = None
        hint: float | None = None
        tries = 0
        timeout = httpx.Timeout(call.timeout or self.config.timeout, connect=self.config.timeout)
        http = self._http()
        for attempt in range(max(1, policy.attempts)):
            if attempt:
                delay = hint if hint is not None else policy.delay(attempt - 1)
                if time.monotonic() - started + delay > policy.give_up_after:
                    break
                await asyncio.sleep(delay)
            tries += 1
            try:
                response = await http.request(
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
