"""``manage.py audit_retention``: redact action payloads past their retention period."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from approvals.retention import apply_retention
from audit.chain import Actor


class Command(BaseCommand):
    help = (
        "Redact action payloads (arguments, evidence, rationale, results) older than "
        "AUDIT_PAYLOAD_RETENTION_DAYS (or --days); the audit chain still verifies."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, help="Override AUDIT_PAYLOAD_RETENTION_DAYS.")
        parser.add_argument("--dry-run", action="store_true", help="Only count what is due.")

    def handle(self, *args: Any, **options: Any) -> None:
        days = (
            options["days"]
            if options["days"] is not None
            else settings.AUDIT_PAYLOAD_RETENTION_DAYS
        )
        if days <= 0:
            self.stdout.write("retention is off (0 days): nothing to do")
            return
        result = apply_retention(
            days=days, actor=Actor.system("manage.py audit_retention"), dry_run=options["dry_run"]
        )
        verb = "would redact" if options["dry_run"] else "redacted"
        self.stdout.write(
            f"{verb} the payloads of {result.actions} action(s) created before "
            f"{result.cutoff:%Y-%m-%d %H:%M} UTC"
            + (
                f" ({result.reports} report(s), {result.decisions} edit(s), "
                f"{result.webhooks} webhook body(ies); {result.batches} audited batch(es))"
                if not options["dry_run"]
                else ""
            )
        )
