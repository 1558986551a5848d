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
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from audit.canonical import canonical_json, sha256_hex
from audit.chain import GLOBAL_PARTITION, Actor, Expectations, write_checkpoint
from audit.models import AuditChainHead, AuditEvent
from audit.verbs import AUDIT_CHECKPOINT

CHECKPOINT_FILE_NAME = "checkpoints.jsonl"
FORMAT_VERSION = 1


def signing_key() -> bytes:
    """``AUDIT_CHECKPOINT_KEY``, or a key derived from ``SECRET_KEY`` when it is not set."""
    if settings.AUDIT_CHECKPOINT_KEY:
        return settings.AUDIT_CHECKPOINT_KEY.encode()
    return hmac.new(
        settings.SECRET_KEY.encode(), b"airlock.audit.checkpoint.v1", hashlib.sha256
    ).digest()


def key_id(key: bytes | None = None) -> str:
    """A short public name of the key, so that a rotated key can be told apart."""
    return hashlib.sha256(b"airlock-key-id:" + (key or signing_key())).hexdigest()[:12]


def sign(record: dict, key: bytes | None = None) -> str:
    """HMAC-SHA256 over the canonical JSON of ``record`` without its ``signature``."""
    body = {k: v for k, v in record.items() if k != "signature"}
    return hmac.new(key or signing_key(), canonical_json(body).encode(), hashlib.sha256).hexdigest()


def verification_keys() -> list[bytes]:
    """The current key and any retired ones (``AUDIT_CHECKPOINT_PREVIOUS_KEYS``), so that
    lines signed before a key rotation still verify."""
    return [signing_key(), *(k.encode() for k in settings.AUDIT_CHECKPOINT_PREVIOUS_KEYS)]


def signature_ok(record: dict, key: bytes | None = None) -> bool:
    """With ``key``, that key only; otherwise the key whose id the record names."""
    given = record.get("signature")
    if not isinstance(given, str):
        return False
    if key is None:
        candidates = [k for k in verification_keys() if key_id(k) == record.get("key_id")]
        key = candidates[0] if candidates else signing_key()
    return hmac.compare_digest(given, sign(record, key))


def checkpoint_path() -> Path:
    return Path(settings.AUDIT_CHECKPOINT_DIR) / CHECKPOINT_FILE_NAME


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
    """The signed lines of a checkpoint file and the first problem with the file itself."""

    path: Path
    records: list[dict]
    problem: str = ""

    @property
    def latest(self) -> dict | None:
        return self.records[-1] if self.records else None

    def expectations(self, only_latest: bool = False) -> Expectations:
        """What the table must hold according to the signed lines."""
        records = self.records[-1:] if only_latest else self.records
        start = len(self.records) - len(records) + 1
        claims: Expectations = {}
        for number, record in enumerate(records, start=start):
            key = (record["partition"], record["seq"])
            claims.setdefault(key, []).append((record["hash"], f"signed checkpoint line {number}"))
        return claims


def read_checkpoint_file(path: Path | None = None, key: bytes | None = None) -> CheckpointFile:
    """Read and check every line: format, signature, the link to the line before, and
    that no two lines disagree about one event."""
    path = path or checkpoint_path()
    result = CheckpointFile(path, [])
    if not path.exists():
        return result
    previous = ""
    seen: dict[tuple[str, int], tuple[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip("\n")
            problem = _line_problem(line, previous, key, seen, number)
            if problem:
                result.problem = f"{path.name} line {number}: {problem}"
                return result
            result.records.append(json.loads(line))
            previous = line
    return result


def _line_problem(
    line: str,
    previous: str,
    key: bytes | None,
    seen: dict[tuple[str, int], tuple[str, int]],
    number: int,
) -> str:
    try:
        record: Any = json.loads(line)
    except ValueError:
        return "not JSON"
    if not (
        isinstance(record, dict)
        and isinstance(record.get("partition"), str)
        and type(record.get("seq")) is int
        and isinstance(record.get("hash"), str)
    ):
        return "not a checkpoint record"
    if not signature_ok(record, key):
        return "signature does not match (forged, altered, or signed with another key)"
    expected_prev = sha256_hex(previous) if previous else ""
    if record.get("prev_line_sha256") != expected_prev:
        return "does not follow the line before it (a line was removed or reordered)"
    claim = (record["partition"], record["seq"])
    earlier = seen.get(claim)
    if earlier and earlier[0] != record["hash"]:
        return f"disagrees with line {earlier[1]} about {claim[0]}#{claim[1]}"
    seen[claim] = (record["hash"], number)
    return ""


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
    if not isinstance(record, dict) or not signature_ok(record):
        return record if isinstance(
            record, dict
        ) else None, "the newest checkpoint's signature does not match"
    return record, ""
