"""An action's trace, told as a story: what the agent asked, what the gate decided and why
(under which policy version), who was notified, who looked at it, each decision and edit,
the execution, the rollback — with the time between steps.

Built from the action's audit events (the record of what happened) and the action's rows
(the payloads the events only hash: arguments, evidence, results), plus the outbox rows that
tell who was notified. ``action_trace(action)`` returns the steps;
``templates/audit/_trace.html`` renders them (context: ``trace_steps``).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from approvals.masking import masked_for
from approvals.models import Decision, Outbox, Report
from audit import verbs
from audit.chain import Actor, append_event
from audit.models import AuditEvent
from audit.redaction import is_redacted
from audit.search import describe, url_or_blank

# What each verb is, as a stage of the story.
STAGES = {
    verbs.ACTION_SUBMITTED: "gate",
    verbs.ACTION_VIEWED: "view",
    verbs.ACTION_EDITED: "decision",
    verbs.ACTION_APPROVAL_RECORDED: "decision",
    verbs.ACTION_APPROVED: "decision",
    verbs.ACTION_REJECTED: "decision",
    verbs.ACTION_SHADOW_LABELLED: "decision",
    verbs.STANDING_NOT_CREATED: "decision",
    verbs.ACTION_EXECUTED: "execution",
    verbs.ACTION_FAILED: "execution",
    verbs.ACTION_ROLLBACK_REQUESTED: "rollback",
    verbs.ACTION_ROLLED_BACK: "rollback",
    verbs.ACTION_ROLLBACK_FAILED: "rollback",
    verbs.ACCESS_REFUSED: "refused",
}
REDACTED_TEXT = "[redacted after the retention period]"


@dataclass
class TraceStep:
    """One step of an action's story."""

    at: datetime
    actor: str  # "agent support-assistant", "user rita", "system expiry"
    actor_type: str  # user | agent | system
    verb: str  # the audit verb, or notification.email / notification.chat / webhook
    description: str  # the verb's registered sentence, filled in
    details: dict[str, Any] = field(default_factory=dict)
    since_previous: timedelta | None = None
    stage: str = "other"  # request | gate | notification | view | decision | execution | rollback
    event_id: int | None = None
    link: str = ""  # e.g. the policy version the gate used
    link_label: str = ""

    @property
    def since_previous_text(self) -> str:
        return format_duration(self.since_previous)

    @property
    def detail_items(self) -> list[tuple[str, str, bool]]:
        """(label, text, is_block) for display; structured values as indented JSON."""
        items = []
        for key, value in self.details.items():
            if value in (None, "", [], {}):
                continue
            label = key.replace("_", " ")
            if isinstance(value, dict | list):
                text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
                items.append((label, text, True))
            else:
                items.append((label, str(value), False))
        return items

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "actor_type": self.actor_type,
            "verb": self.verb,
            "stage": self.stage,
            "description": self.description,
            "details": self.details,
            "seconds_since_previous": (
                None if self.since_previous is None else self.since_previous.total_seconds()
            ),
            "event_id": self.event_id,
            "link": self.link,
        }


def format_duration(delta: timedelta | None) -> str:
    if delta is None:
        return ""
    seconds = delta.total_seconds()
    if seconds < 1:
        return f"+{int(seconds * 1000)} ms"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else ""]
    parts += [f"{minutes} min" if minutes else "", f"{secs} s" if secs and not days else ""]
    return "+" + " ".join(p for p in parts if p)


def _payload(value: Any) -> Any:
    return REDACTED_TEXT if is_redacted(value) else value


def _release(action: Any) -> dict[str, Any]:
    release = action.release
    if release is None:
        return {}
    facts = {
        "model": release.model,
        "prompt_version": release.prompt_version,
        "tool_schema_version": release.tool_schema_version,
    }
    facts.update({k: v for k, v in (release.extra or {}).items() if k not in facts})
    return {k: v for k, v in facts.items() if v not in ("", None)}


def _actor_text(actor_type: str, name: str) -> str:
    return f"{actor_type} {name}"


def _request_step(action: Any, event: AuditEvent | None, user: Any) -> TraceStep:
    arguments = action.original_arguments
    shown = REDACTED_TEXT if is_redacted(arguments) else masked_for(user, action.tool, arguments)
    return TraceStep(
        at=event.created_at if event else action.created_at,
        actor=_actor_text("agent", action.agent.slug),
        actor_type="agent",
        verb="action.requested",
        description=f"{action.agent.slug} asked to run {action.tool}",
        stage="request",
        details={
            "tool": action.tool,
            "summary": action.summary,
            "arguments": shown,
            "rationale": _payload(action.rationale),
            "evidence": _payload(action.evidence),
            "blast_radius": action.blast_radius,
            "release": _release(action),
            "on_behalf_of": action.on_behalf_of,
            "compensation": action.compensation,
            "correlation_id": action.correlation_id,
            # The environment of the token that asked ("" = unbound: none).
            "environment": action.environment,
        },
        event_id=event.pk if event else None,
    )


