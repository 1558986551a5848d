"""Benchmark of the reviewer queue page (``/``) with 10,000 pending actions across 20 agents.
Not a test; run by hand:

    .venv/bin/python benchmarks/queue_page.py
    .venv/bin/python benchmarks/queue_page.py --actions 20000 --agents 40 --requests 60

Self-contained like benchmarks/gate.py, whose ``Services`` it uses: a throwaway PostgreSQL
and Redis on free loopback ports, ``migrate``, ``seed_demo``, the data set, the real ASGI
server (uvicorn, ``config.asgi:application``), then everything stopped and removed.

The data set is written in bulk (rows as the gate would have written them: risks, expiries,
reasons, evidence, releases, some approvals already given) rather than through the gate,
which would take minutes and measure the gate instead. Figures:

- SQL queries per page (Django test client in one process; its timings are shown too but
  include the test client's template instrumentation, so they read high);
- time per page end to end over HTTP against uvicorn, logged in as the demo reviewer (who
  sees everything): the figure the target is about.

Target (issue 4): queue page < 150 ms.
"""

from __future__ import annotations

import argparse
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

TARGET_MS = 150.0
REVIEWER, PASSWORD = "reviewer", "airlock-demo"  # from seed_demo
# Each run measures these pages; {agent} is the slug of one seeded agent.
PAGES = {
    "queue, page 1": "/",
    "queue, page 200": "/?page=200",
    "filtered (agent + risk)": "/?agent={agent}&risk=high",
    "live refresh fragment": "/?partial=1",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--actions", type=int, default=10_000, help="pending actions (10000)")
    add("--agents", type=int, default=20, help="agents they are spread over (20)")
    add("--requests", type=int, default=40, help="timed requests per page (40)")
    add("--fsync", choices=["on", "off"], default="off", help="PostgreSQL fsync (off)")
    add("--deadline", type=int, default=280, help="abort the whole run after this many s")
    add("--seed", action="store_true", help=argparse.SUPPRESS)  # the in-process step
    args = parser.parse_args()
    args.workers = 1  # one uvicorn process: a page's own latency, not a throughput test
    args.http_rate = "100000/s"
    return args


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(millis: list[float]) -> dict:
    return {
        "p50": statistics.median(millis),
        "p95": percentile(millis, 0.95),
        "max": max(millis),
    }


# --- the in-process step (runs in its own process, with the server's environment) -----------


def seed_and_measure_in_process(args: argparse.Namespace) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    import config  # noqa: F401  (before the settings: see MANAGE in benchmarks/gate.py)

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    agents = seed(args.actions, args.agents)
    client = Client(HTTP_HOST="127.0.0.1")
    assert client.login(username=REVIEWER, password=PASSWORD)
    figures = {}
    for name, path in PAGES.items():
        url = path.format(agent=agents[0])
        for _ in range(3):  # warm-up
            client.get(url)
        millis = []
        for _ in range(args.requests):
            start = time.perf_counter()
            response = client.get(url)
            millis.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        figures[name] = {**summary(millis), "queries": len(queries.captured_queries)}
    return {"agents": agents, "in_process": figures}


def seed(count: int, agent_count: int) -> list[str]:
    """``count`` pending actions spread over ``agent_count`` agents, in bulk."""
    import random
    import uuid
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from approvals.models import Action, Decision
    from audit.canonical import payload_hash
    from audit.chain import Actor
    from rollout.actions import register_agent, release_for
    from rollout.models import Agent

    rng = random.Random(4)
    rules = [
        {
            "tool": "send_email",
            "effect": "write",
            "rule": "requires_approval",
            "base_risk": "medium",
        },
        {"tool": "create_refund_request", "effect": "write", "rule": "requires_approval"},
        {"tool": "update_crm_record", "effect": "write", "rule": "requires_approval"},
    ]
    for index in range(Agent.objects.count(), agent_count):
        register_agent(
            actor=Actor.system("benchmark"),
            slug=f"bench-agent-{index:02d}",
            name=f"Bench Agent {index:02d}",
            tier="supervised",
            rules=rules,
        )
    agents = list(Agent.objects.select_related("current_policy").order_by("slug")[:agent_count])
    releases = {
        agent.pk: release_for(agent, {"model": "gpt-5.1", "prompt_version": f"{agent.slug}-v3"})
        for agent in agents
    }
    other_reviewer = get_user_model().objects.get(username="reviewer2")
    now = timezone.now()
    risks = ["low"] * 4 + ["medium"] * 3 + ["high"] * 2 + ["critical"]
    rows = []
    for index in range(count):
        agent = agents[index % len(agents)]
        risk = rng.choice(risks)
        tool = rng.choice(rules)["tool"]
        arguments = {
            "order_id": f"ORD-{index:06d}",
            "amount": round(rng.uniform(5, 900), 2),
            "currency": "EUR",
            "note": "Customer reported a late delivery; refund per policy §4.2.",
        }
        rows.append(
            Action(
                agent=agent,
                release=releases[agent.pk],
                tool=tool,
                effect="write",
                arguments=arguments,
                original_arguments=arguments,
                summary=f"Refund {arguments['amount']} EUR for {arguments['order_id']}",
                rationale={
                    "objective": "Resolve the ticket within policy",
                    "plan": "Refund, then email the customer",
                    "alternatives": ["Offer a voucher"],
                    "confidence": 0.8,
                },
                evidence=[
                    {"kind": "ticket", "title": "Ticket", "content": "Parcel 9 days late."},
                    {"kind": "policy", "title": "Policy §4.2", "url": "https://example.com/p"},
                ],
                blast_radius={"environment": "production", "reversible": True},
                status="pending",
                reason_code="requires_approval",
                reasons=[f"{tool} always requires human approval"],
                risk=risk,
                required_approvals=2 if risk in {"high", "critical"} else 1,
                needs_critical_approver=risk == "critical",
                payload_hash=payload_hash(arguments),
                policy_version=agent.current_policy,
                idempotency_key=uuid.uuid4().hex,
                request_hash="0" * 64,
                expires_at=now + timedelta(seconds=rng.randint(300, 8 * 3600)),
            )
        )
    Action.objects.bulk_create(rows, batch_size=1000)
    # A third of the two-approval actions already carry one approval.
    Decision.objects.bulk_create(
        [
            Decision(
                action=action,
                reviewer=other_reviewer,
                verdict="approve",
                payload_hash=action.payload_hash,
            )
            for action in rows
            if action.required_approvals == 2 and action.pk % 3 == 0
        ],
        batch_size=1000,
    )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return [agent.slug for agent in agents]


# --- the run --------------------------------------------------------------------------------


def measure_over_http(port: int, agent: str, requests: int) -> dict:
    import httpx

    base = f"http://127.0.0.1:{port}"
    figures = {}
    with httpx.Client(base_url=base, timeout=60) as client:
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
        for name, path in PAGES.items():
            url = path.format(agent=agent)
            for _ in range(3):
                client.get(url)
            millis = []
            for _ in range(requests):
                start = time.perf_counter()
                response = client.get(url)
                millis.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200, (url, response.status_code)
            figures[name] = {**summary(millis), "bytes": len(response.content)}
    return figures


def main() -> int:
    args = parse_args()
    if args.seed:
        print(json.dumps(seed_and_measure_in_process(args)))
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
        print(f"==> {args.actions} pending actions over {args.agents} agents; in-process timing")
        seeded = json.loads(
            services.python_module(
                "benchmarks.queue_page",
                "--seed",
                "--actions",
                str(args.actions),
                "--agents",
                str(args.agents),
                "--requests",
                str(args.requests),
                timeout=args.deadline,
            )
            .strip()
            .splitlines()[-1]
        )
        print("==> uvicorn; timing over HTTP", flush=True)
        services.start_server({"SECURE_COOKIES": "0"})  # plain-HTTP loopback login
        over_http = measure_over_http(services.http_port, seeded["agents"][0], args.requests)
        report(args, seeded["in_process"], over_http)
        met = over_http["queue, page 1"]["p95"] < TARGET_MS
        return 0 if met else 3
    except (Deadline, BenchmarkError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
        print("==> stopping uvicorn, Redis and PostgreSQL; removing the temp dir", flush=True)
        services.stop()
        print(f"==> done in {time.monotonic() - t0:.1f} s", flush=True)


def report(args: argparse.Namespace, in_process: dict, over_http: dict) -> None:
    print()
    print(f"Queue page, {args.actions} pending actions, {args.agents} agents, 25 cards a page")
    print(f"{'page':<26}{'HTTP p50':>10}{'p95':>8}{'max':>9}{'queries':>9}{'test client p50':>17}")
    for name in PAGES:
        server, http = in_process[name], over_http[name]
        print(
            f"{name:<26}{http['p50']:>8.1f}ms{http['p95']:>6.1f}ms{http['max']:>7.1f}ms"
            f"{server['queries']:>9}{server['p50']:>15.1f}ms"
        )
    page = over_http["queue, page 1"]
    verdict = "MET" if page["p95"] < TARGET_MS else "NOT MET"
    print(
        f"\ntarget: queue page 1 over HTTP p95 < {TARGET_MS:.0f} ms: {page['p95']:.1f} ms {verdict}"
    )


if __name__ == "__main__":
    sys.exit(main())
