"""Refused attempts leave a trace: ``access.refused``, at most once a minute per key.

An auditor trying to approve, a reviewer trying another agent's action, a person approving
what they asked for, an agent token calling a people-only endpoint: each is refused by the
write path or the interface, and the refusal rolls back whatever it would have written.
``record_refusal`` is called *after* that, by the one place per interface that turns a
refusal into an answer (``config.refusal_audit``: the API's exception handler and the
pages' middleware), and writes the trace in a transaction of its own.

A flood must not flood the log. Refusals are counted per (actor, code, agent) and minute
in ``RefusalWindow``: the first of a minute writes an event, the others only add one to
the count (one ``INSERT … ON CONFLICT DO UPDATE``); the key's next event reports how many
were held back since its last one and clears the counted rows.

Which refusals are recorded: every ``403`` (whatever its code — a new one is recorded
without being listed here) and an attempt on another agent's object answered ``404``
(``not_visible``). Not recorded: state conflicts and bad input (``409``/``400``: the
person may act, the action just is not in a state for it), ``401`` (no one to name),
and CSRF rejections (the request was forged by another site; its session's owner did not
make it). ``ACCESS_REFUSAL_CODES`` lists the codes known today, ``NOT_RECORDED_CODES``
the rule refusals that are deliberately left out.

This module is a leaf of the audit app: it knows actors, codes and agent slugs, never the
apps that refuse."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit import verbs
from audit.chain import Actor, append_event
from audit.models import RefusalWindow
from core.errors import NOTED_REFUSAL, note_refusal  # noqa: F401 (the core's; re-exported)

logger = logging.getLogger(__name__)

# Refusals of access or of a rule about who may do what. All but ``not_visible`` are 403.
ACCESS_REFUSAL_CODES = frozenset(
    {
        "permission_denied",  # the endpoint or page is not for this caller (role, agent token)
        "token_scope",  # a personal token without the scope the endpoint needs
        "step_up_required",  # a consequential click without a recent second factor
        "not_reviewer",  # deciding on an agent one does not review
        "own_request",  # approving what one requested (on_behalf_of)
        "critical_approver_required",  # the last slot of a critical action, without the right
        "not_governor",  # changing an agent one does not govern
        "not_author",  # withdrawing or editing someone else's change request
        "own_change_request",  # approving or rejecting a governance change one wrote
        "own_account",  # disabling one's own account
        "not_visible",  # another agent's object, answered 404 so as not to tell it exists
        "reauth_required",  # a credential operation without the password typed again
        "reauth_failed",  # ... with a wrong password (also counted as a failed login)
        "reauth_throttled",  # ... while logins of that account or address are paused (429)
        "link_not_yours",  # an email's decision link opened by someone it was not sent to
    }
)
# Refused, but not an access question: the caller may do this, the object is not in a
# state for it (or the input is wrong). Answered 409/400 and not recorded.
NOT_RECORDED_CODES = frozenset(
    {
        "not_pending",
        "expired",
        "already_approved",
        "already_reported",
        "not_executed",
        "no_compensation",
        "window_closed",
        "not_shadowed",
        "rollback_not_requested",
        "comment_required",
        "argument_limit",
        "not_open",
        "no_change",
        "nothing_to_revert",  # a policy version the live policy already matches
        "invalid",
        "not_found",
        "link_used",  # an email's decision link used again (its person, a replay)
        "link_expired",
        "link_invalid",  # a token that matches no link (404; recorded as not_visible when
        # the action is another agent's)
    }
)

# Codes and slugs are short by construction; cut them anyway so no input can fail the write.
_MAX_CODE, _MAX_AGENT, _MAX_ACTOR = 60, 80, 170


def is_recorded(code: str, status: int) -> bool:
    """Whether a refusal answered ``status`` with ``code`` is an access refusal to audit."""
    return status == 403 or code in ACCESS_REFUSAL_CODES


def window_of(moment: datetime) -> datetime:
    """The start of the minute ``moment`` falls in: the counting window."""
    return moment.replace(second=0, microsecond=0)


_table = RefusalWindow._meta.db_table
# One statement, atomic on both databases: the first refusal of a window inserts 1, any
# other (in this process or another) adds one under the row's lock; RETURNING says which.
_COUNT_SQL = (
    f"INSERT INTO {_table} (actor, code, agent_slug, window_start, refusals) "  # noqa: S608
    "VALUES (%s, %s, %s, %s, 1) "
    "ON CONFLICT (actor, code, agent_slug, window_start) "
    f"DO UPDATE SET refusals = {_table}.refusals + 1 RETURNING refusals"
)
# The key's earlier windows, removed as this event reports them.
_TAKE_EARLIER_SQL = (
    f"DELETE FROM {_table} "  # noqa: S608
    "WHERE actor = %s AND code = %s AND agent_slug = %s AND window_start < %s "
    "RETURNING refusals, window_start"
)


def record_refusal(
    *,
    actor: Actor,
    code: str,
    agent_slug: str = "",
    target_type: str = "",
    target_id: Any = "",
    channel: str = "",
    details: dict | None = None,
) -> None:
    """Audit that ``actor`` was refused with ``code`` (about ``agent_slug``'s ``target``,
    through ``channel``: ``api`` or ``page``), at most one ``access.refused`` event per
    (actor, code, agent) and minute. The event's data: the ``code``, the ``channel``, the
    ``window_start`` it opens, ``repeats_since_last_event`` (refusals of this key counted
    but not written since its previous event) and, when there were any, the
    ``repeats_window_start`` of the first minute they fell in; plus ``details`` (the
    request's method and path, say).

    Call it after the refused change has rolled back: it commits on its own (a savepoint
    when the caller is still inside a transaction). A repeat costs one statement; the
    first refusal of a minute also clears the key's earlier windows and appends the event.

    It never raises. The refusal has already been decided and is the safe answer; failing
    the request because its trace could not be written would change that answer into an
    error (which a client may retry, or read as "try again") and hide the refusal itself.
    So a failed write is logged at ERROR (with the traceback), where operators and alerts
    see the gap in the log, and the caller answers the refusal as it would have. The tally
    and the event are written in one transaction, so a failed event leaves no count behind:
    the next refusal of the key writes the event instead."""
    try:
        _record(
            actor=actor,
            code=code[:_MAX_CODE],
            agent_slug=agent_slug[:_MAX_AGENT],
            target_type=target_type,
            target_id=str(target_id if target_id is not None else "")[:64],
            channel=channel,
            details=details or {},
        )
    except Exception:
        logger.exception(
            "could not audit a refusal (%s, code %s, agent %r); the refusal was answered",
            actor,
            code,
            agent_slug,
        )


def _record(
    *,
    actor: Actor,
    code: str,
    agent_slug: str,
    target_type: str,
    target_id: str,
    channel: str,
    details: dict,
) -> None:
    actor_key = str(actor)[:_MAX_ACTOR]
    window = window_of(timezone.now())
    stored_window = connection.ops.adapt_datetimefield_value(window)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_COUNT_SQL, [actor_key, code, agent_slug, stored_window])
            (count,) = cursor.fetchone()
            if count > 1:
                return  # counted; the key's next event reports it
            cursor.execute(_TAKE_EARLIER_SQL, [actor_key, code, agent_slug, stored_window])
            earlier = cursor.fetchall()
        # Each earlier window's first refusal was itself an event; the rest were held back.
        repeats = sum(refusals - 1 for refusals, _ in earlier)
        data = {
            **details,
            "code": code,
            "channel": channel,
            "window_start": window.isoformat(),
            "repeats_since_last_event": repeats,
        }
        if repeats:
            first = min(_as_datetime(start) for refusals, start in earlier if refusals > 1)
            data["repeats_window_start"] = first.isoformat()
        append_event(
            verb=verbs.ACCESS_REFUSED,
            actor=actor,
            target_type=target_type,
            target_id=target_id,
            agent_slug=agent_slug,
            data=data,
        )


def _as_datetime(value: Any) -> datetime:
    """A ``window_start`` as the cursor returns it (SQLite: text) as an aware datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value
