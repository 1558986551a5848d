"""The gate's answer about one tool call, kept up to date by ``refresh`` and ``wait``."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airlock_sdk.errors import (
    ActionExpired,
    DecisionTimeout,
    GateUnavailable,
    not_permitted_for,
)

if TYPE_CHECKING:
    from airlock_sdk.aio import AsyncAirlock
    from airlock_sdk.client import Airlock

EXECUTABLE = frozenset({"allowed", "approved"})
# The tool ran and its success was reported (a rollback may have been asked for since).
RAN = frozenset({"executed", "rollback_requested", "rolled_back", "rollback_failed"})


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)  # noqa: UP017 (3.10)


class DecisionBase:
    """Fields of the action as the server last returned them (``raw`` holds all of it)."""

    id: int
    tool: str
    status: str
    reason_code: str
    reasons: list[str]
    risk: str
    feedback: str
    arguments: dict[str, Any]
    original_arguments: dict[str, Any]
    payload_hash: str
    expires_at: datetime | None
    required_approvals: int
    approvals: int
    decisions: list[dict[str, Any]]
    policy_version: int | None

    def __init__(self, data: dict[str, Any]) -> None:
        self._update(data)

    def _update(self, data: dict[str, Any]) -> None:
        self.raw = data
        self.id = int(data["id"])
        self.tool = str(data.get("tool", ""))
        self.agent = str(data.get("agent", ""))
        self.status = str(data["status"])
        self.reason_code = str(data.get("reason_code") or "")
        self.reasons = list(data.get("reasons") or [])
        self.risk = str(data.get("risk") or "")
        self.feedback = str(data.get("feedback") or "")
        self.arguments = dict(data.get("arguments") or {})
        self.original_arguments = dict(data.get("original_arguments") or self.arguments)
        self.payload_hash = str(data.get("payload_hash") or "")
        self.expires_at = _parse_time(data.get("expires_at"))
        self.required_approvals = int(data.get("required_approvals") or 0)
        self.approvals = int(data.get("approvals") or 0)
        self.decisions = list(data.get("decisions") or [])
        self.policy_version = data.get("policy_version")
        self.links = dict(data.get("links") or {})
        self.correlation_id = str(data.get("correlation_id") or "")
        self.execution = data.get("execution") if isinstance(data.get("execution"), dict) else None
        self.lease_expires_at = _parse_time(data.get("lease_expires_at"))
        # The signed execution grant of an allowed or approved action, for the tool service
        # (airlock_sdk.grants.verify); None otherwise.
        self.grant: str | None = data.get("grant") or None

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    @property
    def executable(self) -> bool:
        """Allowed at once or approved by people: the tool may run, once, with
        ``arguments``."""
        return self.status in EXECUTABLE

    @property
    def already_ran(self) -> bool:
        """The tool already ran for this action and its success was reported (e.g. a replay
        of the same submission found it): do not run it again; use :attr:`result`."""
        return self.status in RAN

    @property
    def result(self) -> Any:
        """The result recorded with the execution report (when short enough to be
        returned; else ``None``)."""
        return (self.execution or {}).get("result")

    @property
    def edited(self) -> bool:
        """A reviewer changed the arguments before approving."""
        return self.arguments != self.original_arguments

    def raise_for_status(self) -> DecisionBase:
        """Raise the :class:`~airlock_sdk.ActionNotPermitted` subclass that explains why
        this action may not run; return ``self`` if it may run or is still pending."""
        if self.executable or self.pending:
            return self
        raise not_permitted_for(self)

    def _seconds_to_expiry(self, clock_offset: float, grace: float) -> float | None:
        if self.expires_at is None:
            return None
        server_now = time.time() + clock_offset
        return self.expires_at.timestamp() + grace - server_now

    def _next_poll(
        self, deadline: float | None, clock_offset: float, grace: float, longest: float
    ) -> float | None:
        """Seconds for the next long-poll; 0 for one plain read (to confirm an expiry seen
        on the local clock); None when waiting is over (raises the right exception)."""
        remaining = math.inf if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            raise DecisionTimeout(self)
        to_expiry = self._seconds_to_expiry(clock_offset, grace)
        if to_expiry is not None and to_expiry <= 0:
            return 0.0
        return min(remaining, longest, math.inf if to_expiry is None else to_expiry)

    def _local_expiry(self) -> ActionExpired:
        when = self.expires_at.isoformat() if self.expires_at else "its deadline"
        return ActionExpired(self, reason=f"no human decided before it expired at {when}")

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} id={self.id} tool={self.tool!r} status={self.status}"
            f" reason_code={self.reason_code}>"
        )


class Decision(DecisionBase):
    """A synchronous client's view of one action."""

    def __init__(self, client: Airlock, data: dict[str, Any]) -> None:
        self._client = client
        super().__init__(data)

    def refresh(self, wait: float = 0) -> Decision:
        """Re-read the action; with ``wait``, long-poll up to that many seconds for a
        status change."""
        self._update(self._client._get_data(self.id, wait))
        return self

    def wait(self, timeout: float | None = None) -> Decision:
        """Wait until people (or expiry, or a kill switch) decide.

        Returns ``self`` when the tool may run (status ``allowed`` or ``approved``; run it
        with ``self.arguments``, which a reviewer may have edited). Raises the matching
        :class:`~airlock_sdk.ActionNotPermitted` otherwise, :class:`~airlock_sdk.DecisionTimeout`
        when ``timeout`` seconds pass first (``None``: until the action expires), and
        :class:`~airlock_sdk.GateUnavailable` if Airlock stays unreachable."""
        deadline = None if timeout is None else time.monotonic() + timeout
        confirming_expiry = False
        config = self._client.config
        while self.pending:
            poll = self._next_poll(
                deadline, self._client.clock_offset, config.expiry_grace, config.poll_seconds
            )
            if poll == 0.0:
                if confirming_expiry:
                    raise self._local_expiry()
                confirming_expiry = True
            try:
                self.refresh(wait=poll or 0)
            except GateUnavailable:
                # Keep trying while there is time left; the server may be restarting.
                to_expiry = self._seconds_to_expiry(self._client.clock_offset, 0)
                if (deadline is not None and time.monotonic() >= deadline) or (
                    to_expiry is not None and to_expiry <= 0
                ):
                    raise
        self.raise_for_status()
        return self

    def report(
        self, outcome: str = "succeeded", result: Any = None, error: str | None = None
    ) -> Decision:
        """Tell Airlock the tool ran (``succeeded``) or failed; carries ``payload_hash``."""
        return self._client.report(self, outcome, result, error=error)

    def withdraw(self) -> Decision:
        """The agent no longer needs this pending action: it is cancelled."""
        return self._client.withdraw(self)

    def heartbeat(self) -> Decision:
        """Renew this pending action's lease (see :meth:`Airlock.heartbeat`)."""
        return self._client.heartbeat(self)


