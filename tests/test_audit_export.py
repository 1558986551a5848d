"""Exporting the audit log (JSONL and CSV; command, page, API) and verifying an export
offline: the round trip holds, and a modified, removed, reordered or added line — or a
missing or altered chain head — is named."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from approvals import actions
from audit import verbs
from audit.chain import Actor, append_event, event_digest, row_digest
from audit.export import (
    ExportWriter,
    export_chunks,
    keyset_rows,
    take_cut,
    verify_export_file,
)
from audit.models import AuditEvent
from audit.search import AuditFilters, AuditScope
from tests import factories

EVERYTHING = AuditScope(everything=True)


@pytest.fixture(autouse=True)
def checkpoint_dir(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"


def _append(n: int, agent_slug: str = "", verb: str = verbs.ACTION_VIEWED, **data) -> None:
    for i in range(n):
        with transaction.atomic():
            append_event(
                verb=verb,
                actor=Actor.system("tester"),
                target_type="action",
                target_id=i,
                agent_slug=agent_slug,
                correlation_id=f"c-{i % 3}",
                data={"i": i, "text": 'héllo \u2028 "quoted"', "n": 1.5, **data},
            )


@pytest.fixture
def log(db):
    """Events in three partitions, interleaved."""
    for _ in range(3):
        _append(4, "alpha")
        _append(3, "beta")
        _append(2)
    return AuditEvent.objects.count()


def _export(tmp_path: Path, fmt: str = "jsonl", **filters: str) -> Path:
    out = tmp_path / f"export.{fmt}"
    call_command("audit_export", output=str(out), format=fmt, **filters)
    return out


def _verify(path: Path) -> str:
    stdout = io.StringIO()
    call_command("audit_verify", file=path, stdout=stdout)
    return stdout.getvalue()


def _verify_fails(path: Path) -> str:
    with pytest.raises(CommandError) as excinfo:
        call_command("audit_verify", file=path, stdout=io.StringIO())
    assert excinfo.value.returncode == 1
    return str(excinfo.value)


# --- the digest -----------------------------------------------------------------------------


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(st.text(), min_size=8, max_size=8),
    seq=st.integers(min_value=1, max_value=2**62),
    data=json_values,
)
def test_row_digest__any_event__equals_the_reference_digest(texts, seq, data):
    partition, created_at, actor_type, actor, verb, target_type, target_id, prev = texts
    fields = {
        "partition": partition,
        "chain_seq": seq,
        "created_at": created_at,
        "actor_type": actor_type,
        "actor": actor,
        "verb": verb,
        "target_type": target_type,
        "target_id": target_id,
        "agent_slug": texts[3],
        "correlation_id": texts[4],
        "data": data,
        "prev_hash": prev,
    }
    assert row_digest(*fields.values()) == event_digest(**fields)


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_then_verify__whole_log__round_trip_holds(log, tmp_path, fmt):
    # Given a log of three interleaved partitions
    # When it is exported by the command and verified offline
    path = _export(tmp_path, fmt)
    out = _verify(path)
    # Then every event is there and the signed chain head checks out
    assert f"export intact: {log} events" in out
    assert "signature valid" in out


def test_export__last_line__is_the_signed_chain_head(log, tmp_path):
    path = _export(tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines()
    head = json.loads(lines[-1])
    assert head["type"] == "chain_head"
    assert head["count"] == log == len(lines) - 1
    assert head["through_id"] == AuditEvent.objects.order_by("-id").first().pk
    assert set(head["chain_heads"]) == {"alpha", "beta", "global"}
    last_alpha = AuditEvent.objects.filter(partition="alpha").order_by("-chain_seq").first()
    assert head["chain_heads"]["alpha"] == [last_alpha.chain_seq, last_alpha.hash]
    assert head["contiguous"] is True
    assert len(head["signature"]) == 64


def test_export__filtered_by_agent__verifies_link_by_link(log, tmp_path):
    path = _export(tmp_path, agent="beta")
    events = [json.loads(line) for line in path.read_text().splitlines()[:-1]]
    assert {e["agent_slug"] for e in events} == {"beta"}
    assert [e["chain_seq"] for e in events] == list(range(1, 10))
    assert "export intact: 9 events" in _verify(path)


def test_export__filtered_by_text__has_gaps_and_still_verifies(db, tmp_path):
    _append(3, "alpha", tag="x")
    _append(3, "alpha", tag="needle")
    path = _export(tmp_path, q="needle")
    out = _verify(path)
    assert "export intact: 3 events" in out
    head = json.loads(path.read_text().splitlines()[-1])
    assert head["contiguous"] is False and head["filters"] == {"q": "needle"}


def test_export__csv__cells_that_look_like_formulas__are_escaped_and_round_trip(db, tmp_path):
    with transaction.atomic():
        append_event(
            verb=verbs.ACTION_VIEWED,
            actor=Actor.system('=HYPERLINK("http://evil")'),
            correlation_id="+1",
            data={"x": "-2"},
        )
    path = _export(tmp_path, "csv")
    rows = list(csv.reader(path.open(encoding="utf-8")))
    assert rows[1][rows[0].index("actor")] == '\'=HYPERLINK("http://evil")'
    assert rows[1][rows[0].index("correlation_id")] == "'+1"
    assert "export intact: 1 events" in _verify(path)


# --- tampering ----------------------------------------------------------------------------------


def _rewrite(path: Path, change) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(change(lines)), encoding="utf-8")


def test_verify_file__modified_line__is_named(log, tmp_path):
    path = _export(tmp_path)

    def modify(lines):
        event = json.loads(lines[4])
        event["data"]["i"] = 999
        lines[4] = json.dumps(event) + "\n"
        return lines

    _rewrite(path, modify)
    problem = _verify_fails(path)
    assert "line 5" in problem and "hash does not match its content" in problem


def test_verify_file__modified_line_with_recomputed_hash__breaks_the_next_link(log, tmp_path):
    path = _export(tmp_path, agent="alpha")

    def modify(lines):
        event = json.loads(lines[2])
        event["actor"] = "mallory"
        event["hash"] = row_digest(
            *(
                event[c]
                for c in (
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
                )
            ),
            event["prev_hash"],
        )
        lines[2] = json.dumps(event) + "\n"
        return lines

    _rewrite(path, modify)
    problem = _verify_fails(path)
    assert "line 4" in problem and "does not link" in problem


def test_verify_file__removed_line__is_detected(log, tmp_path):
    path = _export(tmp_path)
    _rewrite(path, lambda lines: lines[:6] + lines[7:])
    assert "line" in _verify_fails(path)


def test_verify_file__removed_line_of_a_filtered_export__is_detected_by_the_head(db, tmp_path):
    _append(5, "alpha", tag="needle")
    path = _export(tmp_path, q="needle", verb=verbs.ACTION_VIEWED)
    _rewrite(path, lambda lines: lines[:1] + lines[2:])  # drop the 2nd event: a "gap"
    assert "events were removed or added" in _verify_fails(path)


def test_verify_file__reordered_lines__are_detected(log, tmp_path):
    path = _export(tmp_path)

    def swap(lines):
        lines[2], lines[3] = lines[3], lines[2]
        return lines

    _rewrite(path, swap)
    assert "out of order" in _verify_fails(path)


def test_verify_file__added_line__is_detected(log, tmp_path):
    path = _export(tmp_path)
    _rewrite(path, lambda lines: [*lines[:-1], lines[-2], *lines[-1:]])
    assert "out of order" in _verify_fails(path)


def test_verify_file__missing_chain_head__is_an_incomplete_export(log, tmp_path):
    path = _export(tmp_path)
    _rewrite(path, lambda lines: lines[:-1])
    assert "no chain head" in _verify_fails(path)


def test_verify_file__chain_head_edited_to_match_removed_lines__fails_its_signature(log, tmp_path):
    path = _export(tmp_path)

    def drop_last_event_and_fix_head(lines):
        head = json.loads(lines[-1])
        events = [json.loads(x) for x in lines[:-2]]
        head["count"] = len(events)
        import hashlib

        digest = hashlib.sha256()
        exported = {}
        for e in events:
            digest.update(e["hash"].encode() + b"\n")
            exported[e["partition"]] = [e["chain_seq"], e["hash"]]
        head["events_sha256"] = digest.hexdigest()
        head["exported_heads"] = exported
        head["contiguous"] = False
        return [*lines[:-2], json.dumps(head) + "\n"]

    _rewrite(path, drop_last_event_and_fix_head)
    # Without the key the edit is consistent; with it, the signature gives it away.
    assert verify_export_file(path, check_signature=False).ok
    result = verify_export_file(path)
    assert not result.ok and result.signature == "invalid"
    assert "signature" in _verify_fails(path)


@pytest.mark.parametrize("fmt", ["csv"])
def test_verify_file__csv_modified_cell__is_named(log, tmp_path, fmt):
    path = _export(tmp_path, fmt)
    _rewrite(path, lambda lines: [lines[0], lines[1].replace("tester", "tester2", 1), *lines[2:]])
    assert "line 2" in _verify_fails(path)


# --- the cut and the streams ----------------------------------------------------------------------


def test_export__events_appended_after_the_cut__are_left_out(log):
    cut = take_cut(EVERYTHING)
    _append(2, "alpha")  # after the cut
    writer = ExportWriter("jsonl", cut, AuditFilters(), EVERYTHING)
    text = "".join(export_chunks(writer, keyset_rows(EVERYTHING, AuditFilters(), cut, 5)))
    assert writer.count == log
    assert json.loads(text.splitlines()[-1])["count"] == log


def test_export__keyset_batches__stream_in_id_order_without_repeats(log):
    cut = take_cut(EVERYTHING)
    ids = [row[0] for row in keyset_rows(EVERYTHING, AuditFilters(), cut, batch_size=4)]
    assert ids == sorted(ids) and len(ids) == len(set(ids)) == log


def test_export_page__auditor__streams_a_verifiable_file(log, client, auditor, tmp_path):
    client.force_login(auditor)
    response = client.get("/audit/export", {"format": "jsonl", "agent": "alpha"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    assert "attachment" in response["Content-Disposition"]
    path = tmp_path / "page.jsonl"
    path.write_bytes(b"".join(response.streaming_content))
    assert "export intact: 12 events" in _verify(path)


def test_export_api__csv__streams_a_verifiable_file(auditor, log, client, tmp_path):
    # (the auditor first: creating an account is itself audited, before the log is counted)
    client.force_login(auditor)
    response = client.get("/api/v1/audit/export", {"format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    path = tmp_path / "api.csv"
    path.write_bytes(b"".join(response.streaming_content))
    assert f"export intact: {log} events" in _verify(path)


def test_export_page__unknown_format__400(log, client, auditor):
    client.force_login(auditor)
    assert client.get("/audit/export", {"format": "xml"}).status_code == 400
    assert client.get("/api/v1/audit/export", {"format": "xml"}).status_code == 400


def test_export_command__progress__is_shown_when_asked(log, tmp_path, capsys):
    call_command("audit_export", output=str(tmp_path / "x.jsonl"), progress=True)
    err = capsys.readouterr().err
    assert f"exported {log} events" in err


def test_export_command__to_stdout__writes_lines_as_they_are(log):
    stdout = io.StringIO()
    call_command("audit_export", stdout=stdout)
    lines = stdout.getvalue().splitlines()
    assert len(lines) == log + 1 and json.loads(lines[-1])["type"] == "chain_head"


def test_export_command__interrupted__leaves_no_file(log, tmp_path, monkeypatch):
    from audit import export as export_module

    def interrupt(*args, **kwargs):
        yield "partial line\n"
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "export_chunks", interrupt)
    target = tmp_path / "x.jsonl"
    with pytest.raises(CommandError) as excinfo:
        call_command("audit_export", output=str(target))
    assert excinfo.value.returncode == 130
    assert not target.exists() and not (tmp_path / "x.jsonl.partial").exists()


def test_export__real_actions__round_trip(db, tmp_path, support_agent, reviewer):
    action = factories.submit(support_agent, "send_email", {"to": "a@example.com"})
    actions.approve(action_id=action.pk, user=reviewer, comment="ok ✓")
    path = _export(tmp_path, "csv", action=str(action.pk))
    assert "export intact: 3 events" in _verify(path)


# --- streaming through the real ASGI server -------------------------------------------------


@pytest.mark.multiprocess
def test_export__through_the_asgi_server__arrives_in_chunks_and_verifies(
    live_api, reference_data, tmp_path
):
    # Given enough events for several chunks and an auditor with a password
    for _ in range(6):
        _append(150, "alpha", padding="x" * 200)
    factories.make_user("auditor-live", groups=("auditor",), password="pw-live-1234")
    # When the auditor logs in and downloads the export
    login_page = live_api.get("/accounts/login/")
    token = live_api.cookies["csrftoken"]
    assert login_page.status_code == 200
    live_api.post(
        "/accounts/login/",
        data={"username": "auditor-live", "password": "pw-live-1234", "csrfmiddlewaretoken": token},
        headers={"Referer": str(live_api.base_url) + "/accounts/login/"},
    )
    chunks = []
    with live_api.stream("GET", "/audit/export?format=jsonl") as response:
        assert response.status_code == 200
        chunks = list(response.iter_raw())
    # Then it came in several pieces and verifies offline
    assert len(chunks) > 1
    path = tmp_path / "live.jsonl"
    path.write_bytes(b"".join(chunks))
    # (900 events, plus whatever logging in audited)
    assert f"export intact: {AuditEvent.objects.count()} events" in _verify(path)
