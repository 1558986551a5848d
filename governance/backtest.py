"""Backtest: "if this agent had had that policy over the last N days, which of its actions
would have run without a human?"

Replays the recorded actions (the agent's original arguments and declared blast radius)
through the pure gate ``rollout.policy.evaluate`` with a proposed snapshot. Kill switches
and rate limits are left out of the replay: they describe a moment, not the policy under
test. Read-only.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from approvals.models import Action
from rollout.models import Agent
from rollout.policy import GateRequest, confidence_of, evaluate
from rollout.policy_diff import merge_environments
from rollout.snapshots import build_snapshot

MAX_REPLAYED = 20_000
MAX_ROWS = 500

# The gate's first answer, recovered from the reason code an action keeps for life.
INITIAL_OUTCOME = {
    "allowed": "allowed",
    "auto_approved": "allowed",
    "tier_shadow": "shadowed",
    "requires_approval": "pending",
    "tier_requires_approval": "pending",
    "risk_above_auto_limit": "pending",
    "low_confidence": "pending",
    # Held for people, approved by their earlier standing approval (one human decision for
    # all its uses): in a replay it is a call that needed people.
    "standing_approval": "pending",
}


def _confidence(value: Any) -> float | None:
    """The stored ``rationale.confidence`` (read from the JSON by the query) as the gate
    weighed it."""
    return confidence_of({"confidence": value})


def recorded_outcome(reason_code: str) -> str:
    return INITIAL_OUTCOME.get(reason_code, "denied")


def snapshot_with(snapshot: dict, after: dict) -> dict:
    """A full snapshot with a governance piece (``rollout.policy_diff``) applied to it."""
    result = copy.deepcopy(snapshot)
    if "tier" in after:
        result["tier"] = copy.deepcopy(after["tier"])
    for key in ("active", "rate_limit_per_minute"):
        if key in after:
            result["agent"][key] = after[key]
    for tool, rule in (after.get("tools") or {}).items():
        if rule is None:
            result["tools"].pop(tool, None)
        else:
            result["tools"][tool] = copy.deepcopy(rule)
    if after.get("environments"):
        # Per-environment overrides as the change leaves them; each replayed call is then
        # judged by its own environment's (``rollout.policy.effective_snapshot``).
        environments = merge_environments(
            result.get("environments") or {}, copy.deepcopy(after["environments"])
        )
        result.pop("environments", None)
        if environments:
            result["environments"] = environments
    return result


@dataclass(frozen=True)
class BacktestRow:
    action_id: int
    created_at: datetime
    tool: str
    recorded_outcome: str
    recorded_status: str
    proposed_outcome: str
    proposed_reason_code: str
    risk: str

    @property
    def newly_without_human(self) -> bool:
        return self.proposed_outcome == "allowed" and self.recorded_outcome != "allowed"


@dataclass
class BacktestResult:
    days: int
    since: datetime
    until: datetime
    replayed: int = 0
    would_run_without_human: int = 0
    newly_without_human: int = 0
    changed: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    rows: list[BacktestRow] = field(default_factory=list)  # those that would have run
    truncated: bool = False


def backtest(
    agent: Agent, snapshot: dict, *, days: int = 14, now: datetime | None = None
) -> BacktestResult:
    """Replay ``agent``'s actions of the last ``days`` days through ``snapshot``. Counts
    every proposed outcome; lists (up to ``MAX_ROWS``) the actions that would have run
    without a human, oldest first."""
    now = now or timezone.now()
    since = now - timedelta(days=days)
    result = BacktestResult(days=days, since=since, until=now)
    actions = (
        Action.objects.filter(agent=agent, created_at__gte=since, created_at__lt=now)
        .order_by("created_at", "id")
        .values_list(
            "id",
            "created_at",
            "tool",
            "reason_code",
            "status",
            "original_arguments",
            "blast_radius",
            "rationale__confidence",
            "environment",
        )
    )
    for count, (
        action_id,
        created_at,
        tool,
        code,
        status,
        arguments,
        radius,
        conf,
        environment,
    ) in enumerate(actions.iterator(chunk_size=2000), start=1):
        if count > MAX_REPLAYED:
            result.truncated = True
            break
        # In the environment it was made in: that environment's override judges it.
        request = GateRequest(
            tool,
            arguments or {},
            radius or {},
            environment=environment,
            confidence=_confidence(conf),
        )
        decision = evaluate(snapshot, request)
        before = recorded_outcome(code)
        result.replayed += 1
        result.by_outcome[decision.outcome] = result.by_outcome.get(decision.outcome, 0) + 1
        if decision.outcome != before:
            result.changed += 1
        if decision.outcome != "allowed":
            continue
        row = BacktestRow(
            action_id, created_at, tool, before, status, decision.outcome, decision.reason_code,
            decision.risk,
        )  # fmt: skip
        result.would_run_without_human += 1
        if row.newly_without_human:
            result.newly_without_human += 1
        if len(result.rows) < MAX_ROWS:
            result.rows.append(row)
        else:
            result.truncated = True
    return result


def backtest_change(
    agent: Agent, after: dict, *, days: int = 14, now: datetime | None = None
) -> BacktestResult:
    """Backtest the agent's live policy with a proposed change (a piece) applied."""
    return backtest(agent, snapshot_with(build_snapshot(agent), after), days=days, now=now)


