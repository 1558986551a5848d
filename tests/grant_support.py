"""A real tool service for grant tests: one endpoint behind the SDK's grant middleware,
served by uvicorn on a loopback port."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import httpx

import tests.sdk_path  # noqa: F401
from tests.conftest import ThreadedASGIServer

# isort: split
from airlock_sdk.grants import GrantMiddleware, KeySet, OnlineCheck


@contextlib.contextmanager
def tool_service(keyset: KeySet, online: OnlineCheck | None = None) -> Iterator[httpx.Client]:
    """A real tool service on a loopback port: one endpoint behind the SDK's middleware."""
    ran: list[dict] = []

    async def app(scope, receive, send):
        message = await receive()
        ran.append({"body": json.loads(message["body"]), "grant": scope["airlock.grant"].action_id})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"noted"})

    service = GrantMiddleware(
        app,
        tools={"/ticket_draft": "create_ticket_draft", "/send_email": "send_email"},
        keys=keyset,
        online=online,
    )
    server = ThreadedASGIServer(service)
    server.start()
    try:
        with httpx.Client(base_url=server.url) as client:
            client.ran = ran  # type: ignore[attr-defined]
            yield client
    finally:
        server.stop()
