"""Circuit breakers: per-agent thresholds over a sliding window that stop an agent (engage
its kill switch) or demote its tier by themselves.

``Agent.circuit_breaker`` holds the configuration, for example::

    {"window_seconds": 300, "max_denials": 20, "max_forbidden": 3, "max_rejections": 5,
     "max_failures": 5, "max_actions": 300, "response": "kill"}   # or "demote" + "demote_to"

Off (empty) until configured. A threshold trips when the count reaches it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from approvals import standing
from approvals.models import Action
from approvals.states import Status
from audit import verbs
from audit.chain import Actor, append_event
from incidents.actions import engage_kill_switch
from rollout.actions import record_policy_version
from rollout.models import Agent, KillSwitch, Tier
from rollout.policy import PROBE_TOOL

logger = logging.getLogger(__name__)
BREAKER_ACTOR = Actor.system("circuit-breaker")
METRICS = ("denials", "forbidden", "rejections", "failures", "actions")


@dataclass(frozen=True)
class Trip:
    metric: str
    count: int
    threshold: int


def tripped(config: dict, counts: dict[str, int]) -> list[Trip]:
    """The thresholds of ``config`` that ``counts`` reach (pure)."""
    trips = []
    for metric in METRICS:
        threshold = config.get(f"max_{metric}")
        usable = isinstance(threshold, int) and not isinstance(threshold, bool) and threshold > 0
        if usable and counts.get(metric, 0) >= threshold:
            trips.append(Trip(metric, counts[metric], threshold))
    return trips


def window_counts(agent: Agent, window_seconds: int) -> dict[str, int]:
    since = timezone.now() - timedelta(seconds=window_seconds)
    recent = Action.objects.filter(agent=agent).exclude(tool=PROBE_TOOL)
    created = recent.filter(created_at__gte=since).aggregate(
        actions=Count("id"),
        denials=Count("id", filter=Q(status=Status.DENIED) & ~Q(reason_code="kill_switch")),
        forbidden=Count("id", filter=Q(reason_code="tool_forbidden")),
    )
    updated = recent.filter(updated_at__gte=since).aggregate(
        rejections=Count("id", filter=Q(status=Status.REJECTED)),
        failures=Count("id", filter=Q(status=Status.FAILED)),
    )
    return {**created, **updated}


def check_circuit_breaker(agent_id: int) -> KillSwitch | Tier | None:
    """Trip ``agent``'s breaker when a threshold is reached: engage its kill switch (actor
    ``system:circuit-breaker``, the numbers in the switch and the audit event) or demote its
    tier. At most one breaker switch per agent is engaged at a time. Never raises: a
    breaker failure must not fail the gate call that triggered the check."""
    try:
        return _check(agent_id)
    except Exception:
        logger.exception("circuit breaker check failed for agent %s", agent_id)
        return None


def _check(agent_id: int) -> KillSwitch | Tier | None:
    with transaction.atomic():
        agent = (
            Agent.objects.select_for_update(of=("self",), no_key=True)
            .select_related("tier")
            .get(pk=agent_id)
        )
        config = agent.circuit_breaker or {}
        if not config:
            return None
        engaged = KillSwitch.objects.filter(
            scope=KillSwitch.Scope.AGENT,
            target=agent.slug,
            released_at__isnull=True,
            is_drill=False,
        ).exists()
        if engaged:
            return None
        window = int(config.get("window_seconds", 300))
        counts = window_counts(agent, window)
        trips = tripped(config, counts)
        if not trips:
            return None
        trip = {
            "window_seconds": window,
            "counts": counts,
            "tripped": [
                {"metric": t.metric, "count": t.count, "threshold": t.threshold} for t in trips
            ],
            "response": config.get("response", "kill"),
        }
        append_event(
            verb=verbs.CIRCUIT_BREAKER_TRIPPED,
            actor=BREAKER_ACTOR,
            target_type="agent",
            target_id=agent.pk,
            agent_slug=agent.slug,
            data=trip,
        )
        if config.get("response") == "demote":
            lower = Tier.objects.filter(name=config.get("demote_to", "read_only")).first()
            if lower is None or lower.rank >= agent.tier.rank:
                return None
            before = agent.tier.name
            Agent.objects.filter(pk=agent.pk).update(tier=lower)
            append_event(
                verb=verbs.AGENT_DEMOTED,
                actor=BREAKER_ACTOR,
                target_type="agent",
                target_id=agent.pk,
                agent_slug=agent.slug,
                data={"before": before, "after": lower.name, "trip": trip},
            )
            version = record_policy_version(
                agent=agent,
                actor=BREAKER_ACTOR,
                reason=f"circuit breaker demoted {before} → {lower.name}",
            )
            # A new tier is a new policy: no standing approval outlives it.
            standing.end_for_policy_change(
                agent=agent, tools=None, actor=BREAKER_ACTOR, policy_version=version.number
            )
            return lower
        summary = ", ".join(f"{t.metric} {t.count} ≥ {t.threshold}" for t in trips)
        return engage_kill_switch(
            scope=KillSwitch.Scope.AGENT,
            target=agent.slug,
            reason=f"Circuit breaker: {summary} in {window} s",
            actor=BREAKER_ACTOR,
            trip=trip,
        )