class AsyncDecision(DecisionBase):
    """An asynchronous client's view of one action (same API, awaitable)."""

    def __init__(self, client: AsyncAirlock, data: dict[str, Any]) -> None:
        self._client = client
        super().__init__(data)

    async def refresh(self, wait: float = 0) -> AsyncDecision:
        self._update(await self._client._get_data(self.id, wait))
        return self

    async def wait(self, timeout: float | None = None) -> AsyncDecision:
        """See :meth:`Decision.wait`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        confirming_expiry = False
        config = self._client.config
        while self.pending:
            poll = self._next_poll(
                deadline, self._client.clock_offset, config.expiry_grace, config.poll_seconds
            )
            if poll == 0.0:
                if confirming_expiry:
                    raise self._local_expiry()
                confirming_expiry = True
            try:
                await self.refresh(wait=poll or 0)
            except GateUnavailable:
                to_expiry = self._seconds_to_expiry(self._client.clock_offset, 0)
                if (deadline is not None and time.monotonic() >= deadline) or (
                    to_expiry is not None and to_expiry <= 0
                ):
                    raise
                await asyncio.sleep(0)
        self.raise_for_status()
        return self

    async def report(
        self, outcome: str = "succeeded", result: Any = None, error: str | None = None
    ) -> AsyncDecision:
        return await self._client.report(self, outcome, result, error=error)

    async def withdraw(self) -> AsyncDecision:
        return await self._client.withdraw(self)

    async def heartbeat(self) -> AsyncDecision:
        return await self._client.heartbeat(self)
