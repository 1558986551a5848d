"""The full verification on several cores (PostgreSQL).

Recomputing a million SHA-256 digests over canonical JSON is CPU work in Python, so a full
walk is split into slices of ids, each walked by its own process in **the same snapshot**
(``pg_export_snapshot`` / ``SET TRANSACTION SNAPSHOT``), and the slices are joined in
order: each partition's first event in a slice must link to its last event in the slices
before, and a checkpoint that names a partition the slice had not seen yet must agree with
that partition's head from the slices before. The result is the same as one walk's
(``audit.verification.verify_chain``), first broken event included.

Worker processes are forked and talk to PostgreSQL on their own connections; they never
touch the parent's (and end with ``os._exit``, so nothing of it is closed from there).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from audit.walker import (
    EVENT_SELECT,
    ChainWalker,
    Expectations,
    Progress,
    VerifyResult,
    head_expectations,
    merge_expectations,
    use_one_snapshot,
)

# Below this many events one process is quicker than starting others.
MIN_EVENTS_PER_WORKER = 100_000
_PROGRESS: Any = None  # a shared counter of walked events, set in each worker


def default_workers() -> int:
    configured = getattr(settings, "AUDIT_VERIFY_WORKERS", 0)
    return configured or min(4, os.cpu_count() or 1)


def can_fork_workers() -> bool:
    """On PostgreSQL, outside any transaction (workers see only committed data), and not
    from a daemonic process (a Celery prefork child may not have children)."""
    return (
        connection.vendor == "postgresql"
        and not connection.in_atomic_block
        and not multiprocessing.current_process().daemon
        and "fork" in multiprocessing.get_all_start_methods()
    )


def worth_it(workers: int) -> bool:
    """Enough events that several processes finish sooner than one."""
    if workers < 2:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id) - min(id) + 1, 0) FROM audit_auditevent")
        (span,) = cursor.fetchone()
    return span >= 2 * MIN_EVENTS_PER_WORKER


def _connection_params() -> dict[str, Any]:
    params = connection.get_connection_params()
    keep = ("dbname", "user", "password", "host", "port", "options", "sslmode", "sslrootcert")
    return {key: params[key] for key in keep if params.get(key) not in (None, "")}


def _init_worker(counter: Any) -> None:
    global _PROGRESS
    _PROGRESS = counter


def _walk_slice(
    snapshot: str, low: int, high: int, claims: Expectations, params: dict
) -> dict[str, Any]:
    """Walk ids ``low..high`` in the exported snapshot; report what joining needs."""
    import psycopg
    from psycopg import sql
    from psycopg.types.string import TextLoader

    options = (params.pop("options", "") + " -c TimeZone=UTC").strip()
    with psycopg.connect(**params, options=options) as conn:
        conn.adapters.register_loader("jsonb", TextLoader)  # JSON as text, as Django reads it
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        walker = ChainWalker(expectations=claims, open_start=True)
        with conn.cursor(name="audit_verify_slice") as cursor:
            cursor.execute(
                f"SELECT {EVENT_SELECT} FROM audit_auditevent "  # noqa: S608 (constants)
                "WHERE id >= %s AND id <= %s ORDER BY id",
                [low, high],
            )
            reported = 0

            def progress(count: int, _last_id: int) -> None:
                nonlocal reported
                if _PROGRESS is not None:
                    with _PROGRESS.get_lock():
                        _PROGRESS.value += count - reported
                reported = count

            def rows() -> Any:
                while batch := cursor.fetchmany(10_000):
                    yield from batch

            walker.walk(rows(), data_is_text=True, progress=progress, progress_every=20_000)
            progress(walker.count, 0)
    return {
        "count": walker.count,
        "failure": walker.failure,
        "last_id": walker.last_id,
        "heads": walker.heads,
        "first_links": walker.first_links,
        "deferred": walker.checkpoint_refs,
        "expectations_checked": walker.expectations_checked,
    }


def _join(slices: list[dict[str, Any]]) -> tuple[ChainWalker, int]:
    """Join the slices in id order into one walker's state (or its first failure)."""
    joined = ChainWalker()
    events = 0
    for part in slices:
        problems: list[tuple[int, str]] = []
        for partition, (event_id, seq, prev_hash) in part["first_links"].items():
            last_seq, last_hash = joined.heads.get(partition, (0, ""))
            if seq != last_seq + 1:
                problems.append(
                    (event_id, f"sequence gap in {partition}: expected {last_seq + 1}, found {seq}")
                )
            elif prev_hash != last_hash:
                problems.append((event_id, "prev_hash does not match the previous event"))
        for event_id, partition, seq, digest in part["deferred"]:
            if joined.heads.get(partition, (0, "")) != (seq, digest):
                problems.append((event_id, f"checkpoint disagrees with chain {partition}"))
        if part["failure"]:
            problems.append(tuple(part["failure"]))
        joined.expectations_checked += part["expectations_checked"]
        if problems:
            joined.failure = min(problems)
            joined.count = events + part["count"]
            return joined, events + part["count"]
        events += part["count"]
        joined.heads.update(part["heads"])
        joined.last_id = part["last_id"] or joined.last_id
    joined.count = events
    return joined, events


def verify_chain_parallel(
    *,
    workers: int,
    expectations: Expectations | None = None,
    progress: Progress | None = None,
    check_heads: bool = True,
) -> VerifyResult:
    """``verify_chain`` with ``workers`` processes; see the module docstring."""
    with transaction.atomic():
        use_one_snapshot()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_export_snapshot(), min(id), max(id) FROM audit_auditevent")
            snapshot, low, high = cursor.fetchone()
        claims = merge_expectations(expectations or {}, head_expectations() if check_heads else {})
        if low is None:
            walker = ChainWalker(expectations=claims)
            return walker.result()
        bounds = _slices(low, high, workers)
        params = _connection_params()
        context = multiprocessing.get_context("fork")
        counter = context.Value("q", 0)
        pool = ProcessPoolExecutor(
            max_workers=len(bounds),
            mp_context=context,
            initializer=_init_worker,
            initargs=(counter,),
        )
        try:
            futures = [
                pool.submit(_walk_slice, snapshot, lo, hi, claims, dict(params))
                for lo, hi in bounds
            ]
            pending = set(futures)
            while pending:
                _done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
                if progress is not None:
                    progress(counter.value, 0)
            slices = [future.result() for future in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        joined, _events = _join(slices)
        joined.expectations = claims
        return joined.result_with_tail()


def _slices(low: int, high: int, workers: int) -> list[tuple[int, int]]:
    span = high - low + 1
    size = -(-span // workers)
    return [(start, min(start + size - 1, high)) for start in range(low, high + 1, size)]
