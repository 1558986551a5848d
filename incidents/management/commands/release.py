from django.core.management.base import BaseCommand, CommandError

from audit.chain import Actor
from incidents.actions import KillSwitchError, release_kill_switch
from rollout.models import KillSwitch


class Command(BaseCommand):
    help = "Release an engaged kill switch: release SWITCH_ID --reason …"

    def add_arguments(self, parser) -> None:
        parser.add_argument("switch_id", type=int)
        parser.add_argument("--reason", required=True)
        parser.add_argument("--as", dest="operator", default="")

    def handle(self, *args, switch_id: int, reason: str, operator: str, **options) -> None:
        switch = KillSwitch.objects.filter(pk=switch_id).first()
        if switch is None:
            raise CommandError(f"no kill switch {switch_id}")
        if switch.trip:
            self.stdout.write(f"this switch was tripped by a circuit breaker: {switch.trip}")
        actor = Actor.system(f"cli:{operator}" if operator else "cli")
        try:
            release_kill_switch(switch_id=switch_id, reason=reason, actor=actor)
        except KillSwitchError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(f"released kill switch {switch_id}")
