"""The hash-chained audit log on PostgreSQL: concurrent appends never fork it, tampering is
named by sequence, and the table refuses UPDATE, DELETE and TRUNCATE."""

import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.utils import DatabaseError

from audit import verbs
from audit.chain import (
    Actor,
    append_event,
    partition_agent,
    stripe_partitions,
    write_checkpoint,
)
from audit.models import AuditChainHead, AuditEvent
from audit.search import AuditScope
from audit.verification import verify_chain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def checkpoint_dir(settings, tmp_path):
    # audit_verify compares with the signed checkpoint file; not the repository's var/.
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"


def _append(n: int, agent_slug: str = "", actor: str = "tester") -> None:
    for i in range(n):
        with transaction.atomic():
            append_event(
                verb=verbs.ACTION_VIEWED,
                actor=Actor.system(actor),
                target_type="action",
                target_id=i,
                agent_slug=agent_slug,
                data={"i": i, "secret": "s3"},
            )


def _append_in_thread(n: int, agent_slug: str, actor: str) -> None:
    try:
        _append(n, agent_slug, actor)
    finally:
        connection.close()  # a thread's connection would otherwise outlive the test database


def test_append__outside_a_transaction__is_refused():
    with pytest.raises(RuntimeError):
        append_event(verb=verbs.ACTION_VIEWED, actor=Actor.system("x"))


def test_append__unregistered_verb__is_refused():
    with transaction.atomic(), pytest.raises(ValueError):
        append_event(verb="made.up", actor=Actor.system("x"))


def test_append__redacts_secret_looking_keys():
    _append(1)
    assert AuditEvent.objects.get().data == {"i": 0, "secret": "[redacted]"}


def test_concurrent_appends__threads_on_postgresql__form_one_unbroken_chain_per_partition():
    # Given 8 threads appending to two agents (and the global chain) at once
    threads = [
        threading.Thread(target=_append_in_thread, args=(25, slug, f"t{i}"))
        for i, slug in enumerate(["alpha", "beta", "", "alpha", "beta", "", "alpha", "beta"])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # When a checkpoint joins the partitions
    with transaction.atomic():
        checkpoint = write_checkpoint()
    # Then every partition (an agent's stripes included) has no gaps or forks, the chain
    # verifies, every event of an agent is in one of its stripes, and the checkpoint
    # recorded every stripe's head
    result = verify_chain()
    assert result.ok, result.problem
    assert result.events == 8 * 25 + 1
    heads = dict(AuditChainHead.objects.values_list("partition", "last_seq"))
    for agent, expected in (("alpha", 75), ("beta", 75), ("", 51)):
        in_agent = 0
        for partition in stripe_partitions(agent) if agent else ["global"]:
            seqs = list(
                AuditEvent.objects.filter(partition=partition)
                .order_by("id")
                .values_list("chain_seq", flat=True)
            )
            assert seqs == list(range(1, len(seqs) + 1))
            assert heads.get(partition, 0) == len(seqs)
            if agent:
                assert checkpoint.data["heads"].get(partition, [0, ""])[0] == len(seqs)
            in_agent += len(seqs)
        assert in_agent == expected
        if agent:
            assert AuditEvent.objects.filter(agent_slug=agent).count() == expected


def _hold_a_stripe(agent_slug: str, holding: threading.Event, done: threading.Event) -> None:
    """Append for ``agent_slug`` and keep the transaction (and its stripe) open until told."""
    try:
        with transaction.atomic():
            append_event(
                verb=verbs.ACTION_VIEWED, actor=Actor.system("slow"), agent_slug=agent_slug
            )
            holding.set()
            done.wait(timeout=30)
    finally:
        connection.close()


def _appends_while_a_stripe_is_held(settings, agent_slug: str, n: int) -> list[AuditEvent]:
    settings.AUDIT_CHAIN_STRIPES = 4
    _append(1, agent_slug)  # the agent's stripes exist (committed) before the race
    holding, done = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_a_stripe, args=(agent_slug, holding, done))
    holder.start()
    try:
        assert holding.wait(timeout=30)
        events = []
        for i in range(n):
            with transaction.atomic():
                events.append(
                    append_event(
                        verb=verbs.ACTION_VIEWED,
                        actor=Actor.system("fast"),
                        agent_slug=agent_slug,
                        data={"i": i},
                    )
                )
    finally:
        done.set()
        holder.join(timeout=30)
    return events


