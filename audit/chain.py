"""Appending to and verifying the hash-chained audit log.

``append_event`` (or, for a caller that combines statements, ``lock_chain_position`` +
``new_event`` + ``write_event``) is the only writer of ``AuditEvent``. It must run inside
the transaction of the change it records, so the event exists exactly when the change does.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from hashlib import sha256
from json.encoder import encode_basestring
from json.scanner import c_make_scanner
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.canonical import canonical_json, sha256_hex
from audit.models import AuditChainHead, AuditEvent
from audit.redaction import redact
from audit.verbs import AUDIT_CHECKPOINT, VERBS
from core.sql import mark_saved

GLOBAL_PARTITION = "global"


@dataclass(frozen=True)
class Actor:
    """Who did something: a user (username), an agent (slug) or the system (a role name
    such as ``circuit-breaker``)."""

    type: str
    name: str

    @classmethod
    def user(cls, user: Any) -> Actor:
        return cls(AuditEvent.ActorType.USER, user.get_username())

    @classmethod
    def user_named(cls, username: str) -> Actor:
        return cls(AuditEvent.ActorType.USER, username)

    @classmethod
    def agent(cls, agent: Any) -> Actor:
        return cls(AuditEvent.ActorType.AGENT, agent.slug)

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(AuditEvent.ActorType.SYSTEM, name)

    def __str__(self) -> str:
        return f"{self.type}:{self.name}"


def event_digest(
    *,
    partition: str,
    chain_seq: int,
    created_at: str,
    actor_type: str,
    actor: str,
    verb: str,
    target_type: str,
    target_id: str,
    agent_slug: str,
    correlation_id: str,
    data: Any,
    prev_hash: str,
) -> str:
    body = canonical_json(
        {
            "partition": partition,
            "chain_seq": chain_seq,
            "created_at": created_at,
            "actor_type": actor_type,
            "actor": actor,
            "verb": verb,
            "target_type": target_type,
            "target_id": target_id,
            "agent": agent_slug,
            "correlation_id": correlation_id,
            "data": data,
        }
    )
    return sha256_hex(prev_hash + "\n" + body)


# An agent's chain is split into stripes: partitions ``slug``, ``slug#1`` … ``slug#N-1``
# (``AUDIT_CHAIN_STRIPES``). An append takes whichever stripe no other transaction holds,
# so one agent's concurrent gate calls do not queue on one head row held across their
# commits. Every stripe is an ordinary hash chain (verification, exports and checkpoints
# treat it as a partition like any other); the checkpoints in the global chain record every
# stripe's head and so join them. "#" cannot occur in an agent slug.
STRIPE_SEPARATOR = "#"

# The first stripe (in name order) that no other transaction holds; rows this transaction
# already holds are not skipped, so a transaction appending twice keeps to one stripe.
FREE_STRIPE_SQL = (
    "SELECT partition, last_seq, last_hash FROM audit_auditchainhead "
    "WHERE partition = ANY(%s) ORDER BY partition LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_ADD_STRIPES_SQL = (
    "INSERT INTO audit_auditchainhead (partition, last_seq, last_hash) "
    "SELECT name, 0, '' FROM unnest(%s::varchar[]) AS name ON CONFLICT (partition) DO NOTHING"
)
_WAIT_FOR_STRIPE_SQL = (
    "SELECT partition, last_seq, last_hash FROM audit_auditchainhead "
    "WHERE partition = %s FOR UPDATE"
)


def stripe_partitions(agent_slug: str) -> list[str]:
    """The partitions an agent's events may go to, first stripe first."""
    count = max(1, settings.AUDIT_CHAIN_STRIPES)
    return [agent_slug] + [f"{agent_slug}{STRIPE_SEPARATOR}{i}" for i in range(1, count)]


def partition_agent(partition: str) -> str:
    """The agent slug a partition belongs to (a stripe's agent); ``""`` for the global one."""
    if partition == GLOBAL_PARTITION:
        return ""
    return partition.split(STRIPE_SEPARATOR, 1)[0]


@dataclass(frozen=True)
class ChainPosition:
    """A locked chain head: the next event goes to ``partition`` after ``last_seq``."""

    partition: str
    last_seq: int
    last_hash: str


