"""The full verification walked by several processes gives the same answer as one walk:
intact, or the same first broken event — including breaks that only show where the slices
are joined (a partition's first event in a slice, a checkpoint naming a partition that
slice had not seen yet)."""

from __future__ import annotations

import json

import pytest
from django.db import connection, transaction

from audit import verbs
from audit.chain import Actor, append_event, event_digest
from audit.models import AuditChainHead, AuditEvent
from audit.parallel import _slices, verify_chain_parallel
from audit.verification import verify_chain

pytestmark = pytest.mark.django_db(transaction=True)
WORKERS = 3


def _append(agent_slug: str, i: int) -> None:
    with transaction.atomic():
        append_event(
            verb=verbs.ACTION_VIEWED,
            actor=Actor.system("tester"),
            target_type="action",
            target_id=i,
            agent_slug=agent_slug,
            data={"i": i},
        )


@pytest.fixture
def log():
    """60 events in three partitions; a checkpoint every 10 events."""
    from audit.chain import write_checkpoint

    for i in range(54):
        _append(["alpha", "beta", "gamma"][i % 3] if i < 30 else "alpha", i)
        if i % 10 == 9:
            write_checkpoint()
    return list(AuditEvent.objects.order_by("id"))


def _slice_of(log, index: int) -> list[AuditEvent]:
    low, high = log[0].pk, log[-1].pk
    lo, hi = _slices(low, high, WORKERS)[index]
    return [e for e in log if lo <= e.pk <= hi]


def _tamper(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        try:
            cursor.execute(sql, params)
        finally:
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


def _rehash_from(event: AuditEvent, **changes) -> None:
    """Change one event and recompute its partition's hashes from there (and the head)."""
    rows = list(
        AuditEvent.objects.filter(
            partition=event.partition, chain_seq__gte=event.chain_seq
        ).order_by("chain_seq")
    )
    previous = changes.pop("prev_hash", None)
    if previous is None:
        previous = rows[0].prev_hash
    for row in rows:
        for name, value in (changes if row.pk == event.pk else {}).items():
            setattr(row, name, value)
        digest = event_digest(
            partition=row.partition,
            chain_seq=row.chain_seq,
            created_at=row.created_at.isoformat(),
            actor_type=row.actor_type,
            actor=row.actor,
            verb=row.verb,
            target_type=row.target_type,
            target_id=row.target_id,
            agent_slug=row.agent_slug,
            correlation_id=row.correlation_id,
            data=row.data,
            prev_hash=previous,
        )
        _tamper(
            "UPDATE audit_auditevent SET data = %s, prev_hash = %s, hash = %s WHERE id = %s",
            [json.dumps(row.data), previous, digest, row.pk],
        )
        previous = digest
    AuditChainHead.objects.filter(partition=event.partition).update(last_hash=previous)


def _both():
    single = verify_chain(workers=1)
    parallel = verify_chain_parallel(workers=WORKERS)
    return single, parallel


def test_parallel__intact_log__same_result_as_one_walk(log):
    single, parallel = _both()
    assert single.ok and parallel.ok
    assert parallel.events == single.events == len(log)
    assert parallel.heads == single.heads
    assert parallel.last_id == single.last_id == log[-1].pk


def test_parallel__partition_first_in_a_slice_does_not_link__found_at_the_join(log):
    # The first alpha event of the second slice gets another prev_hash (its own hash and
    # those after it recomputed, so only the link to the slice before is wrong).
    victim = next(e for e in _slice_of(log, 1) if e.partition == "alpha")
    _rehash_from(victim, prev_hash="0" * 64)
    single, parallel = _both()
    assert not single.ok and not parallel.ok
    assert parallel.first_broken_id == single.first_broken_id == victim.pk
    assert parallel.problem == single.problem


def test_parallel__checkpoint_naming_an_unseen_partition__checked_at_the_join(log):
    # A checkpoint early in the last slice claims a wrong head for gamma (its hash and the
    # global chain after it recomputed, so the lie is consistent inside the slice).
    last_slice = _slice_of(log, 2)
    checkpoint = next(e for e in last_slice if e.verb == verbs.AUDIT_CHECKPOINT)
    assert not any(e.partition == "gamma" for e in last_slice if e.pk < checkpoint.pk), (
        "gamma must be unseen in the slice before the checkpoint"
    )
    data = json.loads(json.dumps(checkpoint.data))
    data["heads"]["gamma"][1] = "f" * 64
    _rehash_from(checkpoint, data=data)
    single, parallel = _both()
    assert not single.ok and not parallel.ok
    assert parallel.first_broken_id == single.first_broken_id == checkpoint.pk
    assert "checkpoint disagrees with chain gamma" in parallel.problem


def test_parallel__modified_event__same_first_broken_event(log):
    victim = _slice_of(log, 2)[3]
    _tamper("UPDATE audit_auditevent SET actor = 'x' WHERE id = %s", [victim.pk])
    single, parallel = _both()
    assert parallel.first_broken_id == single.first_broken_id == victim.pk


def test_parallel__earliest_of_two_breaks__is_named(log):
    early, late = _slice_of(log, 1)[2], _slice_of(log, 0)[5]
    for victim in (early, late):
        _tamper("UPDATE audit_auditevent SET actor = 'x' WHERE id = %s", [victim.pk])
    single, parallel = _both()
    assert parallel.first_broken_id == single.first_broken_id == late.pk


def test_parallel__lost_tail__named(log):
    last = AuditEvent.objects.filter(partition="alpha").order_by("-chain_seq").first()
    _tamper("DELETE FROM audit_auditevent WHERE id = %s", [last.pk])
    single, parallel = _both()
    assert not parallel.ok and "lost its tail" in parallel.problem
    assert parallel.problem == single.problem


def test_parallel__progress__reported_from_the_workers(log):
    seen = []
    verify_chain_parallel(workers=WORKERS, progress=lambda count, _id: seen.append(count))
    assert seen and seen[-1] == len(log)
