"""Failing closed and degrading gracefully, against a PostgreSQL and Redis of the test's own
that it stops and starts, with two server processes and real Celery workers on them: the
gate never answers "allowed" without its database; a Redis outage costs live pushes, never
decisions, audit or the kill switch, and open dashboards are told to re-read when it
returns; a worker killed mid-delivery loses no webhook."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
import websockets

from tests.servers import ROOT, ServerProcess, login
from tests.throwaway import ThrowawayPostgres, ThrowawayRedis
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.multiprocess

READ = {"tool": "get_order_status", "arguments": {"order_id": "ORD-1"}}
EMAIL = {"tool": "send_email", "arguments": {"to": "dana@example.com", "subject": "Hi"}}
METRICS = {"tool": "get_metrics", "arguments": {}}
WAIT = 30  # seconds: generous, for a busy machine; every wait below ends as soon as it can


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
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",  # the test's webhook receiver
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
    ops_token = manage("agent_token", "ops-agent").strip()
    servers = [ServerProcess(free_port(), extra_env=env) for _ in range(2)]
    try:
        for server in servers:
            server.wait_ready()
        yield {
            "pg": pg,
            "redis": redis,
            "server": servers[0],
            "other": servers[1],
            "token": token,
            "ops_token": ops_token,
            "manage": manage,
            "env": env,
        }
    finally:
        for server in servers:
            server.stop()
        redis.remove()
        pg.remove()


def gate(stack, body: dict, *, server=None, token: str = "") -> httpx.Response:
    """An agent's gate call (support-assistant's unless ``token``), to the first server
    unless ``server``."""
    return httpx.post(
        (server or stack["server"]).url + "/api/v1/actions",
        json=body,
        headers={
            "Authorization": f"Bearer {token or stack['token']}",
            "Idempotency-Key": uuid.uuid4().hex,
        },
        timeout=30,
    )


def long_poll(stack, server, action_id: int, wait: int = 60) -> httpx.Response:
    return httpx.get(
        f"{server.url}/api/v1/actions/{action_id}?wait={wait}",
        headers={"Authorization": f"Bearer {stack['token']}"},
        timeout=wait + 30,
    )


def dashboard_headers(server, person: httpx.Client) -> dict:
    """What a logged-in browser sends when its page opens the websocket."""
    return {"Cookie": f"sessionid={person.cookies['sessionid']}", "Origin": server.url}


async def next_message(socket, matches, timeout: float = WAIT) -> dict:
    """The first message on ``socket`` for which ``matches`` is true (others skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await socket.recv())
            if matches(message):
                return message


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
    server, other = stack["server"], stack["other"]
    stack["redis"].stop()
    try:
        # The gate still answers, and pending actions can still be decided
        assert gate(stack, READ).json()["status"] == "allowed"
        pending = gate(stack, EMAIL).json()
        assert pending["status"] == "pending"
        with contextlib.closing(login(server, "reviewer", "airlock-demo")) as person:
            decided = person.post(
                f"/api/v1/actions/{pending['id']}/decisions", json={"verdict": "approve"}
            )
            assert decided.status_code == 201, decided.text
            assert decided.json()["status"] == "approved"
        # A long-poll still returns (re-reading instead of waiting for a wake-up)
        polled = long_poll(stack, server, pending["id"], wait=1)
        assert polled.status_code == 200 and polled.json()["status"] == "approved"
        # A kill switch engaged through the API of one process stops the gate of every
        # process at once: each gate call reads the switches from PostgreSQL
        assert gate(stack, METRICS, server=other, token=stack["ops_token"]).json()["status"] == (
            "allowed"
        )
        with contextlib.closing(login(server, "incident", "airlock-demo")) as operator:
            engaged = operator.post(
                "/api/v1/kill-switches",
                json={"scope": "agent", "target": "ops-agent", "reason": "redis outage drill"},
            )
            assert engaged.status_code == 201, engaged.text
        for process in (other, server):
            stopped = gate(stack, METRICS, server=process, token=stack["ops_token"]).json()
            assert (stopped["status"], stopped["reason_code"]) == ("denied", "kill_switch")
        assert gate(stack, READ, server=other).json()["status"] == "allowed"  # its scope only
        assert "chain intact" in stack["manage"]("audit_verify")
    finally:
        stack["redis"].start()