def _lock_head(partition: str) -> ChainPosition:
    head = AuditChainHead.objects.select_for_update().filter(partition=partition).first()
    if head is None:
        AuditChainHead.objects.bulk_create(
            [AuditChainHead(partition=partition)], ignore_conflicts=True
        )
        head = AuditChainHead.objects.select_for_update().get(partition=partition)
    return ChainPosition(head.partition, head.last_seq, head.last_hash)


_UNREAD = object()


def lock_chain_position(agent_slug: str, free_stripe: Any = _UNREAD) -> ChainPosition:
    """Lock the head an event about ``agent_slug`` (or the global chain) goes to, until the
    transaction ends.

    On PostgreSQL an agent's event takes the first stripe no other transaction holds, so a
    quiet agent's events stay in its first stripe. When none is free, the stripes that do
    not exist yet (the agent's first event, or a raised ``AUDIT_CHAIN_STRIPES``) are created;
    when all of them are held, it waits for one, as a single chain always would. Waiting holds no other stripe of this agent (a stripe this
    transaction holds is never skipped), so stripes cannot deadlock each other.
    ``free_stripe``: the row of ``FREE_STRIPE_SQL`` when the caller already ran it as part of
    a larger statement (``None``: it found no free stripe)."""
    if not agent_slug:
        return _lock_head(GLOBAL_PARTITION)
    if connection.vendor != "postgresql":
        return _lock_head(agent_slug)  # SQLite runs one writer at a time anyway
    names = stripe_partitions(agent_slug)
    row = free_stripe
    with connection.cursor() as cursor:
        if row is _UNREAD:
            cursor.execute(FREE_STRIPE_SQL, [names])
            row = cursor.fetchone()
        if row is None:
            cursor.execute(_ADD_STRIPES_SQL, [names])
            cursor.execute(FREE_STRIPE_SQL, [names])
            row = cursor.fetchone()
        if row is None:
            cursor.execute(_WAIT_FOR_STRIPE_SQL, [random.choice(names)])
            row = cursor.fetchone()
    return ChainPosition(*row)


def new_event(
    position: ChainPosition,
    *,
    verb: str,
    actor: Actor,
    target_type: str = "",
    target_id: Any = "",
    agent_slug: str = "",
    correlation_id: str = "",
    data: dict | None = None,
) -> AuditEvent:
    """The next event at a locked ``position``, hashed, not yet written (``write_event``).
    ``data`` is redacted first."""
    if verb not in VERBS:
        raise ValueError(f"unregistered audit verb {verb!r}")
    created_at = timezone.now()
    fields = {
        "partition": position.partition,
        "chain_seq": position.last_seq + 1,
        "actor_type": str(actor.type),
        "actor": actor.name,
        "verb": verb,
        "target_type": target_type,
        "target_id": str(target_id),
        "agent_slug": agent_slug,
        "correlation_id": correlation_id,
        "data": redact(data or {}),
        "prev_hash": position.last_hash,
    }
    digest = event_digest(created_at=created_at.isoformat(), **fields)
    return AuditEvent(created_at=created_at, hash=digest, **fields)


# An event's columns in order: for reading rows to verify, and for the INSERT written out
# rather than compiled by the ORM for every event (the gate's hot path).
EVENT_COLUMNS = (
    "id",
    "partition",
    "chain_seq",
    "created_at",
    "actor_type",
    "actor",
    "verb",
    "target_type",
    "target_id",
    "agent_slug",
    "correlation_id",
    "data",
    "prev_hash",
    "hash",
)
_INSERTED_COLUMNS = EVENT_COLUMNS[1:]  # all but the id, which the INSERT returns
_INSERT_EVENT_SQL = (
    f"INSERT INTO audit_auditevent ({', '.join(_INSERTED_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join(['%s'] * len(_INSERTED_COLUMNS))}) RETURNING id"
)
_DATA_INDEX = _INSERTED_COLUMNS.index("data")
_DATA_FIELD = AuditEvent._meta.get_field("data")
_MOVE_HEAD_SQL = (
    "UPDATE audit_auditchainhead SET last_seq = %s, last_hash = %s WHERE partition = %s"
)


