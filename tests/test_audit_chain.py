"""The hash-chained audit log on PostgreSQL: concurrent appends never fork it, tampering is
named by sequence, and the table refuses UPDATE, DELETE and TRUNCATE."""

import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.utils import DatabaseError

from audit import verbs
from audit.chain import Actor, append_event, verify_chain, write_checkpoint
from audit.models import AuditEvent

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
    # Given 8 threads appending to two partitions (and the global one) at once
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
        write_checkpoint()
    # Then every partition's sequence has no gaps or forks and the chain verifies
    result = verify_chain()
    assert result.ok, result.problem
    assert result.events == 8 * 25 + 1
    for partition, expected in (("alpha", 75), ("beta", 75), ("global", 51)):
        seqs = list(
            AuditEvent.objects.filter(partition=partition)
            .order_by("id")
            .values_list("chain_seq", flat=True)
        )
        assert seqs == list(range(1, expected + 1))


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
