"""Streaming export of the audit log (JSONL or CSV), and verifying an export offline.

An export is a consistent cut of the log: the head of every partition is read first, and
only events at or before those heads are written, however many are appended meanwhile.
Events are read in id order, a batch at a time, and written as they come, so a million
events never sit in memory. The last line (or CSV row) is the **chain head** the export
covers: how many events it holds and a SHA-256 over their hashes in order, the last
exported event of each partition, every partition's head at the cut, the filters, the
installation that wrote it (``audit.installation``), all signed with the checkpoint key
(HMAC-SHA256).

``verify_export_file`` checks such a file without the database: each event's hash against
its content, the links between consecutive events of a partition, the order, the count and
digest in the chain head (a removed, added or reordered line changes them) and, when the key
is at hand, the head's signature (which nobody without the key can recompute).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from asgiref.sync import sync_to_async
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from audit.canonical import canonical_json
from audit.chain import EVENT_COLUMNS, row_digest, timestamp_text
from audit.checkpoints import key_id, other_installation_message, sign, signed_by
from audit.installation import installation_id
from audit.models import AuditChainHead, AuditEvent
from audit.search import AuditFilters, AuditScope, events_for
from audit.walker import use_one_snapshot

FORMATS = ("jsonl", "csv")
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
CHAIN_HEAD = "chain_head"
CSV_COLUMNS = ("record", *EVENT_COLUMNS)
EXPORT_FORMAT_VERSION = 1
CHUNK_BYTES = 64 * 1024
# Spreadsheets run cells starting with these as formulas; such cells get a leading "'"
# (and so do cells that start with "'"), which the verifier takes off again.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


# --- the cut ------------------------------------------------------------------------------


@dataclass
class ExportCut:
    """The partitions' heads when the export began; nothing after them is exported."""

    through_id: int
    heads: dict[str, tuple[int, str]]
    taken_at: datetime

    def covers(self, partition: str, chain_seq: int) -> bool:
        head = self.heads.get(partition)
        return head is not None and chain_seq <= head[0]


def take_cut(scope: AuditScope) -> ExportCut:
    # Heads first, then the highest id: every event at or before a head was committed with
    # it, so its id is at most the highest id read afterwards.
    heads = {
        h.partition: (h.last_seq, h.last_hash)
        for h in AuditChainHead.objects.all()
        if h.last_seq and scope.allows_partition(h.partition)
    }
    through_id = AuditEvent.objects.aggregate(n=Max("id"))["n"] or 0
    return ExportCut(through_id, heads, timezone.now())


# --- reading events -----------------------------------------------------------------------


def _selection(scope: AuditScope, filters: AuditFilters, cut: ExportCut):
    return (
        events_for(scope, filters)
        .filter(id__lte=cut.through_id)
        .order_by("id")
        .values_list(*EVENT_COLUMNS)
    )


def keyset_rows(
    scope: AuditScope, filters: AuditFilters, cut: ExportCut, batch_size: int = 2000
) -> Iterator[tuple]:
    """The selection in id order, one short query per batch. For HTTP: no transaction stays
    open while a slow client reads (DESIGN: never hold one open while waiting)."""
    selection = _selection(scope, filters, cut)
    last_id = 0
    while True:
        batch = list(selection.filter(id__gt=last_id)[:batch_size])
        if not batch:
            return
        for row in batch:
            if cut.covers(row[1], row[2]):
                yield row
        last_id = batch[-1][0]


def cursor_rows(
    scope: AuditScope, filters: AuditFilters, cut: ExportCut, batch_size: int = 5000
) -> Iterator[tuple]:
    """The selection in id order through one server-side cursor (for the command line).
    Must run inside a transaction."""
    for row in _selection(scope, filters, cut).iterator(chunk_size=batch_size):
        if cut.covers(row[1], row[2]):
            yield row


# --- writing ------------------------------------------------------------------------------


def _csv_cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def _csv_uncell(value: str) -> str:
    return value[1:] if value.startswith("'") else value


