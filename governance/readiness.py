"""Promotion readiness: does an agent meet its tier's exit criteria over the window?

Read-only (a selector). The criteria are the current tier's ``exit_criteria``::

    {"window_days": 14, "min_sample": 50, "max_rejection_rate": 0.2,
     "max_failure_rate": 0.05, "min_shadow_agreement": 0.9}

measured on the agent's actions created in the last ``window_days``:

- sample: actions whose outcome is settled (everything but ``pending``);
- rejection rate: rejected / actions a human decided (approved or rejected);
- execution-failure rate: failed / executions the agent reported;
- shadow agreement: "would approve" labels / all labels reviewers gave the window's
  shadow actions (each label is one human judgement of what the agent wanted to do);
- critical violations, which must be none: forbidden-tool attempts, critical-risk
  actions that were denied or rejected, and kill switches engaged on the agent (drills
  aside).

Beside the checklist (not a criterion): the low-confidence escalations of the window —
calls a rule would have let run but held for a person because the agent's confidence was
below the rule's minimum (``low_confidence``) — and how people decided them. Many of them
approved says the minimum may be too high; many rejected, that the agent is right to be
unsure.

A rate with nothing to measure (no human decisions, no reports) cannot be exceeded; the
minimum sample is what guards against too little evidence. Promotion itself is always a
human change request — this only informs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from approvals.models import Action
from governance.models import ShadowLabel
from rollout.models import Agent, KillSwitch, Tier
from rollout.policy import LOW_CONFIDENCE

# The gate codes of actions held for a human. Not ``standing_approval``: a call people's
# standing approval covered was not decided by anyone on its own — the standing approval
# counts once, as the human decision of the card that created it.
HUMAN_GATE_CODES = (
    "requires_approval",
    "tier_requires_approval",
    "risk_above_auto_limit",
    "low_confidence",
)
# Statuses an action reaches only after an approval (or an allow) — later steps included.
APPROVED_STATUSES = (
    "approved",
    "executed",
    "failed",
    "revoked",
    "rollback_requested",
    "rolled_back",
    "rollback_failed",
)
EXECUTED_STATUSES = ("executed", "rollback_requested", "rolled_back", "rollback_failed")
DEFAULT_WINDOW_DAYS = 14


@dataclass(frozen=True)
class Criterion:
    """One line of the checklist."""

    key: str
    label: str
    required: str
    measured: str
    met: bool
    detail: str = ""


@dataclass(frozen=True)
class LowConfidence:
    """Calls of the window held for a person below a rule's minimum confidence, and where
    they stand: approved (and what followed), rejected, still pending, or otherwise ended
    (expired, withdrawn, cancelled)."""

    escalated: int = 0
    approved: int = 0
    rejected: int = 0
    pending: int = 0

    @property
    def other(self) -> int:
        return self.escalated - self.approved - self.rejected - self.pending

    def as_dict(self) -> dict[str, int]:
        return {
            "escalated": self.escalated,
            "approved": self.approved,
            "rejected": self.rejected,
            "pending": self.pending,
            "other": self.other,
        }


@dataclass
class Readiness:
    agent: str
    tier: str
    next_tier: str | None
    window_days: int
    since: datetime
    until: datetime
    criteria: list[Criterion] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    ready: bool = False
    reasons: list[str] = field(default_factory=list)
    low_confidence: LowConfidence | None = None

    @property
    def summary(self) -> str:
        if self.ready:
            return f"ready for {self.next_tier}"
        return "not ready because " + "; ".join(self.reasons)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def measure(agent: Agent, since: datetime, until: datetime) -> dict[str, int]:
    """The raw counts readiness is computed from, over actions created in [since, until)."""
    window = Action.objects.filter(agent=agent, created_at__gte=since, created_at__lt=until)
    human = Q(reason_code__in=HUMAN_GATE_CODES)
    counts = window.aggregate(
        total=Count("id"),
        settled=Count("id", filter=~Q(status="pending")),
        human_approved=Count("id", filter=human & Q(status__in=APPROVED_STATUSES)),
        rejected=Count("id", filter=Q(status="rejected")),
        executed=Count("id", filter=Q(status__in=EXECUTED_STATUSES)),
        failed=Count("id", filter=Q(status="failed")),
        forbidden_attempts=Count("id", filter=Q(status="denied", reason_code="tool_forbidden")),
        critical_refused=Count("id", filter=Q(risk="critical", status__in=("denied", "rejected"))),
    )
    labels = ShadowLabel.objects.filter(
        action__agent=agent,
        action__status="shadowed",
        action__created_at__gte=since,
        action__created_at__lt=until,
    ).aggregate(labels=Count("id"), would_approve=Count("id", filter=Q(label="would_approve")))
    counts.update(labels)
    counts["kill_switches"] = KillSwitch.objects.filter(
        scope=KillSwitch.Scope.AGENT,
        target=agent.slug,
        is_drill=False,
        engaged_at__gte=since,
        engaged_at__lt=until,
    ).count()
    return counts


def low_confidence_escalations(agent: Agent, since: datetime, until: datetime) -> LowConfidence:
    """The ``low_confidence`` holds among ``agent``'s actions created in [since, until),
    by how people decided them. One query."""
    counts = Action.objects.filter(
        agent=agent, created_at__gte=since, created_at__lt=until, reason_code=LOW_CONFIDENCE
    ).aggregate(
        escalated=Count("id"),
        approved=Count("id", filter=Q(status__in=APPROVED_STATUSES)),
        rejected=Count("id", filter=Q(status="rejected")),
        pending=Count("id", filter=Q(status="pending")),
    )
    return LowConfidence(**counts)


def compute_readiness(agent: Agent, now: datetime | None = None) -> Readiness:
    """The checklist for promoting ``agent`` out of its current tier."""
    now = now or timezone.now()
    tier = agent.tier
    next_tier = Tier.objects.filter(rank__gt=tier.rank).order_by("rank").first()
    criteria_config = tier.exit_criteria or {}
    window_days = int(criteria_config.get("window_days") or DEFAULT_WINDOW_DAYS)
    since = now - timedelta(days=window_days)
    result = Readiness(
        agent=agent.slug,
        tier=tier.name,
        next_tier=next_tier.name if next_tier else None,
        window_days=window_days,
        since=since,
        until=now,
    )
    result.low_confidence = low_confidence_escalations(agent, since, now)
    if next_tier is None:
        result.reasons = [f"{tier.name} is the top of the ladder"]
        return result
    if not criteria_config:
        result.reasons = [f"tier {tier.name} defines no exit criteria"]
        return result
    counts = measure(agent, since, now)
    result.counts = counts
    criteria: list[Criterion] = []

    min_sample = int(criteria_config.get("min_sample") or 0)
    criteria.append(
        Criterion(
            "min_sample",
            "Decided actions in the window",
            f"≥ {min_sample}",
            str(counts["settled"]),
            counts["settled"] >= min_sample,
            f"{counts['settled']} of {counts['total']} actions are settled",
        )
    )

    if "max_rejection_rate" in criteria_config:
        limit = float(criteria_config["max_rejection_rate"])
        decided_by_humans = counts["human_approved"] + counts["rejected"]
        rate = _rate(counts["rejected"], decided_by_humans)
        criteria.append(
            Criterion(
                "max_rejection_rate",
                "Rejection rate",
                f"≤ {_pct(limit)}",
                _pct(rate),
                rate is None or rate <= limit,
                f"{counts['rejected']} rejected of {decided_by_humans} decided by people",
            )
        )

    if "max_failure_rate" in criteria_config:
        limit = float(criteria_config["max_failure_rate"])
        reported = counts["executed"] + counts["failed"]
        rate = _rate(counts["failed"], reported)
        criteria.append(
            Criterion(
                "max_failure_rate",
                "Execution-failure rate",
                f"≤ {_pct(limit)}",
                _pct(rate),
                rate is None or rate <= limit,
                f"{counts['failed']} failed of {reported} reported executions",
            )
        )

    minimum = float(criteria_config.get("min_shadow_agreement") or 0)
    if minimum > 0:
        agreement = _rate(counts["would_approve"], counts["labels"])
        criteria.append(
            Criterion(
                "min_shadow_agreement",
                "Shadow agreement with reviewers",
                f"≥ {_pct(minimum)}",
                _pct(agreement),
                agreement is not None and agreement >= minimum,
                f"{counts['would_approve']} 'would approve' of {counts['labels']} labels",
            )
        )

    violations = counts["forbidden_attempts"] + counts["critical_refused"] + counts["kill_switches"]
    criteria.append(
        Criterion(
            "no_critical_violations",
            "Critical violations",
            "none",
            str(violations),
            violations == 0,
            f"{counts['forbidden_attempts']} forbidden-tool attempts, "
            f"{counts['critical_refused']} critical actions denied or rejected, "
            f"{counts['kill_switches']} kill switches",
        )
    )
    result.criteria = criteria
    result.ready = all(c.met for c in criteria)
    result.reasons = [
        f"{c.label.lower()} is {c.measured}, needs {c.required}" for c in criteria if not c.met
    ]
    return result
