"""Signing webhooks to agents.

``X-Airlock-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, with the
agent's webhook secret. Right after a rotation the previous secret signs too (a second
``v1=``) for a grace period, so an agent can switch secrets without missing a webhook.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any


def signature(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(
    secret: str, body: bytes, timestamp: int | None = None, extra_secrets: tuple[str, ...] = ()
) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    parts = [f"t={t}", f"v1={signature(secret, body, t)}"]
    parts += [f"v1={signature(old, body, t)}" for old in extra_secrets]
    return ",".join(parts)


def sign_with_agent_secrets(agent: Any, body: bytes) -> str:
    """Sign with the agent's current secret and, during its grace period, the previous one."""
    from django.utils import timezone

    extra = ()
    previous = getattr(agent, "previous_webhook_secret", "")
    until = getattr(agent, "previous_webhook_secret_until", None)
    if previous and until and timezone.now() < until:
        extra = (previous,)
    return sign(agent.webhook_secret, body, extra_secrets=extra)