class ExportWriter:
    """Turns event rows into the lines of one export and, at the end, its chain head."""

    def __init__(self, fmt: str, cut: ExportCut, filters: AuditFilters, scope: AuditScope) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}")
        self.fmt = fmt
        self.cut = cut
        self.filters = filters
        self.scope = scope
        self.installation = installation_id()
        self.count = 0
        self.first_id: int | None = None
        self.last_id: int | None = None
        self.exported_heads: dict[str, list] = {}
        self._digest = hashlib.sha256()
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\n")

    def header(self) -> str:
        if self.fmt == "csv":
            return self._csv_line(CSV_COLUMNS)
        return ""

    def _csv_line(self, cells: Iterable[str]) -> str:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._csv.writerow(cells)
        return self._buffer.getvalue()

    def event_line(self, row: tuple) -> str:
        event = dict(zip(EVENT_COLUMNS, row, strict=True))
        event["created_at"] = timestamp_text(event["created_at"])
        self.count += 1
        if self.first_id is None:
            self.first_id = event["id"]
        self.last_id = event["id"]
        self.exported_heads[event["partition"]] = [event["chain_seq"], event["hash"]]
        self._digest.update(event["hash"].encode() + b"\n")
        if self.fmt == "jsonl":
            # ASCII only: no raw U+2028/U+2029, which many line splitters treat as newlines.
            return json.dumps(event, separators=(",", ":")) + "\n"
        cells = ["event"] + [
            canonical_json(event[c]) if c == "data" else str(event[c]) for c in EVENT_COLUMNS
        ]
        return self._csv_line(_csv_cell(cell) for cell in cells)

    def chain_head(self) -> dict:
        head = {
            "type": CHAIN_HEAD,
            "format": EXPORT_FORMAT_VERSION,
            "exported_at": timezone.now().isoformat(),
            "filters": self.filters.params(),
            "scope": "all" if self.scope.everything else sorted(self.scope.agent_slugs),
            "contiguous": self.filters.contiguous,
            "through_id": self.cut.through_id,
            "count": self.count,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "events_sha256": self._digest.hexdigest(),
            "exported_heads": self.exported_heads,
            "chain_heads": {p: [seq, h] for p, (seq, h) in sorted(self.cut.heads.items())},
            "installation": self.installation,
            "key_id": key_id(),
        }
        head["signature"] = sign(head)
        return head

    def trailer(self) -> str:
        head = self.chain_head()
        if self.fmt == "jsonl":
            return json.dumps(head, separators=(",", ":")) + "\n"
        cells = [CHAIN_HEAD] + [""] * len(EVENT_COLUMNS)
        cells[CSV_COLUMNS.index("data")] = canonical_json(head)
        return self._csv_line(cells)


def export_chunks(
    writer: ExportWriter,
    rows: Iterable[tuple],
    on_event: Callable[[int, int], None] | None = None,
) -> Iterator[str]:
    """The export as text chunks of about ``CHUNK_BYTES``; the chain head comes last, and
    only once every event was written (an interrupted export has none)."""
    parts = [writer.header()]
    size = len(parts[0])
    for row in rows:
        line = writer.event_line(row)
        parts.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield "".join(parts)
            parts, size = [], 0
            if on_event is not None:
                on_event(writer.count, writer.last_id or 0)
    parts.append(writer.trailer())
    yield "".join(parts)


def stream_export(
    scope: AuditScope, filters: AuditFilters, fmt: str
) -> tuple[ExportWriter, Iterator[bytes]]:
    """The export for HTTP: short keyset queries, UTF-8 chunks."""
    cut = take_cut(scope)
    writer = ExportWriter(fmt, cut, filters, scope)
    chunks = (chunk.encode() for chunk in export_chunks(writer, keyset_rows(scope, filters, cut)))
    return writer, chunks


def export_to(
    out: IO[str],
    scope: AuditScope,
    filters: AuditFilters,
    fmt: str,
    on_event: Callable[[int, int], None] | None = None,
) -> ExportWriter:
    """The export for the command line: one snapshot, one server-side cursor."""
    installation_id()  # made (if need be) and committed before the snapshot
    with transaction.atomic():
        use_one_snapshot()
        cut = take_cut(scope)
        writer = ExportWriter(fmt, cut, filters, scope)
        for chunk in export_chunks(writer, cursor_rows(scope, filters, cut), on_event):
            out.write(chunk)
    return writer


