"""Signing webhooks to agents: ``X-Airlock-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
"<t>.<body>">`` with the agent's webhook secret."""

import hashlib
import hmac
import time


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"
