"""Appending to the hash-chained audit log, and the hash that links it.

``append_event`` (or, for a caller that combines statements, ``lock_chain_position`` +
``new_event`` + ``write_event``) is the only writer of ``AuditEvent``. It must run inside
the transaction of the change it records, so the event exists exactly when the change does.
``event_digest`` / ``row_digest`` define an event's hash once, for the writer here and for
the walk that verifies it (``audit.walker``, ``audit.verification``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from hashlib import sha256
from json.encoder import encode_basestring
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
# Only the stripes that do not exist yet: an INSERT … ON CONFLICT that meets an existing head
# row locked by another transaction waits for that transaction to end, so offering every
# name made a call that found all stripes busy wait for each holder in turn (28.9 ms on 7 %
# of gate calls at 16 clients: benchmarks/README.md, issue 22). The NOT EXISTS reads the
# committed rows without waiting; ON CONFLICT still settles two creators racing.
_ADD_STRIPES_SQL = (
    "INSERT INTO audit_auditchainhead (partition, last_seq, last_hash) "
    "SELECT name, 0, '' FROM unnest(%s::varchar[]) AS name "
    "WHERE NOT EXISTS (SELECT 1 FROM audit_auditchainhead h WHERE h.partition = name) "
    "ON CONFLICT (partition) DO NOTHING"
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
