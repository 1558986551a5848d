"""Appending to and verifying the hash-chained audit log.

``append_event`` is the only writer of ``AuditEvent``. It must run inside the transaction of
the change it records, so the event exists exactly when the change does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.canonical import canonical_json, sha256_hex
from audit.models import AuditChainHead, AuditEvent
from audit.redaction import redact
from audit.verbs import AUDIT_CHECKPOINT, VERBS

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


def _lock_head(partition: str) -> AuditChainHead:
    head = AuditChainHead.objects.select_for_update().filter(partition=partition).first()
    if head is None:
        AuditChainHead.objects.bulk_create(
            [AuditChainHead(partition=partition)], ignore_conflicts=True
        )
        head = AuditChainHead.objects.select_for_update().get(partition=partition)
    return head


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
    """Append one event to the chain of ``agent_slug`` (or the global chain).

    Locks that partition's head row until the caller's transaction ends, so concurrent
    writers of one partition are serialised and never fork the chain."""
    if verb not in VERBS:
        raise ValueError(f"unregistered audit verb {verb!r}")
    if not connection.in_atomic_block:
        raise RuntimeError("append_event must run inside the transaction of the change it records")
    partition = agent_slug or GLOBAL_PARTITION
    head = _lock_head(partition)
    created_at = timezone.now()
    clean_data = redact(data or {})
    seq = head.last_seq + 1
    fields = {
        "partition": partition,
        "chain_seq": seq,
        "actor_type": str(actor.type),
        "actor": actor.name,
        "verb": verb,
        "target_type": target_type,
        "target_id": str(target_id),
        "agent_slug": agent_slug,
        "correlation_id": correlation_id,
        "data": clean_data,
        "prev_hash": head.last_hash,
    }
    digest = event_digest(created_at=created_at.isoformat(), **fields)
    event = AuditEvent.objects.create(created_at=created_at, hash=digest, **fields)
    AuditChainHead.objects.filter(partition=partition).update(last_seq=seq, last_hash=digest)
    return event


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
    ok: bool
    events: int
    first_broken_id: int | None = None
    problem: str = ""
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)


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


def verify_rows(rows: Iterable[dict]) -> VerifyResult:
    """Check rows given in ascending ``id`` order; stops at the first broken one."""
    heads: dict[str, tuple[int, str]] = {}
    count = 0
    for row in rows:
        count += 1
        partition = row["partition"]
        last_seq, last_hash = heads.get(partition, (0, ""))
        created_at = row["created_at"]
        if not isinstance(created_at, str):
            created_at = created_at.isoformat()
        if row["chain_seq"] != last_seq + 1:
            return VerifyResult(
                False,
                count,
                row["id"],
                f"sequence gap in {partition}: expected {last_seq + 1}, found {row['chain_seq']}",
                heads,
            )
        if row["prev_hash"] != last_hash:
            return VerifyResult(
                False, count, row["id"], "prev_hash does not match the previous event", heads
            )
        digest = event_digest(
            partition=partition,
            chain_seq=row["chain_seq"],
            created_at=created_at,
            actor_type=row["actor_type"],
            actor=row["actor"],
            verb=row["verb"],
            target_type=row["target_type"],
            target_id=row["target_id"],
            agent_slug=row["agent_slug"],
            correlation_id=row["correlation_id"],
            data=row["data"],
            prev_hash=row["prev_hash"],
        )
        if digest != row["hash"]:
            return VerifyResult(
                False, count, row["id"], "hash does not match the event's content", heads
            )
        if row["verb"] == AUDIT_CHECKPOINT:
            for part, (seq, hsh) in (row["data"].get("heads") or {}).items():
                if heads.get(part, (0, "")) != (seq, hsh):
                    return VerifyResult(
                        False, count, row["id"], f"checkpoint disagrees with chain {part}", heads
                    )
        heads[partition] = (row["chain_seq"], digest)
    return VerifyResult(True, count, heads=heads)


def iter_event_rows(batch_size: int = 5000) -> Iterator[dict]:
    """All events as plain dicts in ``id`` order, read through a server-side cursor."""
    qs = AuditEvent.objects.order_by("id").values(*EVENT_COLUMNS)
    yield from qs.iterator(chunk_size=batch_size)


def verify_chain() -> VerifyResult:
    if connection.vendor == "postgresql":
        # One snapshot for the whole walk; server-side cursors live inside a transaction.
        with transaction.atomic():
            return verify_rows(iter_event_rows())
    return verify_rows(iter_event_rows())
