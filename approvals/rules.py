"""Who may decide an action, and when it is decided: pure functions over inputs the caller
has already loaded.

The write path (``approvals.actions``, under the action's row lock) and the decision cards
(``approvals.selectors``, over a page's prefetched rows) call these same functions, so what
a card offers and what the write path accepts cannot drift apart. Nothing here queries
the database or reads the clock: permissions arrive as answers (``may_review``) and as a
callable (``is_critical_approver``) that each caller backs with its own lookups."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from approvals.models import Action, Decision
from approvals.states import Status
from core.identity import same_person

# "Does this person hold the critical-approval permission on the action's agent?"
IsCriticalApprover = Callable[[Any], bool]


@dataclass(frozen=True)
class Refusal:
    """Why a decision is refused: a stable ``code``, a sentence for the person, and the
    HTTP status the API answers with."""

    code: str
    detail: str
    status: int


NOT_REVIEWER = Refusal("not_reviewer", "You may not review this agent's actions.", 403)
EXPIRED = Refusal("expired", "This action expired before a decision.", 409)
AGENT_GONE = Refusal(
    "agent_gone",
    "The agent stopped waiting for this action (its lease lapsed); it was cancelled.",
    409,
)
PAYLOAD_CHANGED = Refusal(
    "payload_changed",
    "The arguments changed since you looked (someone edited them): read the card again "
    "and decide on what will run.",
    409,
)
OWN_REQUEST = Refusal("own_request", "You requested this action, so you cannot approve it.", 403)
ALREADY_APPROVED = Refusal("already_approved", "You already approved this action.", 409)
CRITICAL_APPROVER_REQUIRED = Refusal(
    "critical_approver_required",
    "A critical action needs an approval from someone holding the critical-approval permission.",
    403,
)


# An email's Approve / Reject link (``approvals.models.EmailDecisionLink``), before the
# write path's own rules.
LINK_INVALID = Refusal(
    "link_invalid",
    "This link is not valid: it was cut short, mistyped or altered. Nothing was decided.",
    404,
)
LINK_NOT_YOURS = Refusal(
    "link_not_yours",
    "This link was sent to another person, so it decides nothing for you (a forwarded "
    "email carries no right to decide). Nothing was decided.",
    403,
)
LINK_USED = Refusal("link_used", "This link was already used: a link decides once.", 409)
LINK_EXPIRED = Refusal(
    "link_expired",
    "This link has expired (a link lasts as long as the action waited when the email was "
    "sent). Nothing was decided.",
    409,
)


def email_link_refusal(link: Any, user: Any, now: datetime) -> Refusal | None:
    """Why ``user`` may not use the email decision ``link`` now, as far as the link itself
    goes (whose it is, used, expired), or None; the decision then meets every rule of the
    write path, on the payload hash the link was issued for. Whose it is comes first: a
    forwarded link tells its new holder nothing more."""
    if link.person_id != user.pk:
        return LINK_NOT_YOURS
    if link.used_at is not None:
        return LINK_USED
    if now >= link.expires_at:
        return LINK_EXPIRED
    return None


def current_approvals(action: Action, decisions: Iterable[Decision]) -> list[Decision]:
    """The approvals among ``decisions`` that count toward ``action``'s quorum: not voided
    and bound to its current payload, in the order they were given."""
    return [
        d
        for d in decisions
        if d.verdict == Decision.Verdict.APPROVE
        and not d.voided
        and d.payload_hash == action.payload_hash
    ]


def decision_refusal(
    action: Action,
    user: Any,
    verdict: str,
    *,
    approvals: Sequence[Decision],
    may_review: bool,
    is_critical_approver: IsCriticalApprover,
    now: datetime,
    seen_hash: str | None = None,
) -> Refusal | None:
    """Why ``user`` may not give ``verdict`` on ``action`` now, or None when they may.

    ``approvals`` are the action's current approvals (``current_approvals``);
    ``seen_hash`` is the payload hash of the card the person decided on (None: not
    given, as the API allows) — a decision on arguments other than those that would run
    is refused."""
    if not may_review:
        return NOT_REVIEWER
    if action.status != Status.PENDING:
        return Refusal("not_pending", f"This action is {action.status}, not pending.", 409)
    if lapsed := overdue(action, now):
        return lapsed
    if seen_hash is not None and seen_hash != action.payload_hash:
        return PAYLOAD_CHANGED
    if verdict == Decision.Verdict.REJECT:
        return None
    if action.on_behalf_of and same_person(action.on_behalf_of, user.get_username()):
        return OWN_REQUEST
    if any(d.reviewer_id == user.pk for d in approvals):
        return ALREADY_APPROVED
    if action.needs_critical_approver:
        has_critical = any(is_critical_approver(d.reviewer) for d in approvals)
        slots_left = action.required_approvals - len(approvals)
        if not has_critical and slots_left <= 1 and not is_critical_approver(user):
            return CRITICAL_APPROVER_REQUIRED
    return None


def overdue(action: Action, now: datetime) -> Refusal | None:
    """Which deadline of a pending ``action`` has passed — ``EXPIRED`` (no human decided in
    time) or ``AGENT_GONE`` (the agent's lease lapsed) — the earlier one when both have;
    None while neither has. Either ends the action as a denial."""
    passed = [
        (deadline, refusal)
        for deadline, refusal in (
            (action.expires_at, EXPIRED),
            (action.lease_expires_at, AGENT_GONE),
        )
        if deadline is not None and now >= deadline
    ]
    return min(passed, key=lambda item: item[0])[1] if passed else None


def quorum_met(
    action: Action, approvals: Sequence[Decision], is_critical_approver: IsCriticalApprover
) -> bool:
    """Whether ``approvals`` (current ones) make ``action`` executable: enough distinct
    people, one of them a critical approver when the action needs one."""
    if len({d.reviewer_id for d in approvals}) < max(1, action.required_approvals):
        return False
    if action.needs_critical_approver:
        return any(is_critical_approver(d.reviewer) for d in approvals)
    return True


@dataclass(frozen=True)
class StillNeeded:
    """Who may still approve a pending action: ``count`` more approvals by distinct people,
    one of them a critical approver when ``critical`` (none counted yet)."""

    count: int
    critical: bool

    def __str__(self) -> str:
        if self.count <= 0:
            return "quorum met"
        if self.critical and self.count == 1:
            return "needs 1 more: a critical approver"
        if self.critical:
            return f"needs {self.count} more: one of them a critical approver"
        return (
            f"needs {self.count} more: any reviewer"
            if self.count == 1
            else (f"needs {self.count} more: distinct reviewers")
        )


def still_needed(
    action: Action, approvals: Sequence[Decision], is_critical_approver: IsCriticalApprover
) -> StillNeeded:
    """What ``approvals`` (current ones) leave to do before ``quorum_met``: the same bar,
    said as what remains."""
    count = max(1, action.required_approvals) - len({d.reviewer_id for d in approvals})
    critical = action.needs_critical_approver and not any(
        is_critical_approver(d.reviewer) for d in approvals
    )
    return StillNeeded(max(count, 1 if critical else 0), critical)


# Bulk decisions are for the many small, alike actions: low risk, one tool, seen as cards.
BULK_RISKS = frozenset({"low"})
MAX_BULK = 100


def bulk_refusal(
    actions: Sequence[Action], *, requested: int, hashes_given: bool
) -> Refusal | None:
    """Why a bulk decision over ``actions`` (those of the ``requested`` ids the person may
    review) is refused as a whole, or None when each may go to the write path: every one
    found, at most ``MAX_BULK``, all of one tool, all low risk (never high or critical), each
    with the payload hash the person saw. Each action's own decision rules still apply,
    one by one (``decision_refusal``)."""
    if not actions or len(actions) != requested:
        return Refusal(
            "not_found", "Some of these actions do not exist or are not yours to decide.", 404
        )
    if len(actions) > MAX_BULK:
        return Refusal("too_many", f"At most {MAX_BULK} actions at once.", 400)
    if len({action.tool for action in actions}) != 1:
        return Refusal("mixed_tools", "A bulk decision covers the actions of one tool only.", 400)
    if any(action.risk not in BULK_RISKS for action in actions):
        return Refusal(
            "risk_too_high_for_bulk",
            "Only low-risk actions are decided in bulk; decide the others one by one.",
            403,
        )
    if not hashes_given:
        return Refusal("payload_hash_required", "Each action needs the payload hash you saw.", 400)
    return None


def latest_expiry(action: Action, max_pending_seconds: int) -> datetime | None:
    """The latest ``action`` may be extended to: its submission plus its tier's
    ``max_pending_seconds``; None when the tier allows no extension."""
    if max_pending_seconds <= 0:
        return None
    return action.created_at + timedelta(seconds=max_pending_seconds)


def extension_refusal(
    action: Action,
    *,
    may_review: bool,
    seconds: int,
    max_pending_seconds: int,
    now: datetime,
) -> Refusal | None:
    """Why ``action``'s expiry may not be pushed ``seconds`` later now, or None when it
    may: only a reviewer of its agent, only while it is pending and not yet expired, and
    never beyond its tier's ``max_pending_seconds`` from its submission."""
    if not may_review:
        return NOT_REVIEWER
    if action.status != Status.PENDING:
        return Refusal("not_pending", f"This action is {action.status}, not pending.", 409)
    if action.expires_at is None:
        return Refusal("no_expiry", "This action does not expire.", 409)
    if now >= action.expires_at:
        return EXPIRED
    if seconds <= 0:
        return Refusal("invalid_extension", "Extend by a positive number of seconds.", 400)
    latest = latest_expiry(action, max_pending_seconds)
    if latest is None:
        return Refusal(
            "extension_not_allowed", "This agent's tier allows no extension of a wait.", 409
        )
    if action.expires_at + timedelta(seconds=seconds) > latest:
        return Refusal(
            "beyond_max_pending",
            f"That is beyond the longest wait this tier allows: at most until "
            f"{latest:%Y-%m-%d %H:%M} UTC.",
            409,
        )
    return None


def rollback_refusal(action: Action, *, may_review: bool, now: datetime) -> Refusal | None:
    """Why a rollback of ``action`` may not be requested now, or None when it may."""
    if not may_review:
        return NOT_REVIEWER
    if action.status != Status.EXECUTED:
        return Refusal(
            "not_executed",
            f"This action is {action.status}; only executed actions roll back.",
            409,
        )
    if not action.compensation:
        return Refusal("no_compensation", "This action declared no compensating action.", 409)
    if action.reversible_until is None or now >= action.reversible_until:
        return Refusal("window_closed", "This action's reversible window has closed.", 409)
    return None
