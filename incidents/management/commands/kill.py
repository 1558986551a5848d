from django.core.management.base import BaseCommand, CommandError

from audit.chain import Actor
from incidents.actions import KillSwitchError, engage_kill_switch


class Command(BaseCommand):
    help = "Engage a kill switch: kill global --reason …, kill agent SLUG --reason …, kill tool NAME --reason …"

    def add_arguments(self, parser) -> None:
        parser.add_argument("scope", choices=["global", "agent", "tool"])
        parser.add_argument("target", nargs="?", default="")
        parser.add_argument("--reason", required=True)
        parser.add_argument(
            "--environment",
            default="",
            help="stop only calls and actions in this environment (default: every one)",
        )
        parser.add_argument(
            "--allow-unknown-tool",
            action="store_true",
            help="engage a tool switch even though no agent's rule names the tool",
        )
        parser.add_argument(
            "--as", dest="operator", default="", help="who is engaging it (for the audit log)"
        )

    def handle(self, *args, scope: str, target: str, reason: str, operator: str, **options) -> None:
        allow_unknown_tool = bool(options.get("allow_unknown_tool"))
        actor = Actor.system(f"cli:{operator}" if operator else "cli")
        try:
            switch = engage_kill_switch(
                scope=scope,
                target=target,
                reason=reason,
                actor=actor,
                allow_unknown_tool=allow_unknown_tool,
                environment=options.get("environment") or "",
            )
        except KillSwitchError as exc:
            raise CommandError(exc.detail) from exc
        stopped = getattr(switch, "stopped_counts", {})
        self.stdout.write(
            f"engaged kill switch {switch.pk} ({switch}): "
            f"{stopped.get('cancelled', 0)} pending cancelled, {stopped.get('revoked', 0)} grants revoked"
        )
