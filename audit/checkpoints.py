"""Signed checkpoints of the chain head, kept outside the database.

The hash chain proves that no event was changed *relative to the others*; someone able to
rewrite the whole table could recompute every hash. So, periodically, an ``audit.checkpoint``
event joins every partition's head into the global chain, and that event's sequence and hash
— the head of the whole log — are signed with a server key (HMAC-SHA256) and appended as one
JSON line to a file in ``AUDIT_CHECKPOINT_DIR``. The checkpoint event pins every partition's
head at that moment (verification checks its recorded heads against the partitions), so one
signed hash per line covers everything before it. Verification compares the table with every
signed line: a rewritten table no longer has the hashes its earlier checkpoints signed.

Each line also carries the SHA-256 of the line before it, so a line removed from the middle
of the file is noticed too.

Each line names the installation that wrote it (``audit.installation``; format 2): lines of
another installation are not compared with this database, and a file holding only such
lines is reported as belonging to another installation, not as forged. Format-1 lines
(written before) carry no installation and are read as this installation's. Unless
``AUDIT_CHECKPOINT_DIR`` is set, the file lives in ``var/checkpoints/<installation id>/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from audit.canonical import canonical_json, sha256_hex
from audit.chain import GLOBAL_PARTITION, Actor, write_checkpoint
from audit.installation import installation_id
from audit.models import AuditChainHead, AuditEvent
from audit.verbs import AUDIT_CHECKPOINT
from audit.walker import Expectations

CHECKPOINT_FILE_NAME = "checkpoints.jsonl"
FORMAT_VERSION = 2


def _derived_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"airlock.audit.checkpoint.v1", hashlib.sha256).digest()


def signing_key() -> bytes:
    """``AUDIT_CHECKPOINT_KEY``, or a key derived from ``SECRET_KEY`` when it is not set."""
    if settings.AUDIT_CHECKPOINT_KEY:
        return settings.AUDIT_CHECKPOINT_KEY.encode()
    return _derived_key(settings.SECRET_KEY)


def key_id(key: bytes | None = None) -> str:
    """A short public name of the key, so that a rotated key can be told apart."""
    return hashlib.sha256(b"airlock-key-id:" + (key or signing_key())).hexdigest()[:12]


def sign(record: dict, key: bytes | None = None) -> str:
    """HMAC-SHA256 over the canonical JSON of ``record`` without its ``signature``."""
    body = {k: v for k, v in record.items() if k != "signature"}
    return hmac.new(key or signing_key(), canonical_json(body).encode(), hashlib.sha256).hexdigest()


def verification_keys() -> list[bytes]:
    """The current key first, then retired ones, so that lines and chain heads signed before
    a rotation still verify: ``AUDIT_CHECKPOINT_PREVIOUS_KEYS``, the key derived from
    ``SECRET_KEY`` (when an ``AUDIT_CHECKPOINT_KEY`` replaced it) and the keys derived from
    each of Django's ``SECRET_KEY_FALLBACKS``."""
    keys = [signing_key(), *(k.encode() for k in settings.AUDIT_CHECKPOINT_PREVIOUS_KEYS)]
    if settings.AUDIT_CHECKPOINT_KEY:
        keys.append(_derived_key(settings.SECRET_KEY))
    keys += [_derived_key(k) for k in getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return list(dict.fromkeys(keys))


def signed_by(record: dict) -> str:
    """``current`` or ``previous`` (the key that signed ``record``, found by the key id it
    names), or ``""`` when no key of this server signed it."""
    given = record.get("signature")
    if not isinstance(given, str):
        return ""
    for index, key in enumerate(verification_keys()):
        if key_id(key) == record.get("key_id") and hmac.compare_digest(given, sign(record, key)):
            return "current" if index == 0 else "previous"
    return ""


def signature_ok(record: dict, key: bytes | None = None) -> bool:
    """With ``key``, that key only; otherwise the key (current or retired) whose id the
    record names."""
    if key is None:
        return bool(signed_by(record))
    given = record.get("signature")
    return isinstance(given, str) and hmac.compare_digest(given, sign(record, key))


def other_installation_message(theirs: str, ours: str, what: str = "this file") -> str:
    return (
        f"{what} was written by installation {theirs}; this database is installation {ours} "
        "— not a forgery: verify it against the database it came from"
    )


def checkpoint_dir() -> Path:
    """``AUDIT_CHECKPOINT_DIR`` when set; otherwise ``var/checkpoints/<installation id>``,
    so that databases used from one checkout never share a file."""
    if settings.AUDIT_CHECKPOINT_DIR:
        return Path(settings.AUDIT_CHECKPOINT_DIR)
    return Path(settings.VAR_DIR) / "checkpoints" / installation_id()


def checkpoint_path() -> Path:
    path = checkpoint_dir() / CHECKPOINT_FILE_NAME
    if not settings.AUDIT_CHECKPOINT_DIR and not path.exists():
        _adopt_legacy_file(path)
    return path


def _adopt_legacy_file(path: Path) -> None:
    """Before installation ids, the default file was ``var/checkpoints/checkpoints.jsonl``.
    Move it into this installation's directory when its newest line names an event of this
    database with the same hash (it was written for this database); otherwise leave it."""
    legacy = Path(settings.VAR_DIR) / "checkpoints" / CHECKPOINT_FILE_NAME
    if not legacy.is_file() or not legacy.stat().st_size:
        return
    try:
        record = json.loads(_last_line(legacy))
    except (OSError, ValueError):
        return
    if not isinstance(record, dict) or record.get("installation") not in (
        None,
        installation_id(),
    ):
        return
    ours = AuditEvent.objects.filter(
        partition=record.get("partition"), chain_seq=record.get("seq"), hash=record.get("hash")
    ).exists()
    if not ours:
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A link never replaces a file another process has just started; then the old name goes.
    with contextlib.suppress(FileNotFoundError, FileExistsError):
        os.link(legacy, path)
        legacy.unlink()


# --- writing ------------------------------------------------------------------------------


def _last_line(path: Path) -> str:
    """The last line of ``path`` without reading the whole file."""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        block = 8192
        data = b""
        while size > 0:
            step = min(block, size)
            size -= step
            handle.seek(size)
            data = handle.read(step) + data
            if data.rstrip(b"\n").count(b"\n") >= 1:
                break
    lines = data.rstrip(b"\n").split(b"\n")
    return lines[-1].decode() if lines and lines[-1] else ""


def append_record(record: dict, path: Path | None = None) -> dict:
    """Sign ``record`` (chained to the file's last line) and append it durably."""
    path = path or checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with path.open("a+", encoding="utf-8") as handle:
        # One writer at a time, so two lines never claim the same predecessor.
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            previous = _last_line(path) if path.stat().st_size else ""
            full = {
                **record,
                "v": FORMAT_VERSION,
                "installation": installation_id(),
                "prev_line_sha256": sha256_hex(previous) if previous else "",
                "key_id": key_id(),
            }
            full["signature"] = sign(full)
            handle.write(canonical_json(full) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return full


def _unchanged_since_last_checkpoint(heads: list[AuditChainHead]) -> bool:
    by_partition = {h.partition: h for h in heads}
    global_head = by_partition.get(GLOBAL_PARTITION)
    if global_head is None or global_head.last_seq == 0:
        return False
    last = (
        AuditEvent.objects.filter(partition=GLOBAL_PARTITION, chain_seq=global_head.last_seq)
        .values("verb", "data")
        .first()
    )
    if last is None or last["verb"] != AUDIT_CHECKPOINT:
        return False
    current = {
        h.partition: [h.last_seq, h.last_hash] for h in heads if h.partition != GLOBAL_PARTITION
    }
    return (last["data"] or {}).get("heads") == current


def write_signed_checkpoint(*, actor: Actor | None = None, force: bool = False) -> dict | None:
    """Join the partitions with an ``audit.checkpoint`` event and, once that committed,
    append every partition's head (the checkpoint itself included) as a signed line.

    Without ``force``, nothing is written when no event was appended since the last
    checkpoint. Returns the record to be signed, or None."""
    with transaction.atomic():
        heads = list(AuditChainHead.objects.select_for_update().order_by("partition"))
        if not force and _unchanged_since_last_checkpoint(heads):
            return None
        event = write_checkpoint(actor=actor)
        record = {
            "at": event.created_at.isoformat(),
            "event_id": event.pk,
            "partition": GLOBAL_PARTITION,
            "seq": event.chain_seq,
            "hash": event.hash,
            "partitions": len(event.data.get("heads") or {}) + 1,
        }
        transaction.on_commit(lambda: append_record(record))
    return record


# --- reading ------------------------------------------------------------------------------


@dataclass
class CheckpointFile:
    """The signed lines of this installation in a checkpoint file, and the first problem
    with the file itself. ``problem_record`` is the line the problem is about (its event
    is named in the report); ``other_installations`` counts the lines of others, which
    are checked (signature, order) but not compared with this database."""

    path: Path
    records: list[dict]
    problem: str = ""
    problem_record: dict | None = None
    other_installation: bool = False
    other_installations: dict[str, int] = field(default_factory=dict)
    previous_key_lines: int = 0
    other_key_lines: int = 0  # lines of other installations signed with a key unknown here
    line_numbers: list[int] = field(default_factory=list)  # of ``records``, in the file

    @property
    def latest(self) -> dict | None:
        return self.records[-1] if self.records else None

    @property
    def notes(self) -> list[str]:
        notes = []
        if self.previous_key_lines:
            notes.append(
                f"{self.previous_key_lines} checkpoint line(s) signed with a previous key "
                "(SECRET_KEY_FALLBACKS or AUDIT_CHECKPOINT_PREVIOUS_KEYS)"
            )
        for other, count in sorted(self.other_installations.items()):
            notes.append(f"{count} checkpoint line(s) of installation {other} skipped")
        return notes

    def expectations(self, only_latest: bool = False) -> Expectations:
        """What the table must hold according to the signed lines."""
        pairs = list(zip(self.records, self.line_numbers, strict=True))
        claims: Expectations = {}
        for record, number in pairs[-1:] if only_latest else pairs:
            key = (record["partition"], record["seq"])
            source = f"signed checkpoint line {number}"
            claims.setdefault(key, []).append((record["hash"], source))
        return claims


def read_checkpoint_file(
    path: Path | None = None, key: bytes | None = None, installation: str | None = None
) -> CheckpointFile:
    """Read and check every line: format, signature, the link to the line before, and
    that no two lines disagree about one event. Lines of another installation than
    ``installation`` (default: this one) are checked but kept apart."""
    path = path or checkpoint_path()
    ours = installation or installation_id()
    result = CheckpointFile(path, [])
    if not path.exists():
        return result
    previous = ""
    seen: dict[tuple[str, int], tuple[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip("\n")
            problem, record = _line_problem(line, previous, key, seen, number, ours, result)
            if problem:
                result.problem = f"{path.name} line {number}: {problem}"
                result.problem_record = record
                return result
            previous = line
    if result.other_installations and not result.records:
        others = ", ".join(sorted(result.other_installations))
        if result.other_key_lines:
            others += " (signed with its own key, not one of this server's)"
        result.problem = other_installation_message(others, ours, path.name)
        result.other_installation = True
    return result


def _line_problem(
    line: str,
    previous: str,
    key: bytes | None,
    seen: dict[tuple[str, int], tuple[str, int]],
    number: int,
    ours: str,
    result: CheckpointFile,
) -> tuple[str, dict | None]:
    try:
        record: Any = json.loads(line)
    except ValueError:
        return "not JSON", None
    if not (
        isinstance(record, dict)
        and isinstance(record.get("partition"), str)
        and type(record.get("seq")) is int
        and isinstance(record.get("hash"), str)
    ):
        return "not a checkpoint record", None
    theirs = record.get("installation")
    other = theirs is not None and theirs != ours
    signer = ("current" if signature_ok(record, key) else "") if key else signed_by(record)
    if not signer and not other:
        return "signature does not match (forged, altered, or signed with another key)", record
    expected_prev = sha256_hex(previous) if previous else ""
    if record.get("prev_line_sha256") != expected_prev:
        return "does not follow the line before it (a line was removed or reordered)", record
    if other:
        # Not compared with this database, so a line of another installation signed with
        # that installation's own key is skipped too (its signed successor still links to
        # it, so it cannot hide a removed line of ours).
        result.other_installations[theirs] = result.other_installations.get(theirs, 0) + 1
        if not signer:
            result.other_key_lines += 1
        return "", record
    claim = (record["partition"], record["seq"])
    earlier = seen.get(claim)
    if earlier and earlier[0] != record["hash"]:
        return f"disagrees with line {earlier[1]} about {claim[0]}#{claim[1]}", record
    seen[claim] = (record["hash"], number)
    if signer == "previous":
        result.previous_key_lines += 1
    result.records.append(record)
    result.line_numbers.append(number)
    return "", record


def latest_checkpoint(path: Path | None = None) -> tuple[dict | None, str]:
    """The newest line (read from the end of the file) and whether its signature holds,
    for the status display; verification reads them all."""
    path = path or checkpoint_path()
    if not path.exists() or not path.stat().st_size:
        return None, ""
    try:
        record = json.loads(_last_line(path))
    except ValueError:
        return None, "the newest checkpoint line is not JSON"
    if not isinstance(record, dict):
        return None, "the newest checkpoint's signature does not match"
    theirs, ours = record.get("installation"), installation_id()
    if theirs is not None and theirs != ours:
        return record, other_installation_message(theirs, ours, "the newest checkpoint")
    if not signature_ok(record):
        return record, "the newest checkpoint's signature does not match"
    return record, ""
