"""Regression cases: requests people kept, with the gate answer they expected, replayed
against an agent's current or proposed policy.

Keeping: from an action's trace (a governor of its agent) or from a kill switch's page (an
incident owner of its agent too, for an action that switch stopped), ``keep_case`` stores
the request as the gate saw it — the arguments the agent sent, its declared blast radius
and rationale — masked the way the audit log and its export mask data: the configured
sensitive argument paths (``approvals.masking``), then every secret-looking key
(``audit.redaction``). A rule that reads a masked field sees ``[masked]`` in a replay; the
case page says so. ``keep_case`` and ``retire_case`` are the only writes of
``RegressionCase``; each audits (``case.kept`` / ``case.retired``) in its transaction and
broadcasts nothing (the cases page is not live).

Replaying: ``replay_cases`` is pure — the gate (``rollout.policy.evaluate``) over a
snapshot and, for a proposal, the snapshot with the change applied
(``governance.backtest.snapshot_with``, as the backtest does). Each answer is one of three:
``allowed`` (runs without a human: ``allowed``, the tier's auto-approval), ``pending``
(waits for a human) or ``denied`` (does not run: denied, and shadowed — a shadow-tier
call is recorded, never executed). Kill switches and rate limits are left out, as in
every replay: they describe a moment, not the policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from approvals.kept_cases import was_stopped_by
from approvals.masking import mask_paths, redacted_paths
from approvals.models import Action
from approvals.states import Status
from audit import verbs
from audit.chain import Actor, append_event
from audit.redaction import is_redacted, redact
from core.errors import Refused
from governance import permissions as case_perms
from governance.backtest import recorded_outcome, snapshot_with
from governance.models import RegressionCase
from rollout.models import Agent
from rollout.policy import GateRequest, confidence_of, evaluate
from rollout.snapshots import build_snapshot

NOTE_MAX = 500
EXPECTED = tuple(RegressionCase.Expected.values)
# The gate's outcome as a case's answer: does it run on its own, wait, or not run?
ANSWER = {"allowed": "allowed", "pending": "pending", "shadowed": "denied", "denied": "denied"}
ANSWER_LABELS = dict(RegressionCase.Expected.choices)
EXPECTED_PHRASES = {
    "allowed": "run without a human",
    "pending": "wait for a human",
    "denied": "not run",
}
# What people did with an action, when it overrides what the gate first said.
PEOPLE_STOPPED = {Status.REJECTED, Status.CANCELLED, Status.REVOKED}


class CaseRefused(Refused):
    """A regression-case request the rules refuse."""


def answer_of(outcome: str) -> str:
    """A gate outcome as one of ``allowed`` / ``pending`` / ``denied`` (unknown: denied)."""
    return ANSWER.get(outcome, "denied")


def default_expectation(action: Action, *, from_incident: bool = False) -> str:
    """What a case kept from ``action`` expects unless the person says otherwise: from an
    incident, that it does not run; if people rejected it, the same; otherwise the gate's
    own first answer (a call people approved had waited for them: ``pending``)."""
    if from_incident or action.status in PEOPLE_STOPPED:
        return "denied"
    return answer_of(recorded_outcome(action.reason_code))


def masked_request(action: Action) -> dict[str, Any]:
    """The request as a case stores it: what the agent sent, masked as the audit export
    masks it (the configured sensitive paths, then every secret-looking key)."""
    return {
        "tool": action.tool,
        "arguments": redact(mask_paths(action.original_arguments, redacted_paths(action.tool))),
        "blast_radius": redact(action.blast_radius or {}),
        "rationale": redact(action.rationale or {}),
        "environment": action.environment,
    }


def _clean_expected(expected: Any) -> str | None:
    if expected in (None, ""):
        return None
    if expected not in EXPECTED:
        raise CaseRefused(
            "invalid",
            "The expected outcome is allowed, pending or denied.",
            400,
            {"expected": [f"One of {', '.join(EXPECTED)}."]},
        )
    return str(expected)


def _clean_note(note: Any) -> str:
    note = str(note or "").strip()
    if len(note) > NOTE_MAX:
        raise CaseRefused(
            "invalid",
            f"The note is longer than {NOTE_MAX} characters.",
            400,
            {"note": [f"At most {NOTE_MAX} characters."]},
        )
    return note


def keep_case(
    *,
    action_id: int,
    user: Any,
    expected: str | None = None,
    note: str = "",
    switch_id: int | None = None,
) -> RegressionCase:
    """Keep action ``action_id``'s request as a regression case of its agent, expecting
    ``expected`` (default: ``default_expectation``). ``switch_id``: kept from that kill
    switch's page, which lets the agent's incident owners keep it too — only for an action
    that switch stopped. One case per action. Creates a ``RegressionCase``; audits
    ``case.kept``; broadcasts nothing."""
    chosen = _clean_expected(expected)
    note = _clean_note(note)
    with transaction.atomic():
        # The action's row lock makes "one case per action" hold under concurrent keeps.
        action = (
            Action.objects.select_for_update(of=("self",))
            .select_related("agent")
            .filter(pk=action_id)
            .first()
        )
        if action is None:
            raise CaseRefused("not_found", "No such action.", 404)
        from_incident = switch_id is not None
        if from_incident and not was_stopped_by(action.pk, switch_id):
            raise CaseRefused(
                "not_stopped_by_switch",
                f"Kill switch #{switch_id} did not stop action #{action.pk}.",
                400,
                {"switch_id": ["Not a switch that stopped this action."]},
            )
        if not case_perms.can_keep_case(user, action.agent, from_incident=from_incident):
            raise CaseRefused("not_allowed", "You may not keep cases of this agent.", 403)
        if is_redacted(action.original_arguments):
            raise CaseRefused(
                "payload_redacted",
                "Retention removed this action's arguments: there is no request left to keep.",
            )
        existing = RegressionCase.objects.filter(source_action=action).first()
        if existing is not None:
            raise CaseRefused(
                "already_kept", f"Action #{action.pk} is already case #{existing.pk}."
            )
        case = RegressionCase.objects.create(
            agent=action.agent,
            source_action=action,
            source_switch_id=switch_id,
            expected=chosen or default_expectation(action, from_incident=from_incident),
            note=note,
            kept_by=user,
            **masked_request(action),
        )
        append_event(
            verb=verbs.CASE_KEPT,
            actor=Actor.user(user),
            target_type="regression_case",
            target_id=case.pk,
            agent_slug=action.agent.slug,
            correlation_id=action.correlation_id,
            data={
                "action": action.pk,
                "kill_switch": switch_id,
                "tool": case.tool,
                "expected": case.expected,
                "note": note,
            },
        )
    return case


def retire_case(*, case_id: int, user: Any) -> None:
    """Delete regression case ``case_id`` (a governor of its agent). Audits
    ``case.retired`` with what the case held; broadcasts nothing."""
    with transaction.atomic():
        case = (
            RegressionCase.objects.select_for_update(of=("self",))
            .select_related("agent")
            .filter(pk=case_id)
            .first()
        )
        if case is None:
            raise CaseRefused("not_found", "No such case.", 404)
        if not case_perms.can_retire_case(user, case.agent):
            raise CaseRefused("not_allowed", "You may not retire cases of this agent.", 403)
        append_event(
            verb=verbs.CASE_RETIRED,
            actor=Actor.user(user),
            target_type="regression_case",
            target_id=case.pk,
            agent_slug=case.agent.slug,
            data={
                "action": case.source_action_id,
                "tool": case.tool,
                "expected": case.expected,
            },
        )
        case.delete()


# --- replay -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseReplay:
    """One case's answers: expected by people, under the policy now, under the proposal
    (``None`` when no proposal was replayed)."""

    case: RegressionCase
    now: str
    now_reason: str
    proposed: str | None = None
    proposed_reason: str = ""

    @property
    def expected(self) -> str:
        return self.case.expected

    @property
    def outcome(self) -> str:
        """The answer that would hold: the proposal's if any, else today's."""
        return self.proposed if self.proposed is not None else self.now

    @property
    def expected_label(self) -> str:
        return ANSWER_LABELS[self.expected]

    @property
    def now_label(self) -> str:
        return ANSWER_LABELS[self.now]

    @property
    def proposed_label(self) -> str:
        return ANSWER_LABELS[self.proposed] if self.proposed is not None else ""

    @property
    def changed(self) -> bool:
        """The proposal moves this case's answer."""
        return self.proposed is not None and self.proposed != self.now

    @property
    def differs(self) -> bool:
        """The answer that would hold is not what people expected."""
        return self.outcome != self.expected


