"""Websockets are accepted only from the site's own origin.

A browser sends its cookies with a websocket to any port of a host, whatever page opened
it, and websockets are not bound by the same-origin policy: the ``Origin`` header is the
only sign of which page asks. Channels' ``AllowedHostsOriginValidator`` compares its host
alone, so a page on another port (or over plain http) of an allowed host read the live
queue with the victim's session. Here the whole origin counts — scheme, host and port:

* the site's own origin, i.e. the ``Host`` the socket was opened on (one of
  ``ALLOWED_HOSTS``, as Django requires for any request) with the scheme of the connection
  (``wss`` → ``https``; behind a TLS proxy, ``SECURE_PROXY_SSL_HEADER`` as Django reads it);
* or one of ``CSRF_TRUSTED_ORIGINS``, compared exactly (a wildcard entry is not honoured).

Anything else — another scheme, host or port, ``null``, no ``Origin`` at all — is refused
before the socket is accepted (the handshake is answered 403).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]


def parse_origin(value: str) -> Origin | None:
    """``(scheme, host, port)`` of an origin (``scheme://host[:port]``), the port made
    explicit; None for anything else (``null``, a path, an unknown scheme)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.username or parts.password or parts.query or parts.fragment:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _scheme(scope: dict) -> str:
    """``https`` or ``http``: the scheme the page was loaded with, as Django would say."""
    if settings.SECURE_PROXY_SSL_HEADER:
        header, secure_value = settings.SECURE_PROXY_SSL_HEADER
        name = header.removeprefix("HTTP_").replace("_", "-").lower().encode()
        forwarded = _header(scope, name)
        if forwarded is not None:
            return "https" if forwarded.split(",", 1)[0].strip() == secure_value else "http"
    return "https" if scope.get("scheme") in ("wss", "https") else "http"


def own_origin(scope: dict) -> Origin | None:
    """The origin of the site as this connection reached it; None if its ``Host`` is not
    one of ``ALLOWED_HOSTS``."""
    host = _header(scope, b"host")
    if not host:
        return None
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    return parse_origin(f"{_scheme(scope)}://{host}")


def trusted_origins() -> set[Origin]:
    origins = (parse_origin(value) for value in settings.CSRF_TRUSTED_ORIGINS if "*" not in value)
    return {origin for origin in origins if origin is not None}


def origin_allowed(scope: dict) -> bool:
    origin = parse_origin(_header(scope, b"origin") or "")
    if origin is None:
        return False
    return origin == own_origin(scope) or origin in trusted_origins()


class SameOriginValidator:
    """ASGI middleware for websockets: passes a connection on only when its ``Origin`` is
    the site's own or a trusted one (see the module docstring); refuses it otherwise."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("SameOriginValidator is for websocket connections only")
        if origin_allowed(scope):
            return await self.application(scope, receive, send)
        logger.info(
            "websocket refused: origin %r is not this site's (host %r)",
            _header(scope, b"origin"),
            _header(scope, b"host"),
        )
        return await WebsocketDenier()(scope, receive, send)
