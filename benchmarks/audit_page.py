"""Benchmark of the ``/audit`` page over a million events. Not a test; run by hand:

    .venv/bin/python benchmarks/audit_page.py                 # 1,000,000 events
    .venv/bin/python benchmarks/audit_page.py --events 200000 --requests 20

Starts its own throwaway PostgreSQL (see benchmarks/audit_verify.py, whose helpers it
uses), writes the events with COPY, then requests the page as an auditor through Django's
test client — the whole stack but the socket: middleware, session, permission checks, the
keyset query, the verification status, template rendering — and prints latencies.

Target from issue 8: ``/audit`` filtered by agent under 200 ms. Other filters are measured
for information (free text has no index: it scans until a page of matches is found).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.audit_verify import load_events, setup_django, throwaway_postgres  # noqa: E402

TARGET_MS = 200.0


def timed_requests(client, url: str, params: dict, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(url, params)
        latencies.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return latencies


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return (
        f"p50 {statistics.median(ordered):6.1f} ms  p95 {p95:6.1f} ms  "
        f"max {ordered[-1]:6.1f} ms  (n={len(ordered)})"
    )


def explain(sql_filter: str, params: list) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) SELECT * FROM audit_auditevent "
            f"WHERE {sql_filter} ORDER BY id DESC LIMIT 51",
            params,
        )
        return "\n".join("      " + row[0] for row in cursor.fetchall()[:4])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()

    server = throwaway_postgres()
    workdir = Path(tempfile.mkdtemp(prefix="airlock-bench-work-"))
    try:
        print("==> PostgreSQL (throwaway, fsync off)")
        url = server.start_with_database()
        setup_django(url, workdir)
        print(f"==> writing {args.events:,} events ({args.agents} agents, COPY)")
        seconds = load_events(args.events, args.agents)
        print(f"    done in {seconds:.1f} s")

        from django.apps import apps
        from django.contrib.auth import get_user_model
        from django.test import Client

        from rollout.reference import ensure_reference_data

        ensure_reference_data(apps)
        auditor = get_user_model().objects.create_user("bench-auditor", password="x")
        from django.contrib.auth.models import Group

        auditor.groups.add(Group.objects.get(name="auditor"))
        client = Client()
        client.force_login(auditor)
        client.get("/audit", {"agent": "agent-7"})  # warm up (connection, templates)

        agent = "agent-7"
        middle = args.events // 2
        cases = [
            ("agent filter, first page (the target)", {"agent": agent}),
            ("agent filter, a page deep in the log", {"agent": agent, "before": middle}),
            ("agent filter, next newer page", {"agent": agent, "after": middle}),
            ("no filter, first page", {}),
            ("verb filter", {"verb": "action.approved"}),
            ("agent + verb", {"agent": agent, "verb": "action.executed"}),
            ("correlation id", {"correlation_id": f"conv-{middle // 50}"}),
            ("action id", {"action": str(middle // 5)}),
            (
                "time range (one minute)",
                {"since": "2026-01-01T00:05:00", "until": "2026-01-01T00:06:00"},
            ),
            ("free text, common", {"q": "looks fine"}),
        ]
        print(f"==> GET /audit as an auditor, {args.requests} requests per case")
        results = {}
        for label, params in cases:
            latencies = timed_requests(client, "/audit", params, args.requests)
            results[label] = statistics.median(latencies)
            print(f"    {label:<42} {summary(latencies)}")
        rare = timed_requests(client, "/audit", {"q": "no-such-text-anywhere"}, 2)
        print(f"    {'free text, no match (full scan)':<42} {summary(rare)}")

        print("==> the agent query's plan")
        print(explain("agent_slug = %s", [agent]))
        print("==> the free-text query's plan")
        print(explain("UPPER(data::text) LIKE UPPER(%s)", ["%looks fine%"]))
        target = results["agent filter, first page (the target)"]
        verdict = "meets" if target < TARGET_MS else "MISSES"
        print(
            f"==> /audit?agent=… p50 {target:.1f} ms — {verdict} the target of {TARGET_MS:.0f} ms"
        )
    finally:
        from django.db import connections

        with contextlib.suppress(Exception):
            connections.close_all()
        server.remove()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