@dataclass
class CaseReport:
    """Every case of an agent replayed; ``changed`` the ones a proposal moves and
    ``differing`` the ones whose answer would not be what people expected."""

    rows: list[CaseReplay] = field(default_factory=list)
    proposal: bool = False

    @property
    def checked(self) -> int:
        return len(self.rows)

    @property
    def changed(self) -> list[CaseReplay]:
        return [row for row in self.rows if row.changed]

    @property
    def differing(self) -> list[CaseReplay]:
        return [row for row in self.rows if row.differs]


def gate_request(case: RegressionCase) -> GateRequest:
    """The stored (masked) request as the gate takes it: in the environment of the token
    that sent it, with the confidence it stated (a ``min_confidence`` rule weighs it)."""
    return GateRequest(
        case.tool,
        case.arguments or {},
        case.blast_radius or {},
        environment=case.environment,
        confidence=confidence_of(case.rationale),
    )


def replay_cases(
    cases: Iterable[RegressionCase], snapshot: dict, proposed_snapshot: dict | None = None
) -> CaseReport:
    """Replay ``cases`` through ``snapshot`` and, when given, ``proposed_snapshot``. Pure:
    no database, no clock."""
    report = CaseReport(proposal=proposed_snapshot is not None)
    for case in cases:
        request = gate_request(case)
        now = evaluate(snapshot, request)
        proposed = evaluate(proposed_snapshot, request) if proposed_snapshot else None
        report.rows.append(
            CaseReplay(
                case=case,
                now=answer_of(now.outcome),
                now_reason=now.reason_code,
                proposed=answer_of(proposed.outcome) if proposed else None,
                proposed_reason=proposed.reason_code if proposed else "",
            )
        )
    return report


def cases_of(agent: Agent) -> list[RegressionCase]:
    return list(
        RegressionCase.objects.filter(agent=agent)
        .select_related("kept_by", "source_action")
        .order_by("-kept_at", "-id")
    )


def replay_current(agent: Agent) -> CaseReport:
    """The agent's cases against its live policy."""
    return replay_cases(cases_of(agent), build_snapshot(agent))


def replay_change(agent: Agent, after: dict) -> CaseReport:
    """The agent's cases against its live policy and against it with ``after`` (a
    governance piece, as a change request's ``after``) applied."""
    snapshot = build_snapshot(agent)
    return replay_cases(cases_of(agent), snapshot, snapshot_with(snapshot, after))
