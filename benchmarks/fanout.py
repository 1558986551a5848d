"""Benchmark of the live queue's fan-out: time from a decision's commit to its receipt by
100 connected reviewer websockets, on the Redis channel layer. Not a test; run by hand:

    .venv/bin/python benchmarks/fanout.py
    .venv/bin/python benchmarks/fanout.py --sockets 200 --decisions 200 --interval 0.05

Self-contained like benchmarks/gate.py, whose ``Services`` it uses: a throwaway PostgreSQL
and Redis, ``migrate``, ``seed_demo``, the real ASGI server (uvicorn, two workers by
default, ``config.asgi:application``), then everything stopped and removed.

How: this process logs in as the demo reviewer and opens ``--sockets`` websockets to
``/ws/queue/`` (spread over the server's workers by the kernel). A driver process (Django,
the same settings) submits a pending action through the gate's write path and approves it
through ``approvals.actions.approve`` inside a transaction whose first on-commit hook reads
the wall clock: that is the commit time. Each socket notes the wall clock when the
``approved`` event arrives. Both processes run on this machine, so their clocks agree.

Target (issue 4): fan-out p99 < 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_P99_MS = 250.0
REVIEWER, PASSWORD = "reviewer", "airlock-demo"  # from seed_demo
APPROVER = "reviewer2"
AGENT = "support-assistant"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--sockets", type=int, default=100, help="connected reviewer websockets (100)")
    add("--decisions", type=int, default=100, help="decisions to time (100)")
    add("--interval", type=float, default=0.1, help="seconds between decisions (0.1)")
    add("--workers", type=int, default=2, help="uvicorn worker processes (2)")
    add("--fsync", choices=["on", "off"], default="off", help="PostgreSQL fsync (off)")
    add(
        "--layer",
        choices=["pubsub", "core"],
        default="pubsub",
        help="channels-redis layer: pubsub (the shipped one, on RedisPubSubChannelLayer) or core "
        "(channels-redis's default RedisChannelLayer, for comparison)",
    )
    add("--deadline", type=int, default=280, help="abort the whole run after this many s")
    add("--driver", action="store_true", help=argparse.SUPPRESS)  # the deciding process
    args = parser.parse_args()
    args.http_rate = "100000/s"
    return args


# --- the driver (its own process, with the server's environment) --------------------------


def drive(decisions: int, interval: float) -> None:
    """Waits for "go" on stdin, then submits and approves ``decisions`` actions, printing
    one JSON line {"id", "committed_at"} per approval."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")  # or --layer's
    import uuid

    import django

    import config  # noqa: F401  (before the settings: see MANAGE in benchmarks/gate.py)

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from approvals import actions
    from rollout.models import Agent

    agent = Agent.objects.get(slug=AGENT)
    approver = get_user_model().objects.get(username=APPROVER)
    sys.stdin.readline()
    for index in range(decisions):
        action = actions.submit_action(
            agent=agent,
            idempotency_key=uuid.uuid4().hex,
            body={"tool": "send_email", "arguments": {"to": f"c{index}@example.com"}},
        ).action
        time.sleep(interval / 2)
        committed_at: list[float] = []
        with transaction.atomic():
            # Registered before approve()'s own hooks, so it runs first: the commit time.
            transaction.on_commit(lambda stamps=committed_at: stamps.append(time.time()))
            actions.approve(action_id=action.pk, user=approver)
        print(json.dumps({"id": action.pk, "committed_at": committed_at[0]}), flush=True)
        time.sleep(interval / 2)


# --- the run --------------------------------------------------------------------------------


CORE_SETTINGS = """\
from benchmarks.settings import *  # noqa: F403
from benchmarks.settings import REDIS_URL

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "capacity": 1500, "expiry": 30},
    }
}
"""


def use_core_layer(services) -> None:
    """Server and driver on channels-redis's default ``RedisChannelLayer`` (the layer shipped
    before the switch to pub/sub): a settings module written to the run's temp dir (removed
    with it), on top of ``benchmarks.settings``."""
    (services.tmp / "fanout_core_settings.py").write_text(CORE_SETTINGS)
    services.env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(services.tmp), str(ROOT), services.env.get("PYTHONPATH", "")])
    )
    services.env["DJANGO_SETTINGS_MODULE"] = "fanout_core_settings"