def test_redis_restart__open_dashboard_told_to_resync_then_hears_events__long_poll_answered(
    stack,
):
    """The socket of an open dashboard outlives a Redis restart (pub/sub re-subscribes
    quietly); the server tells the page to re-read what it missed, and pushes resume."""
    server, other = stack["server"], stack["other"]
    fallbacks_logged = server.output().count("long-poll falls back to re-reading")

    async def scenario(reviewer: httpx.Client, reviewer_b: httpx.Client, governor) -> None:
        url = server.url.replace("http", "ws") + "/ws/queue/"
        headers = dashboard_headers(server, reviewer)
        async with (
            websockets.connect(url, additional_headers=headers) as socket,
            websockets.connect(
                server.url.replace("http", "ws") + "/ws/governance/",
                additional_headers=dashboard_headers(server, governor),
            ) as governance,
        ):
            assert (await next_message(socket, lambda m: True))["type"] == "hello"
            assert (await next_message(governance, lambda m: True))["type"] == "hello"
            # Before: an action submitted through the other process reaches this socket
            before = (await asyncio.to_thread(gate, stack, EMAIL, server=other)).json()
            await next_message(socket, lambda m: m.get("action_id") == before["id"])

            await asyncio.to_thread(stack["redis"].stop)
            # During: actions come and are decided; their events reach no one
            missed = (await asyncio.to_thread(gate, stack, EMAIL, server=other)).json()
            awaited = (await asyncio.to_thread(gate, stack, EMAIL, server=other)).json()
            assert missed["status"] == awaited["status"] == "pending"
            # A page opening its socket now is refused (it retries with backoff)
            with pytest.raises(websockets.InvalidStatus):
                async with websockets.connect(url, additional_headers=headers):
                    pass
            # An agent's long-poll, started now, is answered when the action is decided
            poll = asyncio.ensure_future(asyncio.to_thread(long_poll, stack, server, awaited["id"]))
            async with asyncio.timeout(WAIT):
                # Its request has found the layer down and re-reads the database instead
                while server.output().count("long-poll falls back") == fallbacks_logged:
                    await asyncio.sleep(0.1)
            decided = await asyncio.to_thread(
                reviewer_b.post,
                f"/api/v1/actions/{awaited['id']}/decisions",
                json={"verdict": "approve"},
            )
            assert decided.status_code == 201, decided.text
            polled = await asyncio.wait_for(poll, WAIT)
            assert polled.status_code == 200 and polled.json()["status"] == "approved"

            await asyncio.to_thread(stack["redis"].start)
            # After: the still-open sockets are told to re-read...
            await next_message(socket, lambda m: m["type"] == "resync")
            await next_message(governance, lambda m: m["type"] == "resync")
            # ...and the page's re-read shows what was missed
            region = await asyncio.to_thread(reviewer.get, "/", params={"partial": "1"})
            assert f'id="card-{missed["id"]}"' in region.text
            assert f'id="card-{awaited["id"]}"' not in region.text  # decided meanwhile
            # Pushes flow again, from the other process too
            after = (await asyncio.to_thread(gate, stack, EMAIL, server=other)).json()
            heard = await next_message(socket, lambda m: m.get("action_id") == after["id"])
            assert (heard["change"], heard["status"]) == ("submitted", "pending")
        # And a page (re)connecting now is greeted
        async with websockets.connect(url, additional_headers=headers) as socket:
            assert (await next_message(socket, lambda m: True))["type"] == "hello"

    with (
        contextlib.closing(login(server, "reviewer", "airlock-demo")) as reviewer,
        contextlib.closing(login(other, "reviewer", "airlock-demo")) as reviewer_b,
        contextlib.closing(login(server, "governor", "airlock-demo")) as governor,
    ):
        try:
            asyncio.run(scenario(reviewer, reviewer_b, governor))
        finally:
            stack["redis"].start()  # started again even when the test failed midway


