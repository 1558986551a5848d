"""The action lifecycle as one table: which status may follow which. ``transition`` is the
only place a status changes; anything not in the table raises."""

from django.db import models

from approvals import hooks


class Status(models.TextChoices):
    ALLOWED = "allowed"
    DENIED = "denied"
    SHADOWED = "shadowed"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REVOKED = "revoked"
    EXECUTED = "executed"
    FAILED = "failed"
    ROLLBACK_REQUESTED = "rollback_requested"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"


# The gate creates an action in one of these.
INITIAL_STATUSES = frozenset({Status.ALLOWED, Status.DENIED, Status.SHADOWED, Status.PENDING})
# A call the gate would hold as pending that people's standing approval covers
# (``approvals.standing``) is approved in the submission's own transaction: created
# pending, then the table's pending → approved move, each with its audit event.
APPROVED_BY_STANDING = (Status.PENDING, Status.APPROVED)
# What the gate may answer a submission with.
GATE_ANSWERS = INITIAL_STATUSES | {APPROVED_BY_STANDING[1]}

TRANSITIONS: dict[str, frozenset[str]] = {
    Status.PENDING: frozenset({Status.APPROVED, Status.REJECTED, Status.EXPIRED, Status.CANCELLED}),
    Status.APPROVED: frozenset({Status.EXECUTED, Status.FAILED, Status.REVOKED}),
    Status.ALLOWED: frozenset({Status.EXECUTED, Status.FAILED, Status.REVOKED}),
    Status.EXECUTED: frozenset({Status.ROLLBACK_REQUESTED}),
    Status.ROLLBACK_REQUESTED: frozenset({Status.ROLLED_BACK, Status.ROLLBACK_FAILED}),
    Status.DENIED: frozenset(),
    Status.SHADOWED: frozenset(),
    Status.REJECTED: frozenset(),
    Status.EXPIRED: frozenset(),
    Status.CANCELLED: frozenset(),
    Status.REVOKED: frozenset(),
    Status.FAILED: frozenset(),
    Status.ROLLED_BACK: frozenset(),
    Status.ROLLBACK_FAILED: frozenset(),
}

# Statuses in which the agent may execute (and must report).
EXECUTABLE = frozenset({Status.APPROVED, Status.ALLOWED})
# Statuses that will not change again.
FINAL = frozenset(s for s, nexts in TRANSITIONS.items() if not nexts)


class IllegalTransition(Exception):
    def __init__(self, current: str, new: str) -> None:
        super().__init__(f"an action cannot go from {current} to {new}")
        self.current = current
        self.new = new


def check_transition(current: str, new: str) -> None:
    if new not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(current, new)


def transition(action, new: str) -> str:
    """Move ``action`` to ``new`` (in memory; the caller saves inside its transaction).
    Returns the previous status. Leaving pending — by whichever path — tells
    ``hooks.action_left_pending`` in the caller's transaction (what reviewers were sent
    about the action is updated)."""
    previous = action.status
    check_transition(previous, new)
    action.status = new
    if previous == Status.PENDING:
        hooks.action_left_pending(action)
    return previous
