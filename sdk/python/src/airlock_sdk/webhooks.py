"""Verifying Airlock's webhooks.

Each webhook is a JSON POST with the header
``X-Airlock-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`` keyed with
the agent's webhook secret (shown once when the agent is registered; rotatable). Verify the
raw body bytes exactly as received, before parsing them."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from airlock_sdk.errors import WebhookVerificationError

SIGNATURE_HEADER = "X-Airlock-Signature"
DEFAULT_TOLERANCE = 300


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value Airlock would send for ``body`` (for tests of a receiver)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify_signature(
    secret: str,
    body: bytes | str,
    header: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> int:
    """Check ``header`` against ``body``; return the signed timestamp.

    Raises :class:`~airlock_sdk.WebhookVerificationError` when the header is missing or
    malformed, when no ``v1`` signature matches (several are accepted, for secret
    rotation), or when the timestamp is more than ``tolerance`` seconds from ``now``
    (replays). Comparison is constant-time."""
    if not secret:
        raise WebhookVerificationError("No webhook secret configured.")
    if not header:
        raise WebhookVerificationError(f"Missing {SIGNATURE_HEADER} header.")
    raw = body.encode() if isinstance(body, str) else bytes(body)
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookVerificationError("Malformed signature timestamp.") from None
        elif key == "v1":
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        raise WebhookVerificationError("Malformed signature header.")
    current = time.time() if now is None else now
    if tolerance and abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("Signature timestamp outside the tolerance (replay?).")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise WebhookVerificationError("Signature does not match.")
    return timestamp


def parse_webhook(
    secret: str,
    body: bytes | str,
    header: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify, then parse the event: ``{event, action_id, status, feedback, payload_hash,
    arguments, at}``."""
    verify_signature(secret, body, header, tolerance=tolerance, now=now)
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise WebhookVerificationError("Signed body is not JSON.") from exc
    if not isinstance(event, dict):
        raise WebhookVerificationError("Signed body is not a JSON object.")
    return event
