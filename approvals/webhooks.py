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


class WebhookRefused(Exception):
    """Delivery refused before connecting: the destination is not a public address."""


def post_webhook(url: str, *, timeout: float = 10, **kwargs: Any) -> Any:
    """POST to an agent's callback or a chat webhook, re-checked at delivery (SSRF, DNS
    rebinding): the host is resolved once, every address checked with
    ``approvals.validators.address_problem``, and the connection made to the checked
    address — with the original ``Host`` header and, for https, SNI and certificate
    verification against the hostname. A host in ``WEBHOOK_ALLOWED_HOSTS`` is posted to as
    is. Raises ``WebhookRefused`` without connecting; never follows redirects."""
    from urllib.parse import urlsplit, urlunsplit

    import httpx
    from django.conf import settings

    from approvals.validators import address_problem, default_port, resolve

    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise WebhookRefused("Only http and https URLs with a host are delivered to.")
    host = parts.hostname
    if host in settings.WEBHOOK_ALLOWED_HOSTS:
        return httpx.post(url, timeout=timeout, follow_redirects=False, **kwargs)
    port = default_port(parts)
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise WebhookRefused(f"{host} does not resolve") from exc
    if not addresses:
        raise WebhookRefused(f"{host} does not resolve")
    for address in addresses:
        problem = address_problem(address)
        if problem:
            raise WebhookRefused(f"{host} resolves to {address}: {problem}")
    address = addresses[0].split("%")[0]
    literal = f"[{address}]" if ":" in address else address
    pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
    headers = {**(kwargs.pop("headers", None) or {}), "Host": parts.netloc.rsplit("@", 1)[-1]}
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        return client.post(pinned, headers=headers, extensions=extensions, **kwargs)
