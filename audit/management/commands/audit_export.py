"""``manage.py audit_export``: stream a filtered range of the audit log as JSONL or CSV,
ending with the chain head it covers (verify it with ``audit_verify --file``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Max, Min

from audit.export import FORMATS, export_to
from audit.models import AuditEvent
from audit.progress import TerminalProgress
from audit.search import AuditFilterForm, AuditScope


class Command(BaseCommand):
    help = "Export audit events (JSONL or CSV) with filters; the last line is the chain head."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=FORMATS, help="Default: from --output, else jsonl.")
        parser.add_argument(
            "--output", "-o", default="-", help="File to write (default: standard output)."
        )
        parser.add_argument("--since", help="From (inclusive), ISO date/time, UTC.")
        parser.add_argument("--until", help="Until (exclusive), ISO date/time, UTC.")
        parser.add_argument("--agent", help="Agent slug.")
        parser.add_argument("--actor", help="Actor name.")
        parser.add_argument("--verb", help="A registered verb.")
        parser.add_argument("--action", help="Events about this action id.")
        parser.add_argument("--correlation-id", dest="correlation_id")
        parser.add_argument("--text", dest="q", help="Free text in the event's data.")
        parser.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Show progress and an ETA on stderr (default: when stderr is a terminal).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        output = options["output"]
        fmt = options["format"] or ("csv" if str(output).endswith(".csv") else "jsonl")
        names = ("since", "until", "agent", "actor", "verb", "action", "correlation_id", "q")
        form = AuditFilterForm({n: options[n] for n in names if options.get(n)})
        if not form.is_valid():
            problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
            raise CommandError(f"invalid filters: {problems}", returncode=2)
        filters = form.filters()
        show = options["progress"]
        if show is None:
            show = sys.stderr.isatty()
        # Progress is the position in the id range (the filters' share of it is unknown).
        bounds = AuditEvent.objects.aggregate(first=Min("id"), last=Max("id"))
        first, last = bounds["first"] or 0, bounds["last"] or 0
        progress = TerminalProgress(
            sys.stderr, "exporting", total=last - first + 1, unit="ids", enabled=show
        )
        on_event = (lambda _count, last_id: progress.update(last_id - first + 1)) if show else None
        scope = AuditScope(everything=True)
        if output == "-":
            try:
                self.stdout.ending = ""  # chunks are written as they are
                writer = export_to(self.stdout, scope, filters, fmt, on_event)
            except KeyboardInterrupt:
                progress.finish()
                raise CommandError(
                    "interrupted: the output has no chain head", returncode=130
                ) from None
        else:
            writer = self._to_file(Path(output), scope, filters, fmt, on_event, progress)
        progress.finish()
        sys.stderr.write(
            f"exported {writer.count} events (through #{writer.cut.through_id}) as {fmt}"
            + (f" to {output}" if output != "-" else "")
            + "; the last line is the signed chain head\n"
        )

    def _to_file(self, path, scope, filters, fmt, on_event, progress):
        # Written beside the target and renamed at the end: an interrupted export never
        # leaves a file that looks complete.
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("w", encoding="utf-8", newline="") as out:
                writer = export_to(out, scope, filters, fmt, on_event)
                out.flush()
                os.fsync(out.fileno())
        except KeyboardInterrupt:
            progress.finish()
            partial.unlink(missing_ok=True)
            raise CommandError("interrupted: nothing was written", returncode=130) from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(path)
        return writer