OUTCOMES = ("allowed", "pending", "shadowed", "denied")
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class DeltaExample:
    """One recorded action whose gate answer the change would move."""

    action_id: int
    tool: str
    today: str
    proposed: str


@dataclass
class BacktestDelta:
    """A proposed change against today's policy over the same recorded actions: per
    outcome, how many under each (``today``, ``proposed``) and the difference."""

    days: int
    replayed: int = 0
    changed: int = 0
    today: dict[str, int] = field(default_factory=dict)
    proposed: dict[str, int] = field(default_factory=dict)
    examples: list[DeltaExample] = field(default_factory=list)
    truncated: bool = False

    def delta(self, outcome: str) -> int:
        return self.proposed.get(outcome, 0) - self.today.get(outcome, 0)

    @property
    def rows(self) -> list[dict]:
        """One row per outcome: label, today, proposed, signed difference."""
        labels = {
            "allowed": "would run without a human",
            "pending": "would wait for a human",
            "shadowed": "would be shadowed",
            "denied": "would be denied",
        }
        return [
            {
                "outcome": outcome,
                "label": labels[outcome],
                "today": self.today.get(outcome, 0),
                "proposed": self.proposed.get(outcome, 0),
                "delta": self.delta(outcome),
            }
            for outcome in OUTCOMES
        ]


def backtest_delta(
    agent: Agent, after: dict, *, days: int = 14, now: datetime | None = None
) -> BacktestDelta:
    """Replay ``agent``'s recorded actions of the last ``days`` days through today's live
    policy and through it with ``after`` (a piece) applied; count both and keep a few
    actions whose answer would change. Read-only."""
    now = now or timezone.now()
    today_snapshot = build_snapshot(agent)
    proposed_snapshot = snapshot_with(today_snapshot, after)
    result = BacktestDelta(days=days)
    actions = (
        Action.objects.filter(agent=agent, created_at__gte=now - timedelta(days=days))
        .filter(created_at__lt=now)
        .order_by("-created_at", "-id")
        .values_list(
            "id",
            "tool",
            "original_arguments",
            "blast_radius",
            "rationale__confidence",
            "environment",
        )
    )
    for count, (action_id, tool, arguments, radius, conf, environment) in enumerate(
        actions.iterator(chunk_size=2000), start=1
    ):
        if count > MAX_REPLAYED:
            result.truncated = True
            break
        # In the environment it was made in: that environment's override judges it.
        request = GateRequest(
            tool,
            arguments or {},
            radius or {},
            environment=environment,
            confidence=_confidence(conf),
        )
        today = evaluate(today_snapshot, request).outcome
        proposed = evaluate(proposed_snapshot, request).outcome
        result.replayed += 1
        result.today[today] = result.today.get(today, 0) + 1
        result.proposed[proposed] = result.proposed.get(proposed, 0) + 1
        if today != proposed:
            result.changed += 1
            if len(result.examples) < MAX_EXAMPLES:
                result.examples.append(DeltaExample(action_id, tool, today, proposed))
    return result
