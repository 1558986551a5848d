"""``manage.py audit_checkpoint``: join the partitions now and append the signed head to the
checkpoint file (what the periodic task does)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.chain import Actor
from audit.checkpoints import checkpoint_path, write_signed_checkpoint


class Command(BaseCommand):
    help = "Write a checkpoint event and its signed head to AUDIT_CHECKPOINT_DIR."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="Write one even if nothing changed."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        record = write_signed_checkpoint(
            actor=Actor.system("manage.py audit_checkpoint"), force=options["force"]
        )
        if record is None:
            self.stdout.write("nothing appended since the last checkpoint; none written")
            return
        self.stdout.write(
            f"checkpoint #{record['event_id']}: global#{record['seq']} {record['hash'][:16]}… "
            f"signed into {checkpoint_path()}"
        )
