import json

from django.core.management.base import BaseCommand, CommandError

from audit.chain import Actor
from rollout.actions import issue_agent_token
from rollout.environments import UnknownEnvironment, known_environment
from rollout.models import Agent


class Command(BaseCommand):
    help = (
        "Issue a bearer token for an agent and print only the token; with several agents "
        "and --json, print a JSON object of agent slug to token (the demo agent reads one)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("agent_slugs", nargs="+", metavar="agent_slug")
        parser.add_argument("--name", default="cli")
        parser.add_argument(
            "--environment",
            default="",
            help="bind the token to this environment (one of AIRLOCK_ENVIRONMENTS)",
        )
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="print {slug: token} as JSON"
        )

    def handle(
        self,
        *args,
        agent_slugs: list[str],
        name: str,
        environment: str,
        as_json: bool,
        **options,
    ) -> None:
        if len(agent_slugs) > 1 and not as_json:
            raise CommandError("several agents need --json (one token per agent)")
        try:
            environment = known_environment(environment)
        except UnknownEnvironment as exc:
            raise CommandError(str(exc)) from exc
        agents = {agent.slug: agent for agent in Agent.objects.filter(slug__in=agent_slugs)}
        missing = [slug for slug in agent_slugs if slug not in agents]
        if missing:
            raise CommandError(f"no agent {', '.join(map(repr, missing))}")
        # Every agent exists before any token is issued: no half-issued set on a typo.
        tokens = {
            slug: issue_agent_token(
                agent=agents[slug], actor=Actor.system("cli"), name=name, environment=environment
            )
            for slug in dict.fromkeys(agent_slugs)
        }
        if as_json:
            self.stdout.write(json.dumps(tokens, indent=2, sort_keys=True))
        else:
            self.stdout.write(tokens[agent_slugs[0]])
