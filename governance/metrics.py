"""Daily figures of agents' actions for the agent pages' charts. Read-only (selectors).

Each action is counted on the day it was created, in one of these outcome groups:
``allowed`` (the gate let it run), ``approved`` / ``rejected`` (people decided),
``pending`` (still waiting), ``expired`` (expired or cancelled while waiting),
``denied``, ``shadowed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F
from django.db.models.functions import TruncDate
from django.utils import timezone

from approvals.models import Action
from governance.backtest import recorded_outcome
from governance.readiness import APPROVED_STATUSES, EXECUTED_STATUSES, HUMAN_GATE_CODES

OUTCOME_GROUPS = ("allowed", "approved", "rejected", "pending", "expired", "denied", "shadowed")


def outcome_group(reason_code: str, status: str) -> str:
    initial = recorded_outcome(reason_code)
    if initial != "pending":
        return initial
    if status == "pending":
        return "pending"
    if status in APPROVED_STATUSES:
        return "approved"
    if status == "rejected":
        return "rejected"
    return "expired"


@dataclass
class Day:
    day: date
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOME_GROUPS, 0))
    executed: int = 0
    failed: int = 0
    decision_seconds: float | None = None  # mean time from request to a person's decision

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    @property
    def decided_by_people(self) -> int:
        return self.outcomes["approved"] + self.outcomes["rejected"]

    @property
    def approval_rate(self) -> float | None:
        whole = self.decided_by_people
        return self.outcomes["approved"] / whole if whole else None

    @property
    def rejection_rate(self) -> float | None:
        whole = self.decided_by_people
        return self.outcomes["rejected"] / whole if whole else None

    @property
    def failure_rate(self) -> float | None:
        whole = self.executed + self.failed
        return self.failed / whole if whole else None


def _days(now: datetime, days: int) -> list[date]:
    today = timezone.localdate(now)
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def daily_metrics(
    agent_ids: list[int], *, days: int = 14, now: datetime | None = None
) -> dict[int, list[Day]]:
    """For each agent, one ``Day`` per calendar day of the last ``days`` days (oldest first),
    from two grouped queries over all the agents."""
    now = now or timezone.now()
    calendar = _days(now, days)
    start = timezone.make_aware(datetime.combine(calendar[0], datetime.min.time()))
    series = {agent_id: {d: Day(d) for d in calendar} for agent_id in agent_ids}
    window = Action.objects.filter(agent_id__in=agent_ids, created_at__gte=start)
    rows = (
        window.annotate(day=TruncDate("created_at"))
        .values("agent_id", "day", "reason_code", "status")
        .annotate(n=Count("id"))
    )
    for row in rows:
        day = series[row["agent_id"]].get(row["day"])
        if day is None:
            continue
        day.outcomes[outcome_group(row["reason_code"], row["status"])] += row["n"]
        if row["status"] in EXECUTED_STATUSES:
            day.executed += row["n"]
        elif row["status"] == "failed":
            day.failed += row["n"]
    waits = (
        window.filter(
            reason_code__in=HUMAN_GATE_CODES,
            status__in=(*APPROVED_STATUSES, "rejected"),
            decided_at__isnull=False,
        )
        .annotate(day=TruncDate("created_at"))
        .values("agent_id", "day")
        .annotate(
            wait=Avg(
                ExpressionWrapper(F("decided_at") - F("created_at"), output_field=DurationField())
            )
        )
    )
    for row in waits:
        day = series[row["agent_id"]].get(row["day"])
        if day is not None and row["wait"] is not None:
            day.decision_seconds = row["wait"].total_seconds()
    return {agent_id: list(by_day.values()) for agent_id, by_day in series.items()}


def pending_counts(agent_ids: list[int]) -> dict[int, int]:
    rows = (
        Action.objects.filter(agent_id__in=agent_ids, status="pending")
        .values("agent_id")
        .annotate(n=Count("id"))
    )
    return {row["agent_id"]: row["n"] for row in rows}
