"""Walking the hash-chained audit log: recompute each event's hash, check its link to the
one before, and compare with what outside records claim (the head table, signed checkpoint
files). ``ChainWalker`` checks events fed to it; the ``iter_event_*`` readers feed it from
the table without building model instances. ``audit.verification`` runs whole walks
(one process, or several through ``audit.parallel``) and keeps their status.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from json.scanner import c_make_scanner
from typing import Any

from django.db import connection

from audit.chain import EVENT_COLUMNS, row_digest, timestamp_text
from audit.models import AuditChainHead, AuditEvent
from audit.verbs import AUDIT_CHECKPOINT


@dataclass
class VerifyResult:
    """What a walk of the chain found. ``heads`` are the partitions' last verified
    (sequence, hash); ``last_id`` the last event walked."""

    ok: bool
    events: int
    first_broken_id: int | None = None
    problem: str = ""
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    last_id: int | None = None
    expectations_checked: int = 0


EVENT_SELECT = ", ".join(f'"{column}"' for column in EVENT_COLUMNS)


_SCANNER = c_make_scanner(json.JSONDecoder()) if c_make_scanner else None


def _scan_json(text: str) -> Any:
    """``json.loads`` for the JSON text PostgreSQL returns, without its wrappers."""
    if _SCANNER is not None and text:
        try:
            value, end = _SCANNER(text, 0)
        except StopIteration:
            return json.loads(text)  # raises the usual error
        if end == len(text):
            return value
    return json.loads(text)


# (partition, chain_seq) -> the hashes outside records say that event has, each with where
# the claim comes from (the head table, a signed checkpoint line)
Expectations = dict[tuple[str, int], list[tuple[str, str]]]


def merge_expectations(*sources: Expectations) -> Expectations:
    merged: Expectations = {}
    for source in sources:
        for key, claims in source.items():
            merged.setdefault(key, []).extend(claims)
    return merged


Progress = Callable[[int, int], None]  # (events walked so far, last event id)


class ChainWalker:
    """Checks events fed in ascending ``id`` order against the chain so far.

    ``heads`` lets a walk start where an earlier one stopped (incremental verification).
    ``expectations`` are hashes that events must have according to outside records (the
    head table, signed checkpoint files); ``lookup_checkpoints`` defers the check of
    ``audit.checkpoint`` events to ``checkpoint_refs`` for walks that do not visit every
    partition in id order.

    ``open_start`` walks a slice of the ids whose partitions' heads before it are not known
    yet (``audit.parallel``): the first event of each partition is accepted as it links and
    noted in ``first_links``; checkpoints naming partitions not seen yet are deferred to
    ``checkpoint_refs``. Whoever joins the slices checks those against the slice before."""

    __slots__ = (
        "checkpoint_refs",
        "count",
        "expectations",
        "expectations_checked",
        "failure",
        "first_links",
        "heads",
        "last_id",
        "lookup_checkpoints",
        "open_start",
    )

    def __init__(
        self,
        heads: dict[str, tuple[int, str]] | None = None,
        expectations: Expectations | None = None,
        lookup_checkpoints: bool = False,
        open_start: bool = False,
    ) -> None:
        self.heads: dict[str, tuple[int, str]] = dict(heads or {})
        self.expectations = expectations or {}
        self.expectations_checked = 0
        self.lookup_checkpoints = lookup_checkpoints
        self.open_start = open_start
        self.checkpoint_refs: list[tuple[int, str, int, str]] = []
        self.first_links: dict[str, tuple[int, int, str]] = {}
        self.count = 0
        self.last_id: int | None = None
        self.failure: tuple[int, str] | None = None

    def walk(
        self,
        rows: Iterable[tuple],
        *,
        data_is_text: bool = False,
        progress: Progress | None = None,
        progress_every: int = 50_000,
    ) -> bool:
        """Feed ``rows`` (tuples in ``EVENT_COLUMNS`` order); False at the first broken one."""
        heads = self.heads
        expectations = self.expectations
        scan = _scan_json
        unknown = (-1, None) if self.open_start else (0, "")
        first_links = self.first_links
        count = self.count
        next_report = count + progress_every
        try:
            for (
                event_id,
                partition,
                chain_seq,
                created_at,
                actor_type,
                actor,
                verb,
                target_type,
                target_id,
                agent_slug,
                correlation_id,
                data,
                prev_hash,
                stored_hash,
            ) in rows:
                count += 1
                if data_is_text:
                    data = scan(data)
                last_seq, last_hash = heads.get(partition, unknown)
                if last_hash is None:  # open start: links to a slice before this one
                    first_links[partition] = (event_id, chain_seq, prev_hash)
                elif chain_seq != last_seq + 1:
                    return self._broken(
                        event_id,
                        f"sequence gap in {partition}: expected {last_seq + 1}, found {chain_seq}",
                    )
                elif prev_hash != last_hash:
                    return self._broken(event_id, "prev_hash does not match the previous event")
                digest = row_digest(
                    partition,
                    chain_seq,
                    timestamp_text(created_at),
                    actor_type,
                    actor,
                    verb,
                    target_type,
                    target_id,
                    agent_slug,
                    correlation_id,
                    data,
                    prev_hash,
                )
                if digest != stored_hash:
                    return self._broken(event_id, "hash does not match the event's content")
                if expectations:
                    claims = expectations.get((partition, chain_seq))
                    if claims is not None:
                        for claimed, source in claims:
                            self.expectations_checked += 1
                            if claimed != digest:
                                return self._broken(
                                    event_id,
                                    f"hash differs from {source}: the table was rewritten",
                                )
                if verb == AUDIT_CHECKPOINT:
                    problem = self._check_checkpoint(event_id, data)
                    if problem:
                        return self._broken(event_id, problem)
                heads[partition] = (chain_seq, digest)
                self.last_id = event_id
                if progress is not None and count >= next_report:
                    progress(count, event_id)
                    next_report = count + progress_every
        finally:
            self.count = count
        return True

    def _check_checkpoint(self, event_id: int, data: Any) -> str:
        recorded = data.get("heads") if isinstance(data, dict) else None
        for part, (seq, hsh) in (recorded or {}).items():
            if self.lookup_checkpoints or (self.open_start and part not in self.heads):
                self.checkpoint_refs.append((event_id, part, seq, hsh))
            elif self.heads.get(part, (0, "")) != (seq, hsh):
                return f"checkpoint disagrees with chain {part}"
        return ""

    def _broken(self, event_id: int, problem: str) -> bool:
        self.failure = (event_id, problem)
        return False

    def missing_expectation(self) -> tuple[str, int, str] | None:
        """An expected event beyond every walked head: the chain lost its tail."""
        for (partition, seq), claims in sorted(self.expectations.items()):
            if seq > self.heads.get(partition, (0, ""))[0]:
                return partition, seq, claims[0][1]
        return None

    def result_with_tail(self) -> VerifyResult:
        """``result()``, failed as well when an expected event lies beyond every walked
        head (the chain lost its tail)."""
        result = self.result()
        if result.ok and (missing := self.missing_expectation()):
            partition, seq, source = missing
            result.ok = False
            result.problem = (
                f"{source} names event {partition}#{seq}, which is missing: the chain lost its tail"
            )
        return result

    def result(self) -> VerifyResult:
        if self.failure:
            event_id, problem = self.failure
            return VerifyResult(
                False,
                self.count,
                event_id,
                problem,
                dict(self.heads),
                self.last_id,
                self.expectations_checked,
            )
        return VerifyResult(
            True,
            self.count,
            heads=dict(self.heads),
            last_id=self.last_id,
            expectations_checked=self.expectations_checked,
        )


def verify_rows(rows: Iterable[dict]) -> VerifyResult:
    """Check rows given in ascending ``id`` order; stops at the first broken one."""
    walker = ChainWalker()
    walker.walk(tuple(row[column] for column in EVENT_COLUMNS) for row in rows)
    return walker.result()


def iter_event_rows(batch_size: int = 5000) -> Iterator[dict]:
    """All events as plain dicts in ``id`` order, read through a server-side cursor."""
    qs = AuditEvent.objects.order_by("id").values(*EVENT_COLUMNS)
    yield from qs.iterator(chunk_size=batch_size)


def iter_event_tuples(
    where: str = "", params: Iterable[Any] = (), order: str = "id", batch_size: int = 10_000
) -> Iterator[tuple]:
    """Events as tuples in ``EVENT_COLUMNS`` order (``data`` as JSON text), read through a
    server-side cursor on PostgreSQL; no model instances are built. Run it inside a
    transaction (a server-side cursor lives in one)."""
    sql = f"SELECT {EVENT_SELECT} FROM audit_auditevent"  # noqa: S608 (constant parts only)
    if where:
        sql += f" WHERE {where}"
    sql += f" ORDER BY {order}"
    if connection.vendor == "postgresql":
        yield from _postgres_tuples(sql, list(params), batch_size)
        return
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, list(params))
        while batch := cursor.fetchmany(batch_size):
            yield from batch


def _postgres_tuples(sql: str, params: list, batch_size: int) -> Iterator[tuple]:
    """A psycopg server-side cursor on Django's connection, loading timestamps with
    psycopg's C loader (Django's own adds a Python call per value) and JSON as text."""
    import psycopg
    from psycopg.pq import Format

    connection.ensure_connection()
    raw = connection.connection
    with raw.cursor(name=f"audit_walk_{id(sql)}") as cursor:
        oid = psycopg.postgres.types["timestamptz"].oid
        cursor.adapters.register_loader(oid, psycopg.adapters.get_loader(oid, Format.TEXT))
        cursor.execute(sql, params)
        # fetchmany pages: iterating the cursor itself costs a Python call per row.
        while batch := cursor.fetchmany(batch_size):
            yield from batch


def head_expectations() -> Expectations:
    """The head table's claims: each partition's last event has this sequence and hash. A
    chain that ends earlier lost its tail."""
    return {
        (head.partition, head.last_seq): [(head.last_hash, "the chain head table")]
        for head in AuditChainHead.objects.all()
        if head.last_seq > 0
    }


def use_one_snapshot() -> None:
    """One snapshot for a whole walk, when this transaction is ours to configure."""
    if connection.vendor == "postgresql" and not connection.savepoint_ids:
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
