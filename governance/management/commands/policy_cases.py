"""``manage.py policy_cases``: replay kept regression cases (``governance.cases``) against
each agent's current policy, or against a change request's proposal, print one line per
case and exit 1 when any case would not be answered as people expected — so a team's CI
can run it before approving a change."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.cases import CaseReport, replay_change, replay_current
from governance.models import ChangeRequest, RegressionCase
from rollout.models import Agent

USAGE_ERROR = 2


class Command(BaseCommand):
    help = (
        "Replay kept regression cases against each agent's current policy (or a change "
        "request's proposal with --change-request) and list their answers. Exits 1 when a "
        "case would not be answered as people expected, 2 on bad arguments."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--agent", metavar="SLUG", help="only this agent's cases")
        parser.add_argument(
            "--change-request",
            type=int,
            metavar="ID",
            help="replay against this open change request's proposal (its agent's cases)",
        )

    def handle(self, *args: Any, agent: str | None, change_request: int | None, **options) -> None:
        reports = self._reports(agent, change_request)
        proposal = change_request is not None
        header = ["agent", "case", "tool", "expected", "now"]
        if proposal:
            header += [f"with #{change_request}", "changes"]
        lines = [header]
        differing = checked = 0
        for slug, report in reports:
            checked += report.checked
            differing += len(report.differing)
            for row in report.rows:
                line = [slug, f"#{row.case.pk}", row.case.tool, row.expected, row.now]
                if proposal:
                    line += [row.proposed or "", "yes" if row.changed else "no"]
                line.append("NOT AS EXPECTED" if row.differs else "ok")
                lines.append(line)
        header.append("verdict")
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        for line in lines:
            self.stdout.write(
                "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip()
            )
        self.stdout.write(
            f"{checked} case{'s' if checked != 1 else ''} checked, {differing} not as expected."
        )
        if differing:
            raise CommandError(
                f"{differing} kept case{'s' if differing != 1 else ''} would not be answered "
                "as people expected.",
                returncode=1,
            )

    def _reports(self, slug: str | None, change_id: int | None) -> list[tuple[str, CaseReport]]:
        if change_id is not None:
            change = ChangeRequest.objects.select_related("agent").filter(pk=change_id).first()
            if change is None:
                raise CommandError(f"no change request #{change_id}", returncode=USAGE_ERROR)
            if not change.is_open:
                raise CommandError(
                    f"change request #{change_id} is {change.status}: only an open one has a "
                    "proposal to replay",
                    returncode=USAGE_ERROR,
                )
            if slug is not None and slug != change.agent.slug:
                raise CommandError(
                    f"change request #{change_id} is of {change.agent.slug}, not {slug}",
                    returncode=USAGE_ERROR,
                )
            return [(change.agent.slug, replay_change(change.agent, change.after))]
        if slug is not None:
            agent = Agent.objects.filter(slug=slug).first()
            if agent is None:
                raise CommandError(f"no agent {slug!r}", returncode=USAGE_ERROR)
            return [(agent.slug, replay_current(agent))]
        with_cases = RegressionCase.objects.values_list("agent", flat=True).distinct()
        agents = Agent.objects.filter(pk__in=with_cases).order_by("slug")
        return [(agent.slug, replay_current(agent)) for agent in agents]
