"""Retention of action payloads, and masking of sensitive argument fields.

*Retention*: after ``AUDIT_PAYLOAD_RETENTION_DAYS`` the payloads an agent sent (arguments,
original arguments, evidence, rationale, the reported results, edited arguments) are
replaced on the approvals rows by a marker. The audit chain is untouched and still verifies:
its events carry the payload's hash (``action.submitted`` → ``payload_hash``), never the
payload, so what was approved stays provable without being kept.

*Masking*: ``AUDIT_REDACTED_ARGUMENT_PATHS`` names argument fields per tool (``"*"``: every
tool) that are shown as ``[masked]`` to people without ``audit.view_sensitive``. Masking
changes only what is displayed; the stored arguments are what is executed and hashed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit import verbs
from audit.chain import Actor, append_event
from core.people import is_active_person

SENSITIVE_PERM = "audit.view_sensitive"
MASKED = "[masked]"
RETENTION_MARKER = "[redacted: retention]"
# What a redacted JSON object / list holds instead of the payload.
REDACTED_OBJECT = {"_redacted": "retention"}
REDACTED_LIST = [REDACTED_OBJECT]
BATCH_SIZE = 500


# --- masking ------------------------------------------------------------------------------


def can_view_sensitive(user: Any) -> bool:
    return is_active_person(user) and user.has_perm(SENSITIVE_PERM)


def redacted_paths(tool: str) -> list[list[str]]:
    """The configured paths for ``tool`` (its own and the ``"*"`` ones), split into parts."""
    configured = settings.AUDIT_REDACTED_ARGUMENT_PATHS
    paths = [*configured.get("*", []), *configured.get(tool, [])]
    return [path.split(".") for path in paths if path]


def mask_paths(value: Any, paths: list[list[str]]) -> Any:
    """A copy of ``value`` with every field named by ``paths`` replaced by ``[masked]``.
    ``*`` matches any key or list item; a leading ``**`` matches at any depth."""
    if not paths:
        return value
    result = copy.deepcopy(value)
    for parts in paths:
        result = _mask(result, parts)
    return result


def _mask(node: Any, parts: list[str]) -> Any:
    if not parts:
        return MASKED
    head, rest = parts[0], parts[1:]
    if head == "**":
        node = _mask(node, rest)  # the rest, right here
        children = _children(node)
        for key in children:
            node[key] = _mask(node[key], parts)  # and, still with "**", further down
        return node
    if head == "*":
        for key in _children(node):
            node[key] = _mask(node[key], rest)
        return node
    if isinstance(node, dict) and head in node:
        node[head] = _mask(node[head], rest)
    elif isinstance(node, list) and head.isdigit() and int(head) < len(node):
        node[int(head)] = _mask(node[int(head)], rest)
    return node


def _children(node: Any) -> list:
    if isinstance(node, dict):
        return list(node)
    if isinstance(node, list):
        return list(range(len(node)))
    return []


def masked_for(user: Any, tool: str, arguments: Any) -> Any:
    """``arguments`` of ``tool`` as ``user`` may see them."""
    if can_view_sensitive(user):
        return arguments
    return mask_paths(arguments, redacted_paths(tool))


def keep_masked_values(user: Any, tool: str, current: Any, edited: Any) -> Any:
    """``edited`` arguments with every field ``user`` cannot see (masked for them in
    ``current``) set back to its value in ``current``: an editor changes only what they
    were shown. Fields absent from ``current`` are left as edited."""
    if can_view_sensitive(user):
        return edited
    result = copy.deepcopy(edited)
    for location in _masked_locations(current, redacted_paths(tool)):
        result = _put(result, location, _get(current, location))
    return result


def _masked_locations(value: Any, paths: list[list[str]]) -> list[tuple]:
    """The concrete key/index paths in ``value`` that ``mask_paths`` would mask."""
    found: list[tuple] = []
    for parts in paths:
        _collect(value, parts, (), found)
    return found


def _collect(node: Any, parts: list[str], at: tuple, found: list[tuple]) -> None:
    if not parts:
        found.append(at)
        return
    head, rest = parts[0], parts[1:]
    if head == "**":
        _collect(node, rest, at, found)
        for key in _children(node):
            _collect(node[key], parts, (*at, key), found)
    elif head == "*":
        for key in _children(node):
            _collect(node[key], rest, (*at, key), found)
    elif isinstance(node, dict) and head in node:
        _collect(node[head], rest, (*at, head), found)
    elif isinstance(node, list) and head.isdigit() and int(head) < len(node):
        _collect(node[int(head)], rest, (*at, int(head)), found)


def _get(node: Any, location: tuple) -> Any:
    for key in location:
        node = node[key]
    return node


def _put(node: Any, location: tuple, value: Any) -> Any:
    """``node`` with ``value`` at ``location``, where the edited structure still has the
    parents (an editor who removed a whole branch removed what they could see)."""
    if not location:
        return copy.deepcopy(value)
    parent = node
    for key in location[:-1]:
        if not _has(parent, key):
            return node
        parent = parent[key]
    last = location[-1]
    if (isinstance(parent, dict) and isinstance(last, str)) or _has(parent, last):
        parent[last] = copy.deepcopy(value)
    return node


def _has(node: Any, key: Any) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)


def masked_arguments(action: Any, viewer: Any, *, original: bool = False) -> Any:
    """The action's arguments (``original``: as the agent sent them) as ``viewer`` may see
    them — the one way an action's arguments reach anyone (API, cards, pages, diffs, the
    argument editor). The action's own agent (its token) gets them whole: it executes them.
    A person gets the configured sensitive fields masked unless they hold
    ``audit.view_sensitive``; no viewer (``None``) gets them masked. For display only:
    execution and hashing always use the stored arguments."""
    arguments = action.original_arguments if original else action.arguments
    if is_own_agent(viewer, action):
        return arguments
    return masked_for(viewer, action.tool, arguments)


def is_own_agent(viewer: Any, action: Any) -> bool:
    """True when ``viewer`` is the agent principal of ``action``'s own agent."""
    agent = getattr(viewer, "agent", None) if getattr(viewer, "is_agent", False) else None
    return agent is not None and agent.pk == action.agent_id