def test_stripes__agent_busy_in_another_transaction__append_takes_another_stripe_at_once(
    settings,
):
    # Given a transaction that holds alpha's first stripe and has not committed
    # When alpha appends three more events meanwhile (none waits: they would time out)
    events = _appends_while_a_stripe_is_held(settings, "alpha", 3)
    # Then they went to a second stripe, as its own chain from 1, and everything verifies
    assert [(e.partition, e.chain_seq) for e in events] == [
        ("alpha#1", 1),
        ("alpha#1", 2),
        ("alpha#1", 3),
    ]
    assert AuditEvent.objects.filter(partition="alpha").count() == 2
    assert events[1].prev_hash == events[0].hash
    result = verify_chain()
    assert result.ok, result.problem
    assert result.heads["alpha#1"] == (3, events[-1].hash)
    # And a quiet agent's next append goes back to its first stripe
    _append(1, "alpha")
    assert AuditEvent.objects.order_by("-id").first().partition == "alpha"


def test_stripes__tampered_event_in_a_second_stripe__is_named(settings):
    # Given alpha's events spread over two stripes
    events = _appends_while_a_stripe_is_held(settings, "alpha", 3)
    # When an event of the second stripe is rewritten
    _tamper("UPDATE audit_auditevent SET data = %s WHERE id = %s", ['{"i": 99}', events[1].id])
    # Then the full walk names it, and audit_verify fails
    result = verify_chain()
    assert not result.ok
    assert result.first_broken_id == events[1].id
    with pytest.raises(CommandError) as excinfo:
        call_command("audit_verify")
    assert f"chain broken at event {events[1].id}" in str(excinfo.value)


def test_stripes__checkpoint__records_every_stripe_head(settings):
    # Given alpha's events spread over two stripes
    events = _appends_while_a_stripe_is_held(settings, "alpha", 2)
    first = AuditEvent.objects.filter(partition="alpha").order_by("-chain_seq").first()
    # When a checkpoint is written
    with transaction.atomic():
        checkpoint = write_checkpoint()
    # Then it names both stripes' heads, and the walk checks them against the stripes
    assert checkpoint.data["heads"]["alpha"] == [2, first.hash]
    assert checkpoint.data["heads"]["alpha#1"] == [2, events[-1].hash]
    assert verify_chain().ok


def test_stripes__scoped_audit_reader__owns_the_agents_stripes_only():
    scope = AuditScope(everything=False, agent_slugs=frozenset({"alpha"}))
    assert scope.allows_partition("alpha")
    assert scope.allows_partition("alpha#3")
    assert not scope.allows_partition("alphabet")
    assert not scope.allows_partition("beta#1")
    assert not scope.allows_partition("global")
    assert partition_agent("alpha#3") == "alpha"
    assert partition_agent("global") == ""


def _tamper(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        try:
            cursor.execute(sql, params)
        finally:
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


def test_audit_verify__intact_chain__reports_count(capsys):
    _append(5, "alpha")
    call_command("audit_verify")
    assert "chain intact: 5 events" in capsys.readouterr().out


def test_audit_verify__tampered_data__names_the_first_broken_event():
    _append(6, "alpha")
    victim = AuditEvent.objects.order_by("id")[3]
    _tamper("UPDATE audit_auditevent SET data = %s WHERE id = %s", ['{"i": 999}', victim.pk])
    with pytest.raises(CommandError) as excinfo:
        call_command("audit_verify")
    assert excinfo.value.returncode == 1
    assert f"chain broken at event {victim.pk}" in str(excinfo.value)


def test_audit_verify__deleted_event__is_detected_at_the_next_one():
    _append(5, "alpha")
    events = list(AuditEvent.objects.order_by("id"))
    _tamper("DELETE FROM audit_auditevent WHERE id = %s", [events[2].pk])
    result = verify_chain()
    assert not result.ok
    assert result.first_broken_id == events[3].pk


def test_checkpoint__rewritten_partition_before_it__is_detected():
    _append(3, "alpha")
    with transaction.atomic():
        write_checkpoint()
    # Rewrite the whole alpha chain consistently (recomputing nothing but one row's verb)
    first = AuditEvent.objects.filter(partition="alpha").order_by("id").first()
    _tamper("UPDATE audit_auditevent SET actor = %s WHERE id = %s", ["mallory", first.pk])
    assert not verify_chain().ok


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_auditevent SET verb = 'x'", "DELETE FROM audit_auditevent"],
)
def test_table__update_or_delete__is_refused_on_postgresql(statement):
    _append(2)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    assert AuditEvent.objects.count() == 2


def test_table__truncate__is_refused_without_the_test_only_setting():
    _append(2)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET LOCAL airlock.allow_audit_truncate = off")
        cursor.execute("TRUNCATE audit_auditevent")
    assert AuditEvent.objects.count() == 2
