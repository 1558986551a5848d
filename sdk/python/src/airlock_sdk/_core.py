"""What the sync and async clients share: configuration, request bodies, retry policy and
the reading of responses. No I/O here."""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from airlock_sdk._version import __version__
from airlock_sdk.errors import AirlockAPIError, AirlockError, AuthenticationError

DEFAULT_URL = "http://127.0.0.1:8000"
API = "/api/v1"
# Statuses worth another try: throttled, or the server (or a proxy in front of it) failing.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Keep reports well under the server's 256 KiB body limit.
MAX_RESULT_CHARS = 128 * 1024
MAX_ERROR_CHARS = 10_000
SUBMIT_FIELDS = (
    "summary",
    "rationale",
    "evidence",
    "blast_radius",
    "release",
    "on_behalf_of",
    "callback_url",
    "compensation",
    "correlation_id",
    "lease_seconds",
)
# The lease a blocking wait keeps on its pending action (``Config.lease_seconds``): long
# enough to ride out a lost poll or a server restart, short enough that a card whose agent
# died leaves the queue within a minute or so.
DEFAULT_LEASE_SECONDS = 60


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one logical call tries before failing closed.

    ``attempts`` tries in all; between them an exponential backoff with jitter starting at
    ``backoff`` seconds, capped at ``max_backoff``; never more than ``give_up_after``
    seconds for the whole call. A ``Retry-After`` header (429/503) is honoured."""

    attempts: int = 6
    backoff: float = 0.2
    max_backoff: float = 5.0
    give_up_after: float = 30.0

    def delay(self, retry: int) -> float:
        cap = min(self.max_backoff, self.backoff * (2**retry))
        return random.uniform(cap / 2, cap)


@dataclass(frozen=True)
class Config:
    """Settings shared by :class:`~airlock_sdk.Airlock` and :class:`~airlock_sdk.AsyncAirlock`."""

    url: str
    token: str
    timeout: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    release: dict[str, Any] | None = None
    # Longest single long-poll (the server caps ``wait`` at 60 s).
    poll_seconds: float = 25.0
    # How long after ``expires_at`` (on the server's clock) a still-pending action is taken
    # as expired without waiting for the server to mark it.
    expiry_grace: float = 3.0
    # Lease (seconds, 5..3600) the blocking wait of ``gated`` puts on a pending action; its
    # polls renew it. None: no lease (the action waits for people even if the agent dies).
    lease_seconds: int | None = DEFAULT_LEASE_SECONDS
    user_agent: str = f"airlock-sdk-python/{__version__}"

    @classmethod
    def build(
        cls,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        release: dict[str, Any] | None = None,
        poll_seconds: float = 25.0,
        expiry_grace: float = 3.0,
        lease_seconds: int | None = DEFAULT_LEASE_SECONDS,
    ) -> Config:
        url = url or os.environ.get("AIRLOCK_URL") or DEFAULT_URL
        token = token or os.environ.get("AIRLOCK_TOKEN") or ""
        if not token:
            raise AirlockError("No Airlock token: pass token= or set AIRLOCK_TOKEN.")
        return cls(
            url=url.rstrip("/"),
            token=token,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            release=dict(release) if release else None,
            poll_seconds=max(1.0, min(poll_seconds, 60.0)),
            expiry_grace=expiry_grace,
            lease_seconds=lease_seconds,
        )

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "User-Agent": self.user_agent,
        }


@dataclass
class Call:
    """One logical API call; retries resend exactly this (same body, same key)."""

    method: str
    path: str
    body: Any = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    # 409 codes that, on a retry, mean an earlier try of this same call already succeeded
    # (its response was lost): the caller then re-reads the action instead of failing.
    done_if_retried: frozenset[str] = frozenset()


class AlreadyDone(Exception):
    """Internal: a retry hit a ``done_if_retried`` conflict."""


class Retry(Exception):
    """Internal: this response is worth another try (after ``delay`` if the server said)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


