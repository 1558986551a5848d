"""Benchmark of ``audit_verify`` over a million events. Not a test; run by hand:

    .venv/bin/python benchmarks/audit_verify.py               # 1,000,000 events
    .venv/bin/python benchmarks/audit_verify.py --events 200000 --agents 20

One run does everything by itself and cleans up after itself: a throwaway PostgreSQL on a
free loopback port in a temp dir (like scripts/test), ``migrate``, then the events —
written with ``COPY`` and real hashes (computed here, checked by the walk) in per-agent
partitions joined by a checkpoint every 10,000 events — then the measurements, then the
server stopped and the temp dir removed.

Measured (target from issue 8: >= 100,000 events/s for the full walk):
- the full verification (``audit.verification.verify_chain``: server-side cursors of tuples in
  one REPEATABLE READ snapshot, every hash recomputed, checkpoints and head table checked),
  in one process and with the default number of processes (``audit.parallel``);
- ORM ``.values()`` dicts through the same walker on a slice, for the ratio;
- an incremental verification of 10,000 new events after a recorded full run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_EVENTS_PER_SECOND = 100_000
CHECKPOINT_EVERY = 10_000


# --- a throwaway PostgreSQL (tests/throwaway.py) -----------------------------------------

from tests.throwaway import ThrowawayPostgres  # noqa: E402  (after ROOT is on sys.path)

# Bulk-load settings: the million events are written once and read many times.
BULK_LOAD_SETTINGS = {
    "shared_buffers": "512MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
}


def throwaway_postgres() -> ThrowawayPostgres:
    """A throwaway PostgreSQL (fsync off) tuned for loading events; ``remove()`` ends it."""
    return ThrowawayPostgres(settings=BULK_LOAD_SETTINGS)


def setup_django(database_url: str, workdir: Path) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("SECRET_KEY", "benchmark-secret-key")
    os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1,localhost"
    os.environ["AUDIT_CHECKPOINT_DIR"] = str(workdir / "checkpoints")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
    os.environ.pop("REDIS_URL", None)
    import django

    import config  # noqa: F401  (Celery's app reads the settings at import)

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# --- a million events, fast -----------------------------------------------------------------

VERB_CYCLE = [
    ("action.submitted", "agent"),
    ("action.viewed", "user"),
    ("action.approval_recorded", "user"),
    ("action.approved", "user"),
    ("action.executed", "agent"),
]


def _event_data(verb: str, n: int) -> dict:
    if verb == "action.submitted":
        return {
            "tool": "send_email",
            "outcome": "pending",
            "reason_code": "requires_approval",
            "reasons": ["send_email always requires human approval"],
            "risk": "medium",
            "policy_version": 3,
            "payload_hash": f"{n:064x}",
            "switch_id": None,
        }
    if verb == "action.approval_recorded":
        return {"status": "pending", "comment": f"looks fine ({n})", "approvals": 1, "required": 1}
    return {"status": "approved", "n": n}


def sign_last_checkpoint() -> None:
    """Append the signed checkpoint line a live installation would have written for the
    newest of the bulk-loaded ``audit.checkpoint`` events (``manage.py audit_verify``
    refuses a database with checkpoint events and no signed line of its installation)."""
    from audit.checkpoints import append_record
    from audit.models import AuditEvent

    event = AuditEvent.objects.filter(verb="audit.checkpoint").order_by("-id").first()
    if event is None:
        return
    append_record(
        {
            "at": event.created_at.isoformat(),
            "event_id": event.pk,
            "partition": event.partition,
            "seq": event.chain_seq,
            "hash": event.hash,
            "partitions": len(event.data.get("heads") or {}) + 1,
        }
    )


def generate_events(count: int, agents: int) -> Iterator[tuple]:
    """Rows in ``EVENT_COLUMNS`` order with real hashes: ``agents`` partitions (plus the
    global one) joined by an ``audit.checkpoint`` every ``CHECKPOINT_EVERY`` events."""
    from audit.canonical import canonical_json
    from audit.chain import row_digest

    heads: dict[str, tuple[int, str]] = {}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for event_id in range(1, count + 1):
        at = (start + timedelta(milliseconds=event_id)).isoformat()
        if event_id % CHECKPOINT_EVERY == 0:
            partition, agent, verb, actor_type, actor = (
                "global",
                "",
                "audit.checkpoint",
                "system",
                "audit",
            )
            data = {"heads": {p: [s, h] for p, (s, h) in sorted(heads.items()) if p != "global"}}
            target_type, target_id, correlation = "", "", ""
        else:
            agent = f"agent-{event_id % agents}"
            partition = agent
            verb, actor_type = VERB_CYCLE[event_id % len(VERB_CYCLE)]
            actor = agent if actor_type == "agent" else f"reviewer{event_id % 17}"
            data = _event_data(verb, event_id)
            target_type, target_id = "action", str(event_id // 5)
            correlation = f"conv-{event_id // 50}"
        seq, prev = heads.get(partition, (0, ""))
        seq += 1
        digest = row_digest(partition, seq, at, actor_type, actor, verb, target_type, target_id,
                            agent, correlation, data, prev)  # fmt: skip
        heads[partition] = (seq, digest)
        yield (event_id, partition, seq, at, actor_type, actor, verb, target_type, target_id,
               agent, correlation, canonical_json(data), prev, digest)  # fmt: skip


def load_events(count: int, agents: int) -> float:
    """COPY the generated events in, set the head table and the id sequence. Seconds."""
    from django.db import connection

    from audit.chain import EVENT_COLUMNS

    started = time.perf_counter()
    heads: dict[str, tuple[int, str]] = {}
    connection.ensure_connection()
    raw = connection.connection
    raw.autocommit = False  # one transaction for the load (Django's connection autocommits)
    columns = ", ".join(EVENT_COLUMNS)
    with raw.cursor() as cursor:
        with cursor.copy(f"COPY audit_auditevent ({columns}) FROM STDIN") as copy:
            for row in generate_events(count, agents):
                copy.write_row(row)
                heads[row[1]] = (row[2], row[13])
                if row[0] % 200_000 == 0:
                    print(f"    … {row[0]:,} events written", flush=True)
        cursor.executemany(
            "INSERT INTO audit_auditchainhead (partition, last_seq, last_hash) VALUES (%s, %s, %s)",
            [(p, s, h) for p, (s, h) in heads.items()],
        )
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('audit_auditevent', 'id'), %s)", [count]
        )
    raw.commit()
    raw.autocommit = True  # back to what Django expects; VACUUM runs outside a transaction
    with raw.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE audit_auditevent")
    return time.perf_counter() - started


# --- measurements -----------------------------------------------------------------------------


def measure_full(runs: int, workers: int) -> list[tuple[float, int, bool]]:
    from audit.verification import verify_chain

    results = []
    for _ in range(runs):
        started = time.perf_counter()
        result = verify_chain(workers=workers)
        results.append((time.perf_counter() - started, result.events, result.ok))
        if not result.ok:
            print(f"    verification FAILED at {result.first_broken_id}: {result.problem}")
    return results


def measure_orm_path(limit: int) -> float:
    """ORM ``.values()`` dicts (the foundation's iteration) through the same walker
    (``verify_rows``), one process, over ``limit`` events, for comparison. Events/s."""
    from django.db import transaction

    from audit.chain import EVENT_COLUMNS
    from audit.models import AuditEvent
    from audit.walker import verify_rows

    with transaction.atomic():
        rows = (
            AuditEvent.objects.order_by("id").values(*EVENT_COLUMNS).filter(id__lte=limit)
        ).iterator(chunk_size=5000)
        started = time.perf_counter()
        result = verify_rows(rows)
        elapsed = time.perf_counter() - started
    return result.events / elapsed


def measure_incremental(new_events: int) -> tuple[float, int, float]:
    """Record a full run, append ``new_events`` through ``append_event``, then time the
    incremental run. (seconds, events checked, seconds of the full run)."""
    from django.db import transaction

    from audit.chain import Actor, append_event
    from audit.verification import run_verification

    started = time.perf_counter()
    full = run_verification(kind="full", triggered_by="benchmark")
    full_seconds = time.perf_counter() - started
    assert full.ok, full.problem
    for i in range(new_events):
        with transaction.atomic():
            append_event(
                verb="action.viewed",
                actor=Actor.system("benchmark"),
                target_type="action",
                target_id=i,
                agent_slug=f"agent-{i % 7}",
                data={"i": i},
            )
    started = time.perf_counter()
    incremental = run_verification(kind="incremental", triggered_by="benchmark")
    assert incremental.ok, incremental.problem
    return time.perf_counter() - started, incremental.events_checked, full_seconds


def measure_export(workdir: Path) -> str:
    """``manage.py audit_export`` of everything to a file, then ``audit_verify --file``."""
    import resource

    from django.core.management import call_command

    target = workdir / "export.jsonl"
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    call_command("audit_export", output=str(target), stderr=io.StringIO())
    export_seconds = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    size = target.stat().st_size
    out = io.StringIO()
    started = time.perf_counter()
    call_command("audit_verify", file=target, stdout=out)
    verify_seconds = time.perf_counter() - started
    target.unlink()
    return (
        f"export {size / 1e6:,.0f} MB in {export_seconds:.1f} s (peak RSS grew "
        f"{(rss_after - rss_before) / 1024:.0f} MB); offline verify in {verify_seconds:.1f} s: "
        f"{out.getvalue().strip().splitlines()[0]}"
    )


def measure_cli(count: int) -> str:
    from django.core.management import call_command

    out = io.StringIO()
    started = time.perf_counter()
    call_command("audit_verify", stdout=out)
    return f"{out.getvalue().strip()} in {time.perf_counter() - started:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--orm-slice", type=int, default=200_000)
    args = parser.parse_args()

    server = throwaway_postgres()
    workdir = Path(tempfile.mkdtemp(prefix="airlock-bench-work-"))
    try:
        print("==> PostgreSQL (throwaway, fsync off)")
        url = server.start_with_database()
        setup_django(url, workdir)
        print(f"==> writing {args.events:,} events with real hashes ({args.agents} agents, COPY)")
        seconds = load_events(args.events, args.agents)
        print(
            f"    {args.events:,} events in {seconds:.1f} s ({args.events / seconds:,.0f}/s incl. hashing)"
        )

        from audit.parallel import default_workers

        best_by_workers = {}
        for workers in sorted({1, default_workers()}):
            print(f"==> full verification, {workers} process(es), {args.runs} runs")
            for elapsed, events, ok in measure_full(args.runs, workers):
                rate = events / elapsed
                state = "ok" if ok else "BROKEN"
                print(f"    {events:,} events in {elapsed:.2f} s = {rate:,.0f} events/s ({state})")
                best_by_workers[workers] = max(best_by_workers.get(workers, 0), rate)
        best = best_by_workers[default_workers()]
        verdict = "meets" if best >= TARGET_EVENTS_PER_SECOND else "MISSES"
        print(
            f"    best: one process {best_by_workers[1]:,.0f}/s; the default "
            f"({default_workers()} processes) {best:,.0f}/s — {verdict} the target of "
            f"{TARGET_EVENTS_PER_SECOND:,}/s"
        )

        slice_size = min(args.orm_slice, args.events)
        print(f"==> ORM .values() dicts, one process, over {slice_size:,} events, for comparison")
        orm_rate = measure_orm_path(slice_size)
        print(
            f"    {orm_rate:,.0f} events/s (tuples, one process: {best_by_workers[1] / orm_rate:.1f}x)"
        )

        print("==> manage.py audit_verify (records the run, compares the head table)")
        sign_last_checkpoint()
        print(f"    {measure_cli(args.events)}")

        print("==> manage.py audit_export of everything, then audit_verify --file")
        print(f"    {measure_export(workdir)}")

        print("==> incremental verification after 10,000 appended events")
        seconds, checked, full_seconds = measure_incremental(10_000)
        print(
            f"    full run {full_seconds:.2f} s; incremental checked {checked:,} events in {seconds * 1000:.0f} ms"
        )
        print(json.dumps({"events": args.events, "best_events_per_second": round(best),
                          "single_process_events_per_second": round(best_by_workers[1]),
                          "orm_events_per_second": round(orm_rate),
                          "incremental_ms": round(seconds * 1000)}))  # fmt: skip
    finally:
        from django.db import connections

        with contextlib.suppress(Exception):
            connections.close_all()
        server.remove()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
