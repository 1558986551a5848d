from django.core.management.base import BaseCommand, CommandError

from audit.chain import Actor
from rollout.actions import issue_agent_token
from rollout.models import Agent


class Command(BaseCommand):
    help = "Issue a bearer token for an agent and print only the token."

    def add_arguments(self, parser) -> None:
        parser.add_argument("agent_slug")
        parser.add_argument("--name", default="cli")

    def handle(self, *args, agent_slug: str, name: str, **options) -> None:
        agent = Agent.objects.filter(slug=agent_slug).first()
        if agent is None:
            raise CommandError(f"no agent {agent_slug!r}")
        self.stdout.write(issue_agent_token(agent=agent, actor=Actor.system("cli"), name=name))
