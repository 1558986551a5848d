"""Verification of the chain against signed checkpoints kept outside the database: a
rewritten table or a lost tail is caught; verification runs are recorded (full and
incremental), a break is audited once and tells the incident owners."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from approvals.models import Outbox
from audit import verbs
from audit.chain import Actor, append_event, event_digest
from audit.checkpoints import (
    append_record,
    checkpoint_path,
    read_checkpoint_file,
    write_signed_checkpoint,
)
from audit.models import AuditChainHead, AuditEvent, AuditVerification
from audit.tasks import verify_chain_periodically, write_checkpoint
from audit.verification import run_verification, verify_chain
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def checkpoint_dir(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"
    return settings.AUDIT_CHECKPOINT_DIR


def _append(n: int, agent_slug: str = "", start: int = 0) -> None:
    for i in range(start, start + n):
        with transaction.atomic():
            append_event(
                verb=verbs.ACTION_VIEWED,
                actor=Actor.system("tester"),
                target_type="action",
                target_id=i,
                agent_slug=agent_slug,
                data={"i": i},
            )


def _tamper(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        try:
            cursor.execute(sql, params)
        finally:
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


def _rewrite_partition_from(partition: str, seq: int, new_actor: str) -> None:
    """What someone with write access could do: change one event and recompute every hash
    after it (and the head table), so that the chain on its own still verifies."""
    rows = list(
        AuditEvent.objects.filter(partition=partition, chain_seq__gte=seq).order_by("chain_seq")
    )
    previous = (
        AuditEvent.objects.filter(partition=partition, chain_seq=seq - 1)
        .values_list("hash", flat=True)
        .first()
        or ""
    )
    for row in rows:
        actor = new_actor if row.chain_seq == seq else row.actor
        digest = event_digest(
            partition=row.partition,
            chain_seq=row.chain_seq,
            created_at=row.created_at.isoformat(),
            actor_type=row.actor_type,
            actor=actor,
            verb=row.verb,
            target_type=row.target_type,
            target_id=row.target_id,
            agent_slug=row.agent_slug,
            correlation_id=row.correlation_id,
            data=row.data,
            prev_hash=previous,
        )
        _tamper(
            "UPDATE audit_auditevent SET actor = %s, prev_hash = %s, hash = %s WHERE id = %s",
            [actor, previous, digest, row.pk],
        )
        previous = digest
    AuditChainHead.objects.filter(partition=partition).update(last_hash=previous)


# --- checkpoints ----------------------------------------------------------------------------


def test_checkpoint__writes_a_signed_line_chained_to_the_one_before():
    _append(3, "alpha")
    first = write_signed_checkpoint()
    _append(1, "alpha", start=3)
    second = write_signed_checkpoint()
    lines = checkpoint_path().read_text().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert [r["event_id"] for r in records] == [first["event_id"], second["event_id"]]
    assert records[0]["prev_line_sha256"] == ""
    assert records[1]["prev_line_sha256"] != ""
    checkpoint_event = AuditEvent.objects.get(pk=second["event_id"])
    assert (records[1]["seq"], records[1]["hash"]) == (
        checkpoint_event.chain_seq,
        checkpoint_event.hash,
    )
    assert checkpoint_event.data["heads"]["alpha"][0] == 4
    assert read_checkpoint_file().problem == ""


def test_checkpoint_task__nothing_new__writes_nothing():
    _append(2, "alpha")
    assert write_checkpoint() is not None
    assert write_checkpoint() is None  # nothing appended since
    _append(1, "beta")
    assert write_checkpoint() is not None
    assert len(checkpoint_path().read_text().splitlines()) == 2


def test_checkpoint__rolled_back_transaction__writes_no_line():
    _append(1, "alpha")
    with pytest.raises(RuntimeError), transaction.atomic():
        write_signed_checkpoint()
        raise RuntimeError("the change fails")
    assert not checkpoint_path().exists()
    assert not AuditEvent.objects.filter(verb=verbs.AUDIT_CHECKPOINT).exists()


def test_verify__table_rewritten_consistently__is_caught_by_the_signed_checkpoint():
    # Given events, a signed checkpoint, and more events
    _append(5, "alpha")
    _append(2)
    write_signed_checkpoint()
    _append(2, "alpha", start=5)
    # When someone rewrites alpha from its 2nd event on, recomputing every hash
    _rewrite_partition_from("alpha", 2, "mallory")
    # Then the chain alone looks fine (only the checkpoint event disagrees with it) …
    result = verify_chain()
    assert not result.ok and "checkpoint disagrees" in result.problem
    # … and a rewrite of the checkpoint event too still fails against the signed file.
    checkpoint = AuditEvent.objects.get(verb=verbs.AUDIT_CHECKPOINT)
    alpha_head = AuditEvent.objects.filter(partition="alpha", chain_seq=5).get()
    data = {"heads": {"alpha": [5, alpha_head.hash]}}
    _tamper(
        "UPDATE audit_auditevent SET data = %s WHERE id = %s", [json.dumps(data), checkpoint.pk]
    )
    _rewrite_partition_from("global", checkpoint.chain_seq, checkpoint.actor)
    assert verify_chain().ok  # the table is now self-consistent
    run = run_verification(kind="full")
    assert not run.ok
    assert "signed checkpoint line 1" in run.problem and "rewritten" in run.problem


def test_verify__lost_tail__is_caught_by_the_signed_checkpoint():
    _append(4, "alpha")
    write_signed_checkpoint()
    # Delete the checkpoint (the global tail) and fix the head table to match
    checkpoint = AuditEvent.objects.get(verb=verbs.AUDIT_CHECKPOINT)
    _tamper("DELETE FROM audit_auditevent WHERE id = %s", [checkpoint.pk])
    AuditChainHead.objects.filter(partition="global").update(last_seq=0, last_hash="")
    assert verify_chain().ok
    run = run_verification(kind="full")
    assert not run.ok and "missing" in run.problem


def test_verify__head_table_ahead_of_the_chain__is_a_lost_tail():
    _append(3, "alpha")
    last = AuditEvent.objects.filter(partition="alpha").order_by("-chain_seq").first()
    _tamper("DELETE FROM audit_auditevent WHERE id = %s", [last.pk])
    result = verify_chain()
    assert not result.ok and "lost its tail" in result.problem


def test_checkpoint_file__forged_line__is_refused():
    _append(2, "alpha")
    write_signed_checkpoint()
    path = checkpoint_path()
    record = json.loads(path.read_text())
    record["hash"] = "0" * 64
    path.write_text(json.dumps(record) + "\n")
    assert "signature does not match" in read_checkpoint_file().problem
    run = run_verification(kind="full")
    assert not run.ok and "checkpoint file" in run.problem


def test_checkpoint_file__line_removed_from_the_middle__is_noticed():
    for i in range(3):
        _append(1, "alpha", start=i)
        write_signed_checkpoint()
    path = checkpoint_path()
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[2])
    assert "line was removed or reordered" in read_checkpoint_file().problem


def test_checkpoint_file__two_writers__each_line_follows_the_one_before(tmp_path):
    path = tmp_path / "c.jsonl"
    for i in range(5):
        append_record(
            {"at": "t", "event_id": i, "partition": "global", "seq": i + 1, "hash": "h"}, path
        )
    assert read_checkpoint_file(path).problem == ""


# --- runs, status and the alarm ------------------------------------------------------------


def test_run__full_then_incremental__continues_from_the_verified_heads():
    _append(5, "alpha")
    _append(3, "beta")
    write_signed_checkpoint()
    full = run_verification(kind="full")
    assert full.ok and full.events_checked == 9
    assert full.heads["alpha"][0] == 5
    _append(2, "alpha", start=5)
    _append(1)
    incremental = run_verification(kind="incremental")
    assert incremental.ok and incremental.events_checked == 3
    assert incremental.heads["alpha"][0] == 7


def test_run__incremental__detects_a_changed_verified_head():
    _append(3, "alpha")
    assert run_verification(kind="full").ok
    last = AuditEvent.objects.filter(partition="alpha").order_by("-chain_seq").first()
    _tamper("UPDATE audit_auditevent SET hash = %s WHERE id = %s", ["f" * 64, last.pk])
    run = run_verification(kind="incremental")
    assert not run.ok and "changed since it was verified" in run.problem


def test_run__incremental__detects_a_new_event_that_does_not_link():
    _append(3, "alpha")
    assert run_verification(kind="full").ok
    _append(2, "alpha", start=3)
    new = AuditEvent.objects.filter(partition="alpha").order_by("-chain_seq").first()
    _tamper("UPDATE audit_auditevent SET data = %s WHERE id = %s", ['{"i": 0}', new.pk])
    run = run_verification(kind="incremental")
    assert not run.ok and run.first_broken_id == new.pk


def test_run__broken__audited_once_and_incident_owners_notified(incident_owner):
    # Given an incident owner with an email address and a tampered chain
    incident_owner.email = "ivan@example.com"
    incident_owner.save()
    _append(3, "alpha")
    victim = AuditEvent.objects.filter(partition="alpha").order_by("id")[1]
    _tamper("UPDATE audit_auditevent SET actor = 'x' WHERE id = %s", [victim.pk])
    # When the periodic task verifies twice
    assert verify_chain_periodically() is False
    assert verify_chain_periodically() is False
    # Then the failure is recorded, audited once and owed once to the incident owner
    runs = list(AuditVerification.objects.order_by("id"))
    assert [r.ok for r in runs] == [False, False] and runs[0].first_broken_id == victim.pk
    failures = AuditEvent.objects.filter(verb=verbs.AUDIT_VERIFICATION_FAILED)
    assert failures.count() == 1
    assert failures.get().data["first_broken_id"] == victim.pk
    mails = Outbox.objects.filter(kind=Outbox.Kind.EMAIL, destination="ivan@example.com")
    assert mails.count() == 1
    assert "failed verification" in mails.get().payload["subject"]


def test_run__choice__full_first_then_incremental(settings):
    _append(2, "alpha")
    assert run_verification().kind == "full"
    assert run_verification().kind == "incremental"
    settings.AUDIT_FULL_VERIFY_HOURS = 0
    assert run_verification().kind == "full"


def test_audit_verify_command__reports_checkpoints_and_records_the_run():
    _append(3, "alpha")
    write_signed_checkpoint()
    stdout = io.StringIO()
    call_command("audit_verify", stdout=stdout)
    assert "chain intact: 4 events (full); 1 signed checkpoint(s) compared" in stdout.getvalue()
    assert AuditVerification.objects.get().triggered_by == "manage.py audit_verify"


def test_audit_verify_command__progress__goes_to_stderr(capsys, monkeypatch):
    from audit import walker

    _append(5, "alpha")
    original = walker.ChainWalker.walk

    def walk(self, rows, **kwargs):
        return original(self, rows, **{**kwargs, "progress_every": 2})

    monkeypatch.setattr(walker.ChainWalker, "walk", walk)
    call_command("audit_verify", progress=True)
    assert "verifying:" in capsys.readouterr().err


def test_audit_verify_command__interrupted__exits_130(monkeypatch):
    from audit import verification

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(verification, "verify_chain", interrupted)
    with pytest.raises(CommandError) as excinfo:
        call_command("audit_verify")
    assert excinfo.value.returncode == 130
    assert not AuditVerification.objects.exists()


def test_status__shown_on_the_page(client, auditor):
    _append(2, "alpha")
    write_signed_checkpoint()
    client.force_login(auditor)
    assert "Not verified yet" in client.get("/audit").content.decode()
    run_verification(kind="full")
    page = client.get("/audit").content.decode()
    assert "Intact" in page and "Signed checkpoint" in page and "global #" in page
    _tamper(
        "UPDATE audit_auditevent SET actor = 'x' WHERE chain_seq = 1 AND partition = 'alpha'", []
    )
    run_verification(kind="full")
    page = client.get("/audit").content.decode()
    assert "Broken" in page
    status = client.get("/api/v1/audit/status").json()
    assert status["state"] == "broken" and status["checkpoint"]["partition"] == "global"


def test_interleaved_partitions__incremental_never_false_alarms(reference_data):
    agent = factories.make_agent("incr-agent")
    assert run_verification(kind="full").ok
    for i in range(5):
        factories.submit(agent, "get_order_status", {"id": i})
        _append(1, "beta", start=i)
        if i % 2:
            write_signed_checkpoint()
        assert run_verification(kind="incremental").ok


def test_checkpoint_key_rotation__old_lines_verify_with_the_retired_key(settings):
    settings.AUDIT_CHECKPOINT_KEY = "old-key"
    _append(2, "alpha")
    write_signed_checkpoint()
    settings.AUDIT_CHECKPOINT_KEY = "new-key"
    _append(1, "alpha", start=2)
    write_signed_checkpoint()
    # Without the retired key the first line cannot be trusted …
    assert "line 1: signature does not match" in read_checkpoint_file().problem
    # … with it, both lines verify, each with the key it names.
    settings.AUDIT_CHECKPOINT_PREVIOUS_KEYS = ["old-key"]
    checkpoints = read_checkpoint_file()
    assert checkpoints.problem == ""
    assert len({r["key_id"] for r in checkpoints.records}) == 2
    assert run_verification(kind="full").ok