def session_cookie(port: int) -> str:
    import httpx

    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=30) as client:
        client.get("/accounts/login/")
        response = client.post(
            "/accounts/login/",
            data={
                "username": REVIEWER,
                "password": PASSWORD,
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
            headers={"Referer": base + "/accounts/login/"},
        )
        assert response.status_code == 302, response.text[:300]
        return client.cookies["sessionid"]


async def listen(url: str, headers: dict, received: dict, ready: asyncio.Event, stop) -> None:
    """One reviewer's socket: notes when each ``approved`` event arrives."""
    import websockets

    async with websockets.connect(url, additional_headers=headers, max_queue=None) as socket:
        assert json.loads(await socket.recv())["type"] == "hello"
        ready.set()
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(socket.recv(), timeout=0.5)
            except TimeoutError:
                continue
            arrived = time.time()
            message = json.loads(raw)
            if message.get("change") == "approved":
                received.setdefault(message["action_id"], []).append(arrived)


async def measure(services, args: argparse.Namespace) -> dict:
    cookie = session_cookie(services.http_port)
    url = f"ws://127.0.0.1:{services.http_port}/ws/queue/"
    headers = {"Cookie": f"sessionid={cookie}", "Origin": f"http://127.0.0.1:{services.http_port}"}
    received: dict[int, list[float]] = {}
    stop = asyncio.Event()
    readies = [asyncio.Event() for _ in range(args.sockets)]
    listeners = [
        asyncio.create_task(listen(url, headers, received, ready, stop)) for ready in readies
    ]
    await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in readies)), 60)
    print(f"    {args.sockets} sockets connected", flush=True)

    driver = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.fanout",
        "--driver",
        "--decisions",
        str(args.decisions),
        "--interval",
        str(args.interval),
        cwd=ROOT,
        env=services.env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    driver.stdin.write(b"go\n")
    await driver.stdin.drain()
    committed: dict[int, float] = {}
    while line := await driver.stdout.readline():
        record = json.loads(line)
        committed[record["id"]] = record["committed_at"]
    if await driver.wait() != 0:
        raise RuntimeError("the driver failed")
    await asyncio.sleep(2)  # stragglers
    stop.set()
    await asyncio.gather(*listeners)

    latencies = [
        (arrived - committed[action_id]) * 1000
        for action_id, arrivals in received.items()
        if action_id in committed
        for arrived in arrivals
    ]
    return {
        "expected": len(committed) * args.sockets,
        "delivered": len(latencies),
        "latencies": latencies,
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    args = parse_args()
    if args.driver:
        drive(args.decisions, args.interval)
        return 0

    from benchmarks.gate import BenchmarkError, Deadline, Services

    def on_alarm(signum, frame):
        raise Deadline(f"the run exceeded --deadline {args.deadline} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.deadline)
    t0 = time.monotonic()
    services = Services(args)
    try:
        print("==> PostgreSQL and Redis", flush=True)
        services.start_databases()
        print("==> migrate, seed_demo", flush=True)
        services.manage("migrate", "--noinput")
        services.manage("seed_demo")
        if args.layer == "core":
            use_core_layer(services)
        print(f"==> uvicorn, {args.workers} workers, {args.layer} layer", flush=True)
        services.start_server({"SECURE_COOKIES": "0"})  # plain-HTTP loopback login
        print(f"==> {args.decisions} decisions, one every {args.interval} s", flush=True)
        figures = asyncio.run(measure(services, args))
        return report(args, figures)
    except (Deadline, BenchmarkError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
        print("==> stopping uvicorn, Redis and PostgreSQL; removing the temp dir", flush=True)
        services.stop()
        print(f"==> done in {time.monotonic() - t0:.1f} s", flush=True)


def report(args: argparse.Namespace, figures: dict) -> int:
    latencies = figures["latencies"]
    print()
    print(
        f"Fan-out: {args.sockets} reviewer sockets, {args.decisions} decisions "
        f"({1 / args.interval:.0f}/s), Redis {args.layer} channel layer, "
        f"{args.workers} uvicorn workers"
    )
    print(f"delivered {figures['delivered']} of {figures['expected']} events")
    if not latencies:
        print("no deliveries: target NOT MET")
        return 3
    p99 = percentile(latencies, 0.99)
    print(
        f"commit → socket: p50 {statistics.median(latencies):.1f} ms · "
        f"p90 {percentile(latencies, 0.90):.1f} ms · p99 {p99:.1f} ms · "
        f"max {max(latencies):.1f} ms"
    )
    met = p99 < TARGET_P99_MS and figures["delivered"] == figures["expected"]
    print(
        f"target: p99 < {TARGET_P99_MS:.0f} ms, every event delivered: {'MET' if met else 'NOT MET'}"
    )
    return 0 if met else 3


if __name__ == "__main__":
    sys.exit(main())