def _gate_step(action: Any, event: AuditEvent) -> TraceStep:
    data = event.data or {}
    number = data.get("policy_version")
    step = TraceStep(
        at=event.created_at,
        actor="gate",
        actor_type="system",
        verb=event.verb,
        description=f"the gate answered {data.get('outcome', action.status)}"
        + (f" ({data['reason_code']})" if data.get("reason_code") else "")
        + (f" under policy version {number}" if number else ""),
        stage="gate",
        details={
            "outcome": data.get("outcome"),
            "reason_code": data.get("reason_code"),
            "reasons": data.get("reasons"),
            "risk": data.get("risk"),
            "required_approvals": action.required_approvals or None,
            "needs_critical_approver": action.needs_critical_approver or None,
            "policy_version": number,
            "payload_hash": data.get("payload_hash"),
            "expires_at": action.expires_at.isoformat() if action.expires_at else None,
            "kill_switch": data.get("switch_id"),
        },
        event_id=event.pk,
    )
    if action.policy_version_id:
        step.link = url_or_blank("audit-policy-version", action.policy_version_id)
        step.link_label = f"policy version {number}"
    return step


def _event_step(action: Any, event: AuditEvent, reports: dict, edits: dict, user: Any) -> TraceStep:
    data = dict(event.data or {})
    details: dict[str, Any] = {k: v for k, v in data.items() if k != "status"}
    if event.verb == verbs.ACTION_EDITED:
        edited = edits.get(data.get("new_payload_hash"))
        if edited is not None:
            details["arguments_after_edit"] = (
                REDACTED_TEXT if is_redacted(edited) else masked_for(user, action.tool, edited)
            )
    elif event.verb in (verbs.ACTION_EXECUTED, verbs.ACTION_FAILED):
        report = reports.get("execution")
        if report is not None:
            details["result"] = _payload(report.result)
    elif event.verb in (verbs.ACTION_ROLLED_BACK, verbs.ACTION_ROLLBACK_FAILED):
        report = reports.get("rollback")
        if report is not None:
            details["result"] = _payload(report.result)
    if data.get("status"):
        details["status_after"] = data["status"]
    description = describe(event)
    if data.get("channel"):  # where a person decided: page, api, email, slack, bulk, standing
        description += f" via {data['channel']}"
    return TraceStep(
        at=event.created_at,
        actor=_actor_text(event.actor_type, event.actor),
        actor_type=event.actor_type,
        verb=event.verb,
        description=description,
        stage=STAGES.get(event.verb, "other"),
        details=details,
        event_id=event.pk,
    )


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _outbox_step(row: Any) -> TraceStep:
    payload = row.payload if isinstance(row.payload, dict) else {}
    if row.delivered_at:
        state = "delivered"
    elif row.failed_at:
        state = "failed"
    else:
        state = "owed"
    if row.kind == "webhook":
        description = f"webhook {payload.get('event', '')} to the agent's callback ({state})"
        details = {
            "event": payload.get("event"),
            "host": _host(row.destination),
            "delivery": state,
            "attempts": row.attempts,
            "last_error": row.last_error,
        }
        actor = "system webhooks"
    else:
        who = row.destination if row.kind == "email" else _host(row.destination)
        description = f"notified {who} by {row.kind} ({state})"
        details = {
            "to": who,
            "subject": payload.get("subject"),
            "delivery": state,
            "attempts": row.attempts,
        }
        actor = "system notifications"
    return TraceStep(
        at=row.created_at,
        actor=actor,
        actor_type="system",
        verb=f"notification.{row.kind}" if row.kind != "webhook" else "webhook",
        description=description,
        stage="notification",
        details={
            **details,
            "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
        },
    )


def action_trace(action: Any, user: Any = None) -> list[TraceStep]:
    """The story of ``action`` in time order. Argument fields configured as sensitive are
    masked unless ``user`` holds ``audit.view_sensitive`` (without a user: masked)."""
    events = list(
        AuditEvent.objects.filter(target_type="action", target_id=str(action.pk)).order_by("id")
    )
    reports = {r.kind: r for r in Report.objects.filter(action=action)}
    edits = {
        d.payload_hash: d.edited_arguments
        for d in Decision.objects.filter(action=action, edited_arguments__isnull=False)
    }
    submitted = next((e for e in events if e.verb == verbs.ACTION_SUBMITTED), None)
    steps = [_request_step(action, submitted, user)]
    for event in events:
        if event is submitted:
            steps.append(_gate_step(action, event))
        else:
            steps.append(_event_step(action, event, reports, edits, user))
    outbox = [_outbox_step(row) for row in Outbox.objects.filter(action=action).order_by("id")]
    # Stable: events keep their order; an outbox row goes after the events of its instant.
    steps = sorted(
        [(s.at, 0, i, s) for i, s in enumerate(steps)]
        + [(s.at, 1, i, s) for i, s in enumerate(outbox)],
        key=lambda item: item[:3],
    )
    ordered = [s for *_, s in steps]
    for previous, step in itertools.pairwise(ordered):
        step.since_previous = step.at - previous.at
    return ordered


def trace_total(steps: list[TraceStep]) -> str:
    """From the request to the last step."""
    if len(steps) < 2:
        return ""
    return format_duration(steps[-1].at - steps[0].at).lstrip("+")


def record_action_view(action: Any, user: Any) -> bool:
    """Audit that ``user`` looked at ``action`` (``action.viewed``), at most once per person
    and action every ``AUDIT_VIEW_DEDUP_SECONDS``. Returns whether an event was written."""
    if not (user and user.is_authenticated):
        return False
    key = f"audit:viewed:{action.pk}:{user.pk}"
    if not cache.add(key, 1, timeout=settings.AUDIT_VIEW_DEDUP_SECONDS):
        return False
    with transaction.atomic():
        append_event(
            verb=verbs.ACTION_VIEWED,
            actor=Actor.user(user),
            target_type="action",
            target_id=action.pk,
            agent_slug=action.agent.slug,
            correlation_id=action.correlation_id,
            data={"status": action.status},
        )
    return True
