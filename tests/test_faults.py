"""Failing closed and degrading gracefully, against a PostgreSQL and Redis of the test's own
that it stops and starts: the gate never answers "allowed" without its database, and a
Redis outage costs live pushes, never decisions, audit or the kill switch."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid

import httpx
import pytest
import websockets

from tests.servers import ROOT, ServerProcess, login
from tests.throwaway import ThrowawayPostgres, ThrowawayRedis

pytestmark = pytest.mark.multiprocess

READ = {"tool": "get_order_status", "arguments": {"order_id": "ORD-1"}}
EMAIL = {"tool": "send_email", "arguments": {"to": "dana@example.com", "subject": "Hi"}}


@pytest.fixture(scope="module")
def stack():
    """Own PostgreSQL + Redis, migrated and seeded, and one server process on them."""
    from tests.conftest import free_port

    pg, redis = ThrowawayPostgres(), ThrowawayRedis()
    pg.start()
    pg.create_database()
    redis.start()
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")
        },
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DATABASE_URL": pg.url,
        "REDIS_URL": redis.url,
        "SECRET_KEY": "fault-tests",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DEBUG": "0",
        "SECURE_COOKIES": "0",
        "AUDIT_CHECKPOINT_DIR": str(pg.dir / "checkpoints"),
    }

    def manage(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    manage("migrate", "--noinput")
    manage("seed_demo")
    token = manage("agent_token", "support-assistant").strip()
    server = ServerProcess(free_port(), extra_env=env)
    try:
        server.wait_ready()
        yield {"pg": pg, "redis": redis, "server": server, "token": token, "manage": manage}
    finally:
        server.stop()
        redis.remove()
        pg.remove()


def gate(stack, body: dict) -> httpx.Response:
    return httpx.post(
        stack["server"].url + "/api/v1/actions",
        json=body,
        headers={"Authorization": f"Bearer {stack['token']}", "Idempotency-Key": uuid.uuid4().hex},
        timeout=30,
    )


def test_postgres_down__gate_answers_503_never_allowed__then_recovers(stack):
    assert gate(stack, READ).json()["status"] == "allowed"
    stack["pg"].stop()
    answers = [gate(stack, READ) for _ in range(3)]
    assert {r.status_code for r in answers} == {503}
    assert {r.json()["code"] for r in answers} == {"unavailable"}
    stack["pg"].start()
    recovered = [gate(stack, READ) for _ in range(3)]
    assert recovered[-1].status_code == 201 and recovered[-1].json()["status"] == "allowed"


def test_redis_down__gate_decisions_audit_and_kill_switch_keep_working(stack):
    server = stack["server"]
    stack["redis"].stop()
    # The gate still answers, and pending actions can still be decided
    assert gate(stack, READ).json()["status"] == "allowed"
    pending = gate(stack, EMAIL).json()
    assert pending["status"] == "pending"
    with contextlib.closing(login(server, "reviewer", "airlock-demo")) as person:
        decided = person.post(
            f"/api/v1/actions/{pending['id']}/decisions", json={"verdict": "approve"}
        )
        assert decided.status_code == 201, decided.text
        assert decided.json()["status"] in {"approved", "pending"}
    # A long-poll still returns (re-reading instead of waiting for a wake-up)
    polled = httpx.get(
        f"{server.url}/api/v1/actions/{pending['id']}?wait=1",
        headers={"Authorization": f"Bearer {stack['token']}"},
        timeout=30,
    )
    assert polled.status_code == 200
    # A kill switch engaged from another process while Redis is down stops the gate
    stack["manage"]("kill", "agent", "support-assistant", "--reason", "redis outage drill")
    assert gate(stack, READ).json()["reason_code"] == "kill_switch"
    assert "chain intact" in stack["manage"]("audit_verify")
    # When Redis returns, dashboards connect and hear events again
    stack["redis"].start()
    with contextlib.closing(login(server, "reviewer", "airlock-demo")) as person:
        cookie = f"sessionid={person.cookies['sessionid']}"

    async def hello() -> dict:
        async with websockets.connect(
            server.url.replace("http", "ws") + "/ws/queue/",
            additional_headers={"Cookie": cookie, "Origin": server.url},
        ) as socket:
            return json.loads(await asyncio.wait_for(socket.recv(), 30))

    assert asyncio.run(hello())["type"] == "hello"
