"""``manage.py grant_keys list|rotate``: the keys that sign execution grants."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.chain import Actor
from grants import keys
from grants.models import GrantKey


class Command(BaseCommand):
    help = "List the grant signing keys, or rotate: a new key signs, the old stays published."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("operation", choices=["list", "rotate"])

    def handle(self, *args: Any, **options: Any) -> None:
        if options["operation"] == "rotate":
            new = keys.rotate(actor=Actor.system("manage.py grant_keys rotate"))
            self.stdout.write(f"{new.kid} signs grants from now on")
        published = {row.kid for row in keys.published_keys()}
        for row in GrantKey.objects.all():
            if row.signing:
                state = "signing"
            elif row.kid in published:
                state = f"retired, published until {keys.published_until(row):%Y-%m-%d %H:%M:%S %Z}"
            else:
                state = "retired, no longer published"
            self.stdout.write(f"{row.kid}  created {row.created_at:%Y-%m-%d %H:%M:%S %Z}  {state}")
