"""The installation id: made once, kept in the database, carried by every signed checkpoint
line and export chain head. A file written by another installation is reported as such —
not as a forgery — while a forged line of this installation still names its event; the
default checkpoint directory is one per installation; checkpoints and exports signed
before a ``SECRET_KEY`` rotation verify with the key kept in ``SECRET_KEY_FALLBACKS``."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from audit import installation
from audit.chain import Actor, append_event
from audit.checkpoints import (
    checkpoint_path,
    key_id,
    read_checkpoint_file,
    sign,
    signing_key,
    write_signed_checkpoint,
)
from audit.installation import installation_id
from audit.models import Installation
from audit.verbs import ACTION_VIEWED
from audit.verification import run_verification

pytestmark = pytest.mark.django_db(transaction=True)

OTHER = "00000000-0000-4000-8000-00000000000b"


@pytest.fixture(autouse=True)
def checkpoint_dir(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"
    installation.forget_installation_id()
    yield settings.AUDIT_CHECKPOINT_DIR
    installation.forget_installation_id()


def _append(n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        with transaction.atomic():
            append_event(
                verb=ACTION_VIEWED,
                actor=Actor.system("tester"),
                target_type="action",
                target_id=i,
                agent_slug="alpha",
                data={"i": i},
            )


def _checkpoints(n: int = 2) -> list[dict]:
    written = []
    for i in range(n):
        _append(1, start=i)
        written.append(write_signed_checkpoint())
    return written


def _become(other: str) -> None:
    """What pointing this checkout at another database looks like to the code: the stored
    installation id is another one."""
    Installation.objects.filter(pk=1).update(installation_id=other, seal=installation.seal(other))
    installation.forget_installation_id()


def _verify_command(**options) -> str:
    out = io.StringIO()
    call_command("audit_verify", stdout=out, **options)
    return out.getvalue()


def _verify_command_fails(**options) -> CommandError:
    with pytest.raises(CommandError) as excinfo:
        call_command("audit_verify", stdout=io.StringIO(), **options)
    return excinfo.value


# --- the id ---------------------------------------------------------------------------------


def test_installation_id__stored_once__same_in_every_call():
    first = installation_id()
    assert Installation.objects.get(pk=1).installation_id == first
    installation.forget_installation_id()
    assert installation_id() == first


def test_installation_id__made_by_racing_processes__one_row_one_id():
    Installation.objects.all().delete()  # as after a flush
    barrier = threading.Barrier(4)
    seen: list[str] = []

    def make() -> None:
        try:
            barrier.wait()
            seen.append(installation._create())
        finally:
            connection.close()

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1 and len(seen) == 4
    assert list(Installation.objects.values_list("installation_id", flat=True)) == seen[:1]


def test_default_checkpoint_dir__one_per_installation__configured_dir_kept(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = None
    settings.VAR_DIR = tmp_path / "var"
    mine = checkpoint_path()
    assert mine == tmp_path / "var" / "checkpoints" / installation_id() / "checkpoints.jsonl"
    _become(OTHER)
    assert checkpoint_path() == tmp_path / "var" / "checkpoints" / OTHER / "checkpoints.jsonl"
    assert checkpoint_path() != mine
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "configured"
    assert checkpoint_path() == tmp_path / "configured" / "checkpoints.jsonl"


def test_checkpoint_line_and_export_head__name_the_installation(tmp_path):
    _checkpoints(1)
    line = json.loads(checkpoint_path().read_text())
    assert line["installation"] == installation_id() and line["v"] == 2
    out = tmp_path / "export.jsonl"
    call_command("audit_export", output=str(out))
    head = json.loads(out.read_text().splitlines()[-1])
    assert head["installation"] == installation_id()


# --- another installation's files, and forgeries ---------------------------------------------


def test_checkpoint_file_of_another_installation__said_so__not_forgery():
    mine = installation_id()
    _checkpoints(2)
    _become(OTHER)
    run = run_verification(kind="full")
    assert not run.ok and run.first_broken_id is None
    assert f"written by installation {mine}; this database is installation {OTHER}" in run.problem
    assert "not a forgery" in run.problem and "forged" not in run.problem.replace("forgery", "")
    error = _verify_command_fails()
    assert error.returncode == 2
    assert str(error).startswith("cannot verify: ") and "not a forgery" in str(error)
    assert "event ?" not in str(error)


def test_checkpoint_file_of_another_installation_and_key__said_so__not_forgery(settings):
    settings.AUDIT_CHECKPOINT_KEY = "key-of-the-other-installation"
    mine = installation_id()
    _checkpoints(2)
    settings.AUDIT_CHECKPOINT_KEY = "key-of-this-installation"
    _become(OTHER)
    problem = read_checkpoint_file().problem
    assert f"written by installation {mine} (signed with its own key" in problem
    assert f"this database is installation {OTHER} — not a forgery" in problem
    assert _verify_command_fails().returncode == 2
    # Sharing a directory with it: this installation's own lines are compared.
    _checkpoints(1)
    assert run_verification(kind="full").ok


def test_shared_checkpoint_file__each_installation_compares_its_own_lines():
    mine = installation_id()
    _checkpoints(2)
    _become(OTHER)
    _checkpoints(1)
    checkpoints = read_checkpoint_file()
    assert checkpoints.problem == "" and len(checkpoints.records) == 1
    output = _verify_command()
    assert "1 signed checkpoint(s) compared" in output
    assert f"note: 2 checkpoint line(s) of installation {mine} skipped" in output


def test_installation_id_changed_to_look_elsewhere__is_caught(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = None
    settings.VAR_DIR = tmp_path / "var"
    _checkpoints(2)
    assert run_verification(kind="full").ok
    _become(OTHER)  # the default directory is now an empty one
    run = run_verification(kind="full")
    assert not run.ok and "installation id was changed" in run.problem


def test_installation_id_edited_in_the_database__verification_refuses_it():
    _checkpoints(2)
    Installation.objects.filter(pk=1).update(installation_id=OTHER)  # no key: no seal
    installation.forget_installation_id()
    run = run_verification(kind="full")
    assert not run.ok and "installation id" in run.problem and "not sealed" in run.problem


def test_installation_row_deleted_under_a_log__not_made_again():
    _checkpoints(1)
    Installation.objects.all().delete()
    installation.forget_installation_id()
    with pytest.raises(installation.InstallationMissing):
        installation_id()


def test_forged_line_of_this_installation__is_forgery_naming_the_event():
    _first, second = _checkpoints(2)
    path = checkpoint_path()
    lines = path.read_text().splitlines()
    forged = json.loads(lines[1])
    forged["hash"] = "0" * 64
    path.write_text(lines[0] + "\n" + json.dumps(forged) + "\n")
    run = run_verification(kind="full")
    assert not run.ok and run.first_broken_id == second["event_id"]
    assert "line 2: signature does not match (forged" in run.problem
    error = _verify_command_fails()
    assert error.returncode == 1
    assert str(error).startswith(f"chain broken at event {second['event_id']}: ")


def test_export_of_another_installation__said_so__not_forgery(settings, tmp_path):
    mine = installation_id()
    _append(3)
    out = tmp_path / "export.jsonl"
    call_command("audit_export", output=str(out))
    # Same key (one checkout, one SECRET_KEY): it verifies, with a note of whose it is.
    _become(OTHER)
    output = _verify_command(file=out)
    assert "export intact: 3 events" in output and "chain head signature valid" in output
    assert f"note: written by installation {mine}; this database is {OTHER}" in output
    # Its own key: cannot be checked here — said so, not "altered".
    settings.SECRET_KEY = "the-other-installations-secret-key"
    error = _verify_command_fails(file=out)
    assert error.returncode == 2
    assert f"this export was written by installation {mine}" in str(error)
    assert f"this database is installation {OTHER} — not a forgery" in str(error)
    assert "altered" not in str(error)


def test_export_altered_in_this_installation__still_a_bad_signature(tmp_path):
    _append(3)
    out = tmp_path / "export.jsonl"
    call_command("audit_export", output=str(out))
    lines = out.read_text().splitlines()
    head = json.loads(lines[-1])
    head["through_id"] += 1
    out.write_text("\n".join([*lines[:-1], json.dumps(head)]) + "\n")
    error = _verify_command_fails(file=out)
    assert error.returncode == 1 and "signature does not match (altered" in str(error)


# --- old lines and key rotation ----------------------------------------------------------------


def test_format_1_line__no_installation__verifies_as_this_installations(settings, tmp_path):
    """Lines written before installation ids; and the old default file is moved into this
    installation's directory when its newest line is one of this database's events."""
    settings.AUDIT_CHECKPOINT_DIR = None
    settings.VAR_DIR = tmp_path / "var"
    (written,) = _checkpoints(1)
    new_path = checkpoint_path()
    old = json.loads(new_path.read_text())
    del old["installation"], old["signature"]
    old["v"] = 1
    old["signature"] = sign(old)
    new_path.unlink()
    legacy = tmp_path / "var" / "checkpoints" / "checkpoints.jsonl"
    legacy.write_text(json.dumps(old) + "\n")
    run = run_verification(kind="full")
    assert run.ok and run.checkpoint_lines == 1
    assert not legacy.exists() and json.loads(new_path.read_text())["v"] == 1
    assert written["event_id"] == old["event_id"]


def test_legacy_file_of_another_database__left_where_it_is(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = None
    settings.VAR_DIR = tmp_path / "var"
    legacy = tmp_path / "var" / "checkpoints" / "checkpoints.jsonl"
    legacy.parent.mkdir(parents=True)
    record = {"partition": "global", "seq": 99, "hash": "a" * 64, "v": 1}
    record.update(prev_line_sha256="", key_id=key_id())
    record["signature"] = sign(record)
    legacy.write_text(json.dumps(record) + "\n")
    _append(1)
    assert run_verification(kind="full").ok
    assert legacy.exists() and not checkpoint_path().exists()
    error = _verify_command_fails(checkpoint_file=legacy)  # compared on request: not ours
    assert "global#99, which is missing" in str(error)


def test_secret_key_rotated__old_checkpoints_and_exports_verify_with_the_fallback(
    settings, tmp_path
):
    settings.SECRET_KEY = "the-old-secret-key"
    _become(installation_id())  # sealed with the old key too
    _checkpoints(2)
    out = tmp_path / "export.jsonl"
    call_command("audit_export", output=str(out))
    settings.SECRET_KEY = "the-new-secret-key"
    # Without the old key the old lines cannot be trusted …
    assert "line 1: signature does not match" in read_checkpoint_file().problem
    assert _verify_command_fails(file=out).returncode == 1
    # … with it in SECRET_KEY_FALLBACKS, they verify (and say which key signed them).
    settings.SECRET_KEY_FALLBACKS = ["the-old-secret-key"]
    (new,) = _checkpoints(1)
    lines = [json.loads(line) for line in checkpoint_path().read_text().splitlines()]
    assert lines[-1]["key_id"] == key_id(signing_key()) != lines[0]["key_id"]
    output = _verify_command()
    assert "3 signed checkpoint(s) compared" in output
    assert "note: 2 checkpoint line(s) signed with a previous key" in output
    output = _verify_command(file=out)
    assert "chain head signature valid" in output
    assert "note: the chain head was signed with a previous key" in output
    assert new["event_id"] > 0


def test_checkpoint_key_set_after_a_derived_one__derived_lines_still_verify(settings):
    _checkpoints(1)
    settings.AUDIT_CHECKPOINT_KEY = "a-separate-checkpoint-key"
    _checkpoints(1)
    checkpoints = read_checkpoint_file()
    assert checkpoints.problem == "" and checkpoints.previous_key_lines == 1
    assert run_verification(kind="full").ok


def test_old_default_dir_setting_value__path_unchanged(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path / "as-a-string")
    assert checkpoint_path() == Path(tmp_path / "as-a-string" / "checkpoints.jsonl")