def write_event(event: AuditEvent, *, also: Sequence[tuple[str, list]] = ()) -> AuditEvent:
    """Insert ``event`` (from ``new_event``) and move its partition's head to it.

    On PostgreSQL both are one statement, and ``also`` — further ``INSERT`` statements as
    (sql, params), e.g. the row the event records — joins it as data-modifying ``WITH``
    clauses, so a change and its audit cost one round trip. Elsewhere ``also`` must be
    empty."""
    head_params = [event.chain_seq, event.hash, event.partition]
    if connection.vendor != "postgresql":
        if also:
            raise ValueError("combined statements need PostgreSQL")
        event.save(force_insert=True)
        AuditChainHead.objects.filter(partition=event.partition).update(
            last_seq=event.chain_seq, last_hash=event.hash
        )
        return event
    event_params = [getattr(event, column) for column in _INSERTED_COLUMNS]
    event_params[_DATA_INDEX] = _DATA_FIELD.get_db_prep_save(event.data, connection)
    clauses = [f"also{i} AS ({sql})" for i, (sql, _) in enumerate(also)]
    clauses.append(f"event AS ({_INSERT_EVENT_SQL})")
    params = [p for _, ps in also for p in ps] + event_params + head_params
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {', '.join(clauses)} {_MOVE_HEAD_SQL} RETURNING (SELECT id FROM event)",  # noqa: S608
            params,
        )
        (event.id,) = cursor.fetchone()
    return mark_saved(event)


def append_event(
    *,
    verb: str,
    actor: Actor,
    target_type: str = "",
    target_id: Any = "",
    agent_slug: str = "",
    correlation_id: str = "",
    data: dict | None = None,
) -> AuditEvent:
    """Append one event to a chain of ``agent_slug`` (one of its stripes) or the global
    chain.

    Locks that partition's head row until the caller's transaction ends, so concurrent
    writers of one partition are serialised and never fork the chain."""
    if verb not in VERBS:
        raise ValueError(f"unregistered audit verb {verb!r}")
    if not connection.in_atomic_block:
        raise RuntimeError("append_event must run inside the transaction of the change it records")
    position = lock_chain_position(agent_slug)
    event = new_event(
        position,
        verb=verb,
        actor=actor,
        target_type=target_type,
        target_id=target_id,
        agent_slug=agent_slug,
        correlation_id=correlation_id,
        data=data,
    )
    return write_event(event)


@transaction.atomic
def write_checkpoint(*, actor: Actor | None = None) -> AuditEvent:
    """Record every partition's head in the global chain, joining the per-agent chains.

    Locks all heads (in key order, to avoid deadlocks) so the checkpoint sits at one exact
    point of every chain."""
    heads = list(AuditChainHead.objects.select_for_update().order_by("partition"))
    recorded = {
        h.partition: [h.last_seq, h.last_hash] for h in heads if h.partition != GLOBAL_PARTITION
    }
    return append_event(
        verb=AUDIT_CHECKPOINT,
        actor=actor or Actor.system("audit"),
        data={"heads": recorded},
    )


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


def timestamp_text(value: Any) -> str:
    """``created_at`` exactly as it was hashed: the ISO form of an aware UTC datetime.
    (SQLite hands back naive UTC datetimes; strings from an export are taken as they are.)"""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.utcoffset():  # hashed in UTC, whatever the session's time zone
        value = value.astimezone(UTC)
    return value.isoformat()