def is_redacted(value: Any) -> bool:
    """True for a payload that retention replaced."""
    return value in (REDACTED_OBJECT, REDACTED_LIST)


# --- retention ----------------------------------------------------------------------------


@dataclass
class RetentionResult:
    cutoff: datetime | None
    actions: int = 0
    reports: int = 0
    decisions: int = 0
    webhooks: int = 0
    batches: int = 0
    action_ids: list[int] = field(default_factory=list)


def _due_actions(cutoff: datetime):
    from approvals.models import Action
    from approvals.states import Status

    # A pending action is still to be decided on its payload (expiry ends it long before
    # any sensible retention period; this only guards a misconfiguration).
    return (
        Action.objects.filter(created_at__lt=cutoff)
        .exclude(status=Status.PENDING)
        .exclude(Q(arguments=REDACTED_OBJECT) & Q(original_arguments=REDACTED_OBJECT))
    )


def apply_retention(
    *,
    days: int | None = None,
    actor: Actor | None = None,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    dry_run: bool = False,
) -> RetentionResult:
    """Redact the payloads of actions created more than ``days`` (default
    ``AUDIT_PAYLOAD_RETENTION_DAYS``; 0 keeps everything) days ago, in batches, each in its
    own transaction with one ``audit.retention_applied`` event naming the actions. Running it
    again finds nothing more to do."""
    days = settings.AUDIT_PAYLOAD_RETENTION_DAYS if days is None else days
    if days <= 0:
        return RetentionResult(cutoff=None)
    cutoff = (now or timezone.now()) - timedelta(days=days)
    result = RetentionResult(cutoff=cutoff)
    if dry_run:
        result.actions = _due_actions(cutoff).count()
        return result
    actor = actor or Actor.system("retention")
    while True:
        with transaction.atomic():
            ids = list(
                _due_actions(cutoff)
                .order_by("id")
                .select_for_update(skip_locked=True)
                .values_list("id", flat=True)[:batch_size]
            )
            if not ids:
                break
            counts = _redact_batch(ids)
            append_event(
                verb=verbs.AUDIT_RETENTION_APPLIED,
                actor=actor,
                target_type="retention",
                data={
                    "retention_days": days,
                    "cutoff": cutoff.isoformat(),
                    "action_ids": ids,
                    **counts,
                },
            )
        result.batches += 1
        result.actions += counts["actions"]
        result.reports += counts["reports"]
        result.decisions += counts["decisions"]
        result.webhooks += counts["webhooks"]
        result.action_ids += ids
    return result


def _redact_batch(ids: list[int]) -> dict[str, int]:
    """Replace the payload fields of these actions' rows; only ``.update()``, so nothing
    else about them (status, hashes, times) changes."""
    from approvals.models import Action, Decision, Outbox, Report

    actions = Action.objects.filter(pk__in=ids).update(
        arguments=REDACTED_OBJECT,
        original_arguments=REDACTED_OBJECT,
        evidence=REDACTED_LIST,
        rationale=REDACTED_OBJECT,
    )
    reports = (
        Report.objects.filter(action_id__in=ids)
        .exclude(result__isnull=True)
        .update(result=REDACTED_OBJECT)
    )
    decisions = (
        Decision.objects.filter(action_id__in=ids)
        .exclude(edited_arguments__isnull=True)
        .update(edited_arguments=REDACTED_OBJECT)
    )
    # Webhook bodies owed to the agent repeat the arguments; undelivered ones keep them
    # until delivered or failed.
    webhooks = 0
    owed = Outbox.objects.filter(action_id__in=ids, kind=Outbox.Kind.WEBHOOK).filter(
        Q(delivered_at__isnull=False) | Q(failed_at__isnull=False)
    )
    for row_id, payload in owed.values_list("id", "payload"):
        if (
            isinstance(payload, dict)
            and "arguments" in payload
            and not is_redacted(payload["arguments"])
        ):
            Outbox.objects.filter(pk=row_id).update(
                payload={**payload, "arguments": REDACTED_OBJECT}
            )
            webhooks += 1
    return {"actions": actions, "reports": reports, "decisions": decisions, "webhooks": webhooks}
