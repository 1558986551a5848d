from django.core.management.base import BaseCommand, CommandError

from audit.chain import Actor
from rollout.actions import rotate_webhook_secret
from rollout.models import Agent


class Command(BaseCommand):
    help = (
        "Rotate an agent's webhook secret and print only the new secret (the previous one "
        "keeps signing for WEBHOOK_SECRET_GRACE_SECONDS). Audited as the system actor 'cli'."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("agent_slug")

    def handle(self, *args, agent_slug: str, **options) -> None:
        agent = Agent.objects.filter(slug=agent_slug).first()
        if agent is None:
            raise CommandError(f"no agent {agent_slug!r}")
        self.stdout.write(rotate_webhook_secret(agent=agent, actor=Actor.system("cli")))
