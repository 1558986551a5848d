"""A hundred dashboards on the Redis channel layer all hear one event. Guards the
channels-redis / redis-py pairing (redis-py 8 broke the default layer under load)."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
import websockets

from tests import factories
from tests.servers import login, start_servers

pytestmark = [pytest.mark.multiprocess, pytest.mark.django_db(transaction=True)]
CLIENTS = 100


def test_fanout__100_sockets_on_redis_layer__all_receive_the_submission(support_agent, reviewer):
    (server,) = start_servers(1)
    token = factories.make_token(support_agent)
    session = login(server, reviewer.username)
    cookie = f"sessionid={session.cookies['sessionid']}"
    ws_url = server.url.replace("http://", "ws://") + "/ws/queue/"

    async def scenario() -> list[dict]:
        sockets = []
        try:
            for _ in range(CLIENTS):
                socket = await websockets.connect(
                    ws_url, additional_headers={"Cookie": cookie, "Origin": server.url}
                )
                assert json.loads(await socket.recv())["type"] == "hello"
                sockets.append(socket)
            response = await asyncio.to_thread(
                httpx.post,
                server.url + "/api/v1/actions",
                json={"tool": "send_email", "arguments": {"to": "a@example.com"}},
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
                timeout=30,
            )
            action_id = response.json()["id"]

            async def first_event_about(socket) -> dict:
                async with asyncio.timeout(60):
                    while True:
                        message = json.loads(await socket.recv())
                        if message.get("action_id") == action_id:
                            return message

            return await asyncio.gather(*(first_event_about(s) for s in sockets))
        finally:
            await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)

    try:
        received = asyncio.run(scenario())
    finally:
        session.close()
        server.stop()
    assert len(received) == CLIENTS
    assert {(m["change"], m["status"]) for m in received} == {("submitted", "pending")}
