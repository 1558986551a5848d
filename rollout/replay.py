"""Replay: decide a recorded action again, under the policy version it was decided with and
under the agent's policy today, side by side — "would it still be allowed?".

``rollout.policy.evaluate`` is pure, so replay runs the real gate logic on data only. What
was true only at that moment is left out and said so: no kill switch is engaged and the
rate-limit counters are empty. Arguments are the ones the agent sent (before any edit).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from audit import verbs
from audit.models import AuditEvent
from audit.redaction import is_redacted
from rollout.policy import GateDecision, GateRequest, confidence_of, evaluate
from rollout.policy_diff import changes_between

ASSUMPTIONS = (
    "No kill switch is engaged during a replay.",
    "Rate-limit counters are empty during a replay.",
    "The arguments are the ones the agent sent, before any reviewer's edit.",
)
# Recorded reasons that depended on the moment, not on the policy.
MOMENTARY_REASONS = {"kill_switch", "rate_limited"}
COMPARED = ("outcome", "reason_code", "risk", "required_approvals", "needs_critical_approver")


def _decision(decision: GateDecision, version: Any) -> dict[str, Any]:
    result = asdict(decision)
    result.pop("switch_id", None)
    result["policy_version"] = version.number if version else None
    result["policy_version_id"] = version.pk if version else None
    return result


def _recorded(action: Any) -> dict[str, Any]:
    event = (
        AuditEvent.objects.filter(
            target_type="action", target_id=str(action.pk), verb=verbs.ACTION_SUBMITTED
        )
        .order_by("id")
        .first()
    )
    data = (event.data if event else {}) or {}
    return {
        "outcome": data.get("outcome", ""),
        "reason_code": data.get("reason_code", action.reason_code),
        "reasons": data.get("reasons", action.reasons),
        "risk": data.get("risk", action.risk),
        "required_approvals": action.required_approvals,
        "needs_critical_approver": action.needs_critical_approver,
        "policy_version": data.get("policy_version"),
        "policy_version_id": action.policy_version_id,
        "event_id": event.pk if event else None,
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in COMPARED)


def replay_action(action: Any) -> dict[str, Any]:
    """``{recorded, with_recorded_policy, with_current_policy}`` plus what the replay
    assumed and whether it could run (not when retention redacted the arguments)."""
    recorded = _recorded(action)
    result: dict[str, Any] = {
        "recorded": recorded,
        "with_recorded_policy": None,
        "with_current_policy": None,
        "assumptions": list(ASSUMPTIONS),
        "available": True,
        "unavailable_reason": "",
        "recorded_was_momentary": recorded["reason_code"] in MOMENTARY_REASONS,
        "policy_changes": [],
    }
    arguments = action.original_arguments
    if is_redacted(arguments):
        result["available"] = False
        result["unavailable_reason"] = "The arguments were redacted after the retention period."
        return result
    request = GateRequest(
        action.tool,
        arguments,
        action.blast_radius or {},
        environment=action.environment,
        confidence=confidence_of(action.rationale),
    )
    then = action.policy_version
    now = action.agent.current_policy
    if then is not None:
        result["with_recorded_policy"] = _decision(evaluate(then.snapshot, request), then)
        result["with_recorded_policy"]["matches_recorded"] = _same(
            result["with_recorded_policy"], recorded
        )
    if now is not None:
        current = _decision(evaluate(now.snapshot, request), now)
        current["same_as_recorded"] = _same(current, recorded)
        current["changed_by_policy"] = result["with_recorded_policy"] is not None and not _same(
            current, result["with_recorded_policy"]
        )
        result["with_current_policy"] = current
    if then is not None and now is not None and then.pk != now.pk:
        result["policy_changes"] = [c.text for c in changes_between(then.snapshot, now.snapshot)]
    else:
        result["policy_changes"] = []
    return result
