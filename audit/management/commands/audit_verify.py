"""``manage.py audit_verify``: verify the chain (and the signed checkpoints) in the database,
or — with ``--file`` — an export, without the database."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.db.models import Max

from audit.export import verify_export_file
from audit.installation import installation_id
from audit.models import AuditEvent, AuditVerification
from audit.progress import TerminalProgress
from audit.verification import run_verification


class Command(BaseCommand):
    help = (
        "Verify the audit hash chain against the signed checkpoints; exit 1 naming the first "
        "broken event. With --file, verify an export (JSONL or CSV) offline instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--file", type=Path, help="An export to verify without the database.")
        parser.add_argument(
            "--checkpoint-file",
            type=Path,
            help="Compare with this checkpoint file instead of this installation's own "
            "(say, one written before installation ids, or moved from elsewhere).",
        )
        parser.add_argument(
            "--incremental",
            action="store_true",
            help="Continue from the last good verification instead of walking everything.",
        )
        parser.add_argument(
            "--workers",
            type=int,
            help="Processes for a full walk (default AUDIT_VERIFY_WORKERS, else the cores up to 4).",
        )
        parser.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Show progress and an ETA on stderr (default: when stderr is a terminal).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        show = options["progress"]
        if show is None:
            show = sys.stderr.isatty()
        if options["file"]:
            self._verify_file(options["file"], show)
            return
        kind = AuditVerification.Kind.INCREMENTAL if options["incremental"] else None
        kind = kind or AuditVerification.Kind.FULL
        total = AuditEvent.objects.aggregate(n=Max("id"))["n"] if kind == "full" else None
        progress = TerminalProgress(sys.stderr, "verifying", total=total, enabled=show)
        try:
            run = run_verification(
                kind=kind,
                triggered_by="manage.py audit_verify",
                progress=lambda count, _last_id: progress.update(count),
                workers=options["workers"],
                checkpoint_file=options["checkpoint_file"],
            )
        except KeyboardInterrupt:
            progress.finish()
            raise CommandError(
                f"interrupted after {int(progress.done)} events; no break found in them "
                "(nothing was recorded)",
                returncode=130,
            ) from None
        progress.finish()
        checkpoints = run.checkpoints
        if run.ok:
            extra = (
                f"; {run.checkpoint_lines} signed checkpoint(s) compared"
                if run.checkpoint_lines
                else ""
            )
            self.stdout.write(f"chain intact: {run.events_checked} events ({run.kind}){extra}")
            for note in checkpoints.notes:
                self.stdout.write(f"note: {note}")
            return
        if checkpoints.other_installation:
            # Nothing is known to be broken: the file is not this database's to compare.
            raise CommandError(f"cannot verify: {run.problem}", returncode=2)
        if run.first_broken_id is None:
            raise CommandError(f"chain broken: {run.problem}", returncode=1)
        raise CommandError(
            f"chain broken at event {run.first_broken_id}: {run.problem}", returncode=1
        )

    def _verify_file(self, path: Path, show: bool) -> None:
        if not path.exists():
            raise CommandError(f"{path}: no such file", returncode=2)
        progress = TerminalProgress(
            sys.stderr, f"verifying {path.name}", total=path.stat().st_size, unit="B", enabled=show
        )
        try:
            result = verify_export_file(
                path, progress=progress.update, installation=_this_installation()
            )
        except KeyboardInterrupt:
            progress.finish()
            raise CommandError(
                "interrupted; the file was not fully verified", returncode=130
            ) from None
        progress.finish()
        if result.signature == "other-installation":
            raise CommandError(f"cannot verify the signature: {result.problem}", returncode=2)
        if not result.ok:
            where = f"line {result.line}" if result.line else "the file"
            if result.event_id is not None:
                where += f" (event {result.event_id})"
            raise CommandError(f"export broken at {where}: {result.problem}", returncode=1)
        head = result.chain_head or {}
        self.stdout.write(
            f"export intact: {result.events} events through #{head.get('through_id')}; "
            f"chain head signature {result.signature}"
        )
        for note in result.notes:
            self.stdout.write(f"note: {note}")


def _this_installation() -> str | None:
    """This database's installation id, or None when there is no database to ask (an
    export is verified without one)."""
    try:
        return installation_id()
    except DatabaseError:
        return None
