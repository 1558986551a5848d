"""Airlock SDK: ask Airlock before every tool call, wait for people, report what ran.

Quick start::

    from airlock_sdk import Airlock

    airlock = Airlock("http://127.0.0.1:8000", token)

    @airlock.gated(tool="send_email", effect="write")
    def send_email(to: str, subject: str, body: str) -> str: ...
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from airlock_sdk._core import Config, RetryPolicy
from airlock_sdk._version import __version__
from airlock_sdk.aio import AsyncAirlock
from airlock_sdk.canonical import canonical_json, payload_hash
from airlock_sdk.client import Airlock
from airlock_sdk.decision import AsyncDecision, Decision
from airlock_sdk.errors import (
    ActionCancelled,
    ActionDenied,
    ActionExpired,
    ActionNotPermitted,
    ActionRejected,
    ActionRevoked,
    ActionShadowed,
    AirlockAPIError,
    AirlockError,
    AuthenticationError,
    DecisionTimeout,
    GateUnavailable,
    WebhookVerificationError,
)
from airlock_sdk.gating import current_grant
from airlock_sdk.gating import decorator as _decorator
from airlock_sdk.webhooks import SIGNATURE_HEADER, parse_webhook, verify_signature

_default: Airlock | None = None
_default_lock = threading.Lock()


def configure(url: str | None = None, token: str | None = None, **options: Any) -> Airlock:
    """Set the client that module-level :func:`gated` uses (else built from the
    ``AIRLOCK_URL`` / ``AIRLOCK_TOKEN`` environment variables on first use)."""
    global _default
    with _default_lock:
        _default = Airlock(url, token, **options)
        return _default


def default_client() -> Airlock:
    global _default
    with _default_lock:
        if _default is None:
            _default = Airlock()
        return _default


def gated(
    tool: str | None = None,
    *,
    effect: str | None = None,
    timeout: float | None = None,
    exclude: tuple[str, ...] = ("self", "cls"),
    **options: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """:meth:`Airlock.gated` with the default client, looked up at call time (so modules
    can be decorated before :func:`configure` runs)."""
    return _decorator(
        default_client,
        lambda: default_client().async_twin(),
        tool,
        effect,
        timeout,
        exclude,
        options,
    )


__all__ = [
    "SIGNATURE_HEADER",
    "ActionCancelled",
    "ActionDenied",
    "ActionExpired",
    "ActionNotPermitted",
    "ActionRejected",
    "ActionRevoked",
    "ActionShadowed",
    "Airlock",
    "AirlockAPIError",
    "AirlockError",
    "AsyncAirlock",
    "AsyncDecision",
    "AuthenticationError",
    "Config",
    "Decision",
    "DecisionTimeout",
    "GateUnavailable",
    "RetryPolicy",
    "WebhookVerificationError",
    "__version__",
    "canonical_json",
    "configure",
    "current_grant",
    "default_client",
    "gated",
    "parse_webhook",
    "payload_hash",
    "verify_signature",
]