def row_digest(
    partition: Any,
    chain_seq: Any,
    created_at: str,
    actor_type: Any,
    actor: Any,
    verb: Any,
    target_type: Any,
    target_id: Any,
    agent_slug: Any,
    correlation_id: Any,
    data: Any,
    prev_hash: str,
) -> str:
    """``event_digest`` without building and sorting a dict: the canonical body written out
    with its keys in sorted order. Same bytes, a good deal faster (verifying a million
    events spends most of its time here); ``tests/test_audit_export.py`` holds them equal."""
    q = encode_basestring  # the json module's C string encoder, as canonical_json uses it
    try:
        if type(chain_seq) is not int:
            raise TypeError
        body = (
            f'{{"actor":{q(actor)},"actor_type":{q(actor_type)},"agent":{q(agent_slug)},'
            f'"chain_seq":{chain_seq},"correlation_id":{q(correlation_id)},'
            f'"created_at":{q(created_at)},"data":{canonical_json(data)},'
            f'"partition":{q(partition)},"target_id":{q(target_id)},'
            f'"target_type":{q(target_type)},"verb":{q(verb)}}}'
        )
    except TypeError:  # a field that is not a string (an export edited by hand, say)
        return event_digest(
            partition=partition,
            chain_seq=chain_seq,
            created_at=created_at,
            actor_type=actor_type,
            actor=actor,
            verb=verb,
            target_type=target_type,
            target_id=target_id,
            agent_slug=agent_slug,
            correlation_id=correlation_id,
            data=data,
            prev_hash=prev_hash,
        )
    return sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


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


def verify_chain(
    *,
    expectations: Expectations | None = None,
    progress: Progress | None = None,
    check_heads: bool = True,
    workers: int | None = None,
) -> VerifyResult:
    """Walk every event in ``id`` order: links, hashes, checkpoints, and the outside claims
    in ``expectations`` (e.g. signed checkpoint files) plus the head table's. A large log on
    PostgreSQL is walked by several processes (``audit.parallel``; ``workers``, default
    ``AUDIT_VERIFY_WORKERS`` or the number of cores up to 4), with the same result."""
    from audit import parallel

    workers = parallel.default_workers() if workers is None else workers
    if workers > 1 and parallel.can_fork_workers() and parallel.worth_it(workers):
        return parallel.verify_chain_parallel(
            workers=workers, expectations=expectations, progress=progress, check_heads=check_heads
        )
    with transaction.atomic():
        use_one_snapshot()
        claims = merge_expectations(expectations or {}, head_expectations() if check_heads else {})
        walker = ChainWalker(expectations=claims)
        walker.walk(iter_event_tuples(), data_is_text=True, progress=progress)
        return walker.result_with_tail()


def verify_partitions_from(
    heads: dict[str, tuple[int, str]],
    *,
    expectations: Expectations | None = None,
    progress: Progress | None = None,
) -> VerifyResult:
    """Incremental verification: continue every partition from its last verified head.

    Within a partition, committed events always form an unbroken prefix (appends hold the
    head's row lock until commit), so walking ``chain_seq > last verified`` per partition
    never mistakes a slow transaction for a gap, as walking new ids globally could. Each
    partition's old head must still carry its old hash; checkpoints are checked by looking
    up the events they name."""
    with transaction.atomic():
        use_one_snapshot()
        partitions = sorted(
            AuditChainHead.objects.values_list("partition", flat=True),
            key=lambda p: (p == GLOBAL_PARTITION, p),  # the checkpoints' partition last
        )
        walker = ChainWalker(heads, expectations or {}, lookup_checkpoints=True)
        for partition in partitions:
            seq, old_hash = heads.get(partition, (0, ""))
            if seq:
                now = (
                    AuditEvent.objects.filter(partition=partition, chain_seq=seq)
                    .values_list("id", "hash")
                    .first()
                )
                if now is None or now[1] != old_hash:
                    walker.failure = (
                        now[0] if now else None,
                        f"event {partition}#{seq} changed since it was verified",
                    )
                    return walker.result()
            rows = iter_event_tuples(
                "partition = %s AND chain_seq > %s", [partition, seq], order="chain_seq"
            )
            if not walker.walk(rows, data_is_text=True, progress=progress):
                return walker.result()
        problem = _check_checkpoint_refs(walker.checkpoint_refs)
        if problem:
            walker.failure = problem
        return walker.result()


def _check_checkpoint_refs(refs: list[tuple[int, str, int, str]]) -> tuple[int, str] | None:
    for event_id, part, seq, hsh in refs:
        if seq == 0:
            continue
        found = (
            AuditEvent.objects.filter(partition=part, chain_seq=seq)
            .values_list("hash", flat=True)
            .first()
        )
        if found != hsh:
            return event_id, f"checkpoint disagrees with chain {part}"
    return None