def submit_call(
    config: Config,
    tool: str,
    arguments: dict[str, Any],
    idempotency_key: str | None,
    fields: dict[str, Any],
) -> Call:
    if not isinstance(arguments, dict):
        raise TypeError("arguments must be a dict (a JSON object)")
    body: dict[str, Any] = {"tool": tool, "arguments": jsonable(arguments, strict=True)}
    release = {**(config.release or {}), **(fields.pop("release", None) or {})}
    if release:
        body["release"] = release
    for name, value in fields.items():
        if name not in SUBMIT_FIELDS:
            raise TypeError(f"unknown field {name!r}")
        if value is not None:
            body[name] = jsonable(value, strict=True)
    return Call(
        "POST",
        f"{API}/actions",
        body=body,
        headers={"Idempotency-Key": idempotency_key or new_idempotency_key()},
    )


def get_call(config: Config, action_id: int, wait: float = 0) -> Call:
    wait = max(0.0, min(wait, 60.0))
    params = {"wait": f"{wait:.1f}"} if wait >= 0.1 else None
    return Call(
        "GET",
        f"{API}/actions/{int(action_id)}",
        params=params,
        timeout=config.timeout + wait if params else None,
    )


def report_call(
    action_id: int, payload_hash: str, outcome: str, result: Any, error: str | None
) -> Call:
    if outcome not in ("succeeded", "failed"):
        raise ValueError("outcome must be 'succeeded' or 'failed'")
    body: dict[str, Any] = {"outcome": outcome, "payload_hash": payload_hash}
    if result is not None:
        body["result"] = bounded_result(result)
    if error:
        body["error"] = str(error)[:MAX_ERROR_CHARS]
    return Call(
        "POST",
        f"{API}/actions/{int(action_id)}/execution",
        body=body,
        done_if_retried=frozenset({"already_reported"}),
    )


def withdraw_call(action_id: int) -> Call:
    return Call(
        "POST",
        f"{API}/actions/{int(action_id)}/withdraw",
        done_if_retried=frozenset({"not_pending"}),
    )


def heartbeat_call(action_id: int) -> Call:
    return Call("POST", f"{API}/actions/{int(action_id)}/heartbeat")


def rollback_call(action_id: int, outcome: str, result: Any) -> Call:
    if outcome not in ("rolled_back", "failed"):
        raise ValueError("outcome must be 'rolled_back' or 'failed'")
    body: dict[str, Any] = {"outcome": outcome}
    if result is not None:
        body["result"] = bounded_result(result)
    return Call(
        "POST",
        f"{API}/actions/{int(action_id)}/rollback",
        body=body,
        done_if_retried=frozenset({"rollback_not_requested"}),
    )


def jsonable(value: Any, *, strict: bool = False) -> Any:
    """``value`` as plain JSON data. ``strict``: refuse what JSON cannot carry (arguments
    must round-trip exactly, since approvals are bound to their hash); otherwise fall back
    to ``str`` for unknown objects (results and errors are for people to read)."""
    try:
        text = json.dumps(value, allow_nan=False, default=None if strict else str)
    except (TypeError, ValueError) as exc:
        if strict:
            raise TypeError(f"not JSON-serialisable: {exc}") from exc
        text = json.dumps(repr(value))
    return json.loads(text)


def bounded_result(result: Any) -> Any:
    data = jsonable(result)
    text = json.dumps(data, ensure_ascii=False)
    if len(text) <= MAX_RESULT_CHARS:
        return data
    return {"truncated": True, "chars": len(text), "preview": text[:4096]}


def read_response(response: httpx.Response, call: Call, retried: bool) -> dict[str, Any]:
    """The JSON body of a successful response; raises :class:`Retry`, :class:`AlreadyDone`
    or an :class:`AirlockAPIError` otherwise."""
    status = response.status_code
    if status in RETRY_STATUSES:
        raise Retry(f"HTTP {status}", retry_after(response))
    try:
        data = response.json()
    except ValueError:
        data = None
    if 200 <= status < 300:
        if not isinstance(data, dict):
            raise AirlockError(f"Unexpected response from Airlock (HTTP {status}, not JSON).")
        return data
    if not isinstance(data, dict):
        data = {"code": "error", "detail": response.text[:300]}
    code = str(data.get("code") or "error")
    if status == 409 and retried and code in call.done_if_retried:
        raise AlreadyDone(code)
    kind = AuthenticationError if status == 401 else AirlockAPIError
    raise kind(status, code, str(data.get("detail") or ""), data.get("fields"))


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def server_clock_offset(response: httpx.Response) -> float | None:
    """Seconds to add to the local clock to get the server's (from its Date header)."""
    value = response.headers.get("Date")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None