class AsyncChunks:
    """A synchronous chunk iterator served to an ASGI server one chunk at a time.

    Django's ``StreamingHttpResponse`` would otherwise read a synchronous iterator to the
    end into a list before sending anything under ASGI — a million events in memory. Each
    step runs in the request's thread-sensitive executor (its database connection)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        step = sync_to_async(next, thread_sensitive=True)
        done = object()
        while (chunk := await step(self._chunks, done)) is not done:
            yield chunk

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


# --- verifying a file ---------------------------------------------------------------------


@dataclass
class FileVerifyResult:
    ok: bool
    events: int
    problem: str = ""
    line: int | None = None
    event_id: int | None = None
    signature: str = "unchecked"  # valid | invalid | unchecked (not asked for)
    chain_head: dict | None = None
    notes: list[str] = field(default_factory=list)


class _Broken(Exception):
    def __init__(self, line: int, problem: str, event_id: int | None = None) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem
        self.event_id = event_id


def _jsonl_records(lines: Iterable[bytes]) -> Iterator[tuple[int, dict]]:
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            raise _Broken(number, "not a JSON line") from None
        if not isinstance(record, dict):
            raise _Broken(number, "not a JSON object")
        yield number, record


def _csv_records(lines: Iterable[bytes]) -> Iterator[tuple[int, dict]]:
    reader = csv.reader(raw.decode("utf-8") for raw in lines)
    header = next(reader, None)
    if header is None or tuple(header) != CSV_COLUMNS:
        raise _Broken(1, "not an Airlock audit CSV (unexpected header)")
    for cells in reader:
        number = reader.line_num
        if len(cells) != len(CSV_COLUMNS):
            raise _Broken(number, f"expected {len(CSV_COLUMNS)} cells, found {len(cells)}")
        values = dict(zip(CSV_COLUMNS, (_csv_uncell(c) for c in cells), strict=True))
        try:
            data = json.loads(values["data"])
        except ValueError:
            raise _Broken(number, "the data cell is not JSON") from None
        if values["record"] == CHAIN_HEAD:
            yield number, data if isinstance(data, dict) else {}
            continue
        if values["record"] != "event":
            raise _Broken(number, f"unknown record type {values['record']!r}")
        try:
            values["id"] = int(values["id"])
            values["chain_seq"] = int(values["chain_seq"])
        except ValueError:
            raise _Broken(number, "id and chain_seq must be integers") from None
        values["data"] = data
        del values["record"]
        yield number, values


def verify_export_records(
    records: Iterable[tuple[int, dict]],
    check_signature: bool = True,
    installation: str | None = None,
) -> FileVerifyResult:
    """Check the events and the chain head; ``installation`` (this database's, when known)
    tells an export of another installation, signed with its own key, from an altered one."""
    count = 0
    digest = hashlib.sha256()
    last_id = 0
    heads: dict[str, tuple[int, str]] = {}
    head: dict | None = None
    head_line = 0
    notes: list[str] = []
    gaps = 0
    try:
        for number, record in records:
            if head is not None:
                raise _Broken(number, "a line follows the chain head")
            if record.get("type") == CHAIN_HEAD:
                head, head_line = record, number
                continue
            count += 1
            gaps += _check_event(number, record, last_id, heads)
            last_id = record["id"]
            heads[record["partition"]] = (record["chain_seq"], record["hash"])
            digest.update(record["hash"].encode() + b"\n")
        if head is None:
            raise _Broken(head_line or count, "no chain head at the end: the export is incomplete")
        _check_head(head, head_line, count, digest.hexdigest(), heads, gaps)
    except _Broken as broken:
        return FileVerifyResult(False, count, broken.problem, broken.line, broken.event_id)
    if gaps:
        notes.append(f"{gaps} gap(s) between exported events of a partition (a filtered export)")
    theirs = head.get("installation")
    other = theirs is not None and installation is not None and theirs != installation
    if other:
        notes.append(f"written by installation {theirs}; this database is {installation}")
    signature = "unchecked"
    if check_signature:
        # With the key named by the head's key_id (current or retired, from the settings).
        signer = signed_by(head)
        signature = "valid" if signer else ("other-installation" if other else "invalid")
        if signer == "previous":
            notes.append(
                "the chain head was signed with a previous key "
                "(SECRET_KEY_FALLBACKS or AUDIT_CHECKPOINT_PREVIOUS_KEYS)"
            )
    result = FileVerifyResult(True, count, signature=signature, chain_head=head, notes=notes)
    if signature == "invalid":
        result.ok = False
        result.line = head_line
        result.problem = "the chain head's signature does not match (altered, or another key)"
    elif signature == "other-installation":
        result.ok = False
        result.line = head_line
        result.problem = (
            "the chain head is not signed with a key of this server: "
            + other_installation_message(theirs, installation or "?", "this export")
        )
    return result


_EVENT_FIELDS = {
    "id": int,
    "partition": str,
    "chain_seq": int,
    "created_at": str,
    "prev_hash": str,
    "hash": str,
}


def _check_event(number: int, event: dict, last_id: int, heads: dict[str, tuple[int, str]]) -> int:
    """Check one event line; returns 1 when it follows a gap in its partition."""
    for name, kind in _EVENT_FIELDS.items():
        if type(event.get(name)) is not kind:
            raise _Broken(number, f"event field {name!r} is missing or malformed")
    event_id = event["id"]
    if event_id <= last_id:
        raise _Broken(number, f"event {event_id} is out of order (after {last_id})", event_id)
    try:
        digest = row_digest(*(event[c] for c in EVENT_COLUMNS[1:-2]), event["prev_hash"])
    except (KeyError, TypeError, ValueError):
        raise _Broken(number, "event fields are missing or malformed", event_id) from None
    if digest != event["hash"]:
        raise _Broken(number, f"event {event_id}: hash does not match its content", event_id)
    partition, seq = event["partition"], event["chain_seq"]
    previous = heads.get(partition)
    if previous is None:
        if seq == 1 and event["prev_hash"] != "":
            raise _Broken(number, f"event {event_id} starts {partition} but links back", event_id)
        return 0
    last_seq, last_hash = previous
    if seq <= last_seq:
        raise _Broken(number, f"event {event_id}: {partition}#{seq} repeats or goes back", event_id)
    if seq == last_seq + 1:
        if event["prev_hash"] != last_hash:
            raise _Broken(
                number, f"event {event_id} does not link to the event before it", event_id
            )
        return 0
    return 1


def _check_head(
    head: dict,
    line: int,
    count: int,
    digest: str,
    heads: dict[str, tuple[int, str]],
    gaps: int,
) -> None:
    if head.get("count") != count:
        raise _Broken(
            line,
            f"the chain head lists {head.get('count')} events but the file holds {count}: "
            "events were removed or added",
        )
    if head.get("events_sha256") != digest:
        raise _Broken(
            line,
            "the events' digest differs from the chain head: events were reordered or replaced",
        )
    exported = {
        p: tuple(v) if isinstance(v, list) else v
        for p, v in (head.get("exported_heads") or {}).items()
    }
    if exported != heads:
        raise _Broken(line, "the last event of each partition differs from the chain head")
    if head.get("contiguous") and gaps:
        raise _Broken(line, "events are missing from a partition in an unfiltered export")
    for partition, (seq, last_hash) in heads.items():
        chain_head = (head.get("chain_heads") or {}).get(partition)
        if chain_head and chain_head[0] == seq and chain_head[1] != last_hash:
            raise _Broken(line, f"the last event of {partition} is not the chain head it claims")


def _lines_with_progress(
    handle: IO[bytes], progress: Callable[[int], None] | None
) -> Iterator[bytes]:
    done = 0
    next_report = 1 << 20
    for raw in handle:
        done += len(raw)
        if progress is not None and done >= next_report:
            progress(done)
            next_report = done + (4 << 20)
        yield raw


def verify_export_file(
    path: Path,
    check_signature: bool = True,
    progress: Callable[[int], None] | None = None,
    installation: str | None = None,
) -> FileVerifyResult:
    """Verify an export (JSONL or CSV, told apart by its first byte) without the database."""
    with path.open("rb") as handle:
        first = handle.read(1)
        handle.seek(0)
        lines = _lines_with_progress(handle, progress)
        records = _jsonl_records(lines) if first == b"{" else _csv_records(lines)
        return verify_export_records(records, check_signature, installation)
