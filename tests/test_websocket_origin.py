"""Websockets only from the site's own origin (``core.websocket_origin``): scheme, host and
port of the ``Origin`` must be those the socket was opened on, or one of
``CSRF_TRUSTED_ORIGINS`` exactly. The rule alone, then through the ASGI stack with a
logged-in session."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.test import Client

from config.asgi import application
from core.websocket_origin import origin_allowed
from tests import sockets

TIMEOUT = 5


def scope(origin: str | None, host: str = "127.0.0.1:8000", scheme: str = "ws", **extra) -> dict:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    headers += [(name.encode(), value.encode()) for name, value in extra.items()]
    return {"type": "websocket", "scheme": scheme, "headers": headers}


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "allowed"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "ws", True),  # same origin
        ("HTTP://127.0.0.1:8000", "127.0.0.1:8000", "ws", True),  # case does not matter
        ("http://127.0.0.1", "127.0.0.1", "ws", True),  # default port, implied on both
        ("http://127.0.0.1:80", "127.0.0.1", "ws", True),
        ("https://127.0.0.1", "127.0.0.1", "wss", True),
        ("http://127.0.0.1:8001", "127.0.0.1:8000", "ws", False),  # another port
        ("http://127.0.0.1", "127.0.0.1:8000", "ws", False),
        ("https://127.0.0.1:8000", "127.0.0.1:8000", "ws", False),  # another scheme
        ("http://127.0.0.1", "127.0.0.1", "wss", False),  # plain page, TLS socket
        ("http://localhost:8000", "127.0.0.1:8000", "ws", False),  # another (allowed) host
        ("http://evil.example:8000", "127.0.0.1:8000", "ws", False),
        ("http://evil.example", "evil.example", "ws", False),  # Host not in ALLOWED_HOSTS
        ("null", "127.0.0.1:8000", "ws", False),  # sandboxed or file: page
        ("http://127.0.0.1:8000/path", "127.0.0.1:8000", "ws", False),
        ("http://user@127.0.0.1:8000", "127.0.0.1:8000", "ws", False),
        ("http://127.0.0.1:99999", "127.0.0.1:8000", "ws", False),  # not a port
        ("ftp://127.0.0.1:8000", "127.0.0.1:8000", "ws", False),
        (None, "127.0.0.1:8000", "ws", False),  # no Origin at all
    ],
)
def test_origin__compared_by_scheme_host_and_port(origin, host, scheme, allowed):
    assert origin_allowed(scope(origin, host, scheme)) is allowed


def test_origin__csrf_trusted_origins__exact_match_only(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://airlock.example.com", "https://*.example.org"]
    assert origin_allowed(scope("https://airlock.example.com"))
    assert origin_allowed(scope("https://airlock.example.com:443"))
    assert not origin_allowed(scope("http://airlock.example.com"))  # another scheme
    assert not origin_allowed(scope("https://airlock.example.com:8443"))  # another port
    assert not origin_allowed(scope("https://other.example.com"))
    assert not origin_allowed(scope("https://a.example.org"))  # wildcards are not honoured


def test_origin__behind_tls_proxy__scheme_from_forwarded_proto(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    behind_proxy = {"host": "127.0.0.1", "x-forwarded-proto": "https"}
    assert origin_allowed(scope("https://127.0.0.1", **behind_proxy))
    assert not origin_allowed(scope("http://127.0.0.1", **behind_proxy))
    assert origin_allowed(scope("http://127.0.0.1", host="127.0.0.1"))  # no header: as is


# --- through the ASGI stack, with the victim's session cookie ------------------------------


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    return f"{django_settings.SESSION_COOKIE_NAME}={key}".encode()


async def open_queue(reviewer, origin: bytes, host: bytes = b"127.0.0.1:8000"):
    cookie = await database_sync_to_async(session_cookie)(reviewer)
    headers = [(b"origin", origin), (b"host", host), (b"cookie", cookie)]
    return await sockets.connect(application, "/ws/queue/", headers)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_test_sockets")
@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        (b"http://127.0.0.1:8000", True),
        (b"https://airlock.example.com", True),  # in CSRF_TRUSTED_ORIGINS
        (b"http://127.0.0.1:8001", False),  # a page on another local port
        (b"https://127.0.0.1:8000", False),
        (b"http://localhost:8000", False),
    ],
)
async def test_queue_socket__origin__accepted_only_when_same_or_trusted(
    origin, accepted, settings, reviewer
):
    settings.CSRF_TRUSTED_ORIGINS = ["https://airlock.example.com"]
    communicator, connected, code = await open_queue(reviewer, origin)
    assert connected is accepted
    if accepted:
        assert (await communicator.receive_json_from(timeout=TIMEOUT))["type"] == "hello"
    else:
        assert code == 1000  # refused before accept: the handshake gets 403
