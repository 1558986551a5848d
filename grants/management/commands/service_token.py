"""``manage.py service_token issue|revoke|list``: tool services' tokens for the online grant
check (``POST /api/v1/grants/verify``) and the revocation list."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.chain import Actor
from grants.models import ServiceToken
from grants.services import ServiceTokenRefused, issue_service_token, revoke_service_token


class Command(BaseCommand):
    help = "Issue (prints the token once), revoke or list tool service tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("operation", choices=["issue", "revoke", "list"])
        parser.add_argument("name", nargs="?", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        operation, name = options["operation"], options["name"]
        actor = Actor.system(f"manage.py service_token {operation}")
        try:
            if operation == "issue":
                _, token = issue_service_token(name=name, actor=actor)
                self.stdout.write(token)
            elif operation == "revoke":
                revoke_service_token(name=name, actor=actor)
                self.stdout.write(f"revoked the token of {name}")
            else:
                for record in ServiceToken.objects.filter(revoked_at__isnull=True).order_by("name"):
                    used = record.last_used_at or "never"
                    self.stdout.write(f"{record.name}  {record.prefix}…  last used {used}")
        except ServiceTokenRefused as exc:
            raise CommandError(exc.detail) from exc
