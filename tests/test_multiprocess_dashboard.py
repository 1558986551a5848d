"""The web tier scales out: two ASGI server processes share PostgreSQL and the Redis channel
layer, and a reviewer's websocket on one hears of actions submitted and decided through the
other. Timeouts are generous: speed belongs to the benchmark."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
import websockets

from tests import factories
from tests.servers import ServerProcess, start_servers

pytestmark = [pytest.mark.multiprocess, pytest.mark.django_db(transaction=True)]

EVENT_TIMEOUT = 20


@pytest.fixture(scope="module")
def two_servers(django_db_setup, django_db_blocker) -> Iterator[list[ServerProcess]]:
    servers = start_servers(2)
    yield servers
    for server in servers:
        server.stop()


def login(server: ServerProcess, username: str) -> httpx.Client:
    """A browser-like session on ``server``: session cookie and CSRF token."""
    client = httpx.Client(base_url=server.url, timeout=30)
    client.get("/accounts/login/")
    response = client.post(
        "/accounts/login/",
        data={
            "username": username,
            "password": "pw-for-tests",
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
        headers={"Referer": server.url + "/accounts/login/"},
    )
    assert response.status_code == 302, response.text[:300]
    return client


async def wait_for_event(socket, action_id: int, change: str) -> dict:
    async with asyncio.timeout(EVENT_TIMEOUT):
        while True:
            message = json.loads(await socket.recv())
            if message.get("action_id") == action_id and message.get("change") == change:
                return message


def test_multiprocess__socket_on_server_1__hears_submission_and_decision_via_server_2(
    two_servers, support_agent, reviewer, reviewer2
):
    server_1, server_2 = two_servers
    token = factories.make_token(support_agent)
    watcher = login(server_1, reviewer.username)
    decider = login(server_2, reviewer2.username)
    cookie = f"sessionid={watcher.cookies['sessionid']}"
    ws_url = server_1.url.replace("http://", "ws://") + "/ws/queue/"

    async def scenario() -> tuple[dict, dict]:
        async with websockets.connect(
            ws_url, additional_headers={"Cookie": cookie, "Origin": server_1.url}
        ) as socket:
            assert json.loads(await socket.recv())["type"] == "hello"
            # When the agent submits through server 2
            response = await asyncio.to_thread(
                httpx.post,
                server_2.url + "/api/v1/actions",
                json={"tool": "send_email", "arguments": {"to": "a@example.com"}},
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
                timeout=30,
            )
            assert response.status_code == 201, response.text
            action_id = response.json()["id"]
            seen_hash = response.json()["payload_hash"]
            submitted = await wait_for_event(socket, action_id, "submitted")
            # and another reviewer approves it on server 2's dashboard
            approved = await asyncio.to_thread(
                decider.post,
                f"/actions/{action_id}/approve",
                data={
                    "comment": "",
                    "payload_hash": seen_hash,
                    "csrfmiddlewaretoken": decider.cookies["csrftoken"],
                },
                headers={"Referer": server_2.url + "/"},
            )
            assert approved.status_code == 302, approved.text[:300]
            decided = await wait_for_event(socket, action_id, "approved")
            return submitted, decided

    try:
        submitted, decided = asyncio.run(scenario())
    finally:
        watcher.close()
        decider.close()
    # Then server 1's socket heard both, from the other process
    assert (submitted["status"], submitted["agent"]) == ("pending", "support-assistant")
    assert decided["status"] == "approved"