# --- a Celery worker killed mid-delivery --------------------------------------------------

# The broker's visibility timeout for these workers: how long after a worker took a task a
# later worker may take it back (production: an hour; see config/settings/base.py).
VISIBILITY_SECONDS = 2


def start_worker(stack, log: Path, *, pool: str) -> subprocess.Popen:
    """A Celery worker on the test's Redis broker and PostgreSQL, in a session of its own so
    that killing the session kills its pool processes too."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            f"--pool={pool}",
            "--concurrency=1",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env={**stack["env"], "CELERY_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_SECONDS)},
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),  # a file, never a pipe nobody reads (a full one blocks it)
        start_new_session=True,
    )


def stop_worker(worker: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)


def pool_processes(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def outbox_row(stack, action_id: int) -> tuple:
    with psycopg.connect(stack["pg"].url) as db:
        return db.execute(
            "SELECT id, delivered_at, failed_at, attempts FROM approvals_outbox"
            " WHERE kind = 'webhook' AND action_id = %s",
            [action_id],
        ).fetchone()


def test_worker_killed_mid_delivery__next_worker_delivers_webhook__decision_kept(stack, tmp_path):
    server, log = stack["server"], tmp_path / "workers.log"
    with Receiver(hold_first=2) as receiver:
        pending = gate(stack, {**EMAIL, "callback_url": receiver.url}).json()
        first = start_worker(stack, log, pool="prefork")
        try:
            with contextlib.closing(login(server, "reviewer", "airlock-demo")) as person:
                decided = person.post(
                    f"/api/v1/actions/{pending['id']}/decisions", json={"verdict": "approve"}
                )
            assert decided.json()["status"] == "approved", decided.text
            # The webhook is being delivered (the receiver holds it) when the worker's pool
            # process is killed...
            assert receiver.arrivals.acquire(timeout=90), log.read_text()[-3000:]
            (child,) = pool_processes(first.pid)
            os.kill(child, signal.SIGKILL)
            # ...so the worker puts the task back at once, and a new pool process delivers
            # it again; this time the whole worker is killed mid-delivery
            assert receiver.arrivals.acquire(timeout=60), log.read_text()[-3000:]
            taken_at = time.monotonic()
            stop_worker(first)
        finally:
            stop_worker(first)
        # The task is still unacknowledged on the broker: a new worker takes it back once
        # the visibility timeout has passed since the dead worker took it.
        time.sleep(max(0.0, VISIBILITY_SECONDS - (time.monotonic() - taken_at)))
        second = start_worker(stack, log, pool="solo")
        try:
            assert receiver.arrivals.acquire(timeout=90), log.read_text()[-3000:]
            deadline = time.monotonic() + WAIT
            while outbox_row(stack, pending["id"])[1] is None and time.monotonic() < deadline:
                time.sleep(0.2)  # the worker marks the row right after the receiver answers
        finally:
            stop_worker(second)
    outbox_id, delivered_at, failed_at, attempts = outbox_row(stack, pending["id"])
    assert delivered_at is not None and failed_at is None and attempts == 3
    # The receiver saw the same delivery three times (delivery_id lets it drop repeats)
    bodies = [json.loads(body) for _, body in receiver.received]
    assert [(b["delivery_id"], b["event"], b["status"]) for b in bodies] == [
        (outbox_id, "action.approved", "approved")
    ] * 3
    # Nothing about the decision was lost or changed
    polled = long_poll(stack, server, pending["id"], wait=0)
    assert polled.json()["status"] == "approved"
    assert "chain intact" in stack["manage"]("audit_verify")
