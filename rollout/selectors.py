"""What governance data a person may see, built only on ``rollout.permissions``. Pages,
the API and the governance websocket consumer all ask here.

Like Zulip's ``access_*`` helpers, a lookup answers None both for "missing" and for "not
yours to see", so nothing reveals what exists."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from audit.models import AuditEvent
from audit.search import EventRow
from audit.verbs import ROLE_AND_ACCESS_VERBS
from core.people import is_active_person
from rollout import permissions as agent_perms
from rollout.models import Agent, ChangeRequest

SEE_PERMS = (agent_perms.REVIEW, agent_perms.GOVERN, agent_perms.KILL, agent_perms.AUDIT)


def _agents_with_any(user: Any, perms: tuple[str, ...]) -> QuerySet[Agent]:
    if not is_active_person(user):
        return Agent.objects.none()
    if any(user.has_perm(perm) for perm in perms):
        return Agent.objects.all()
    ids: set[int] = set()
    for perm in perms:
        ids |= set(agent_perms.agents_for(user, perm).values_list("id", flat=True))
    return Agent.objects.filter(id__in=ids)


def visible_agents(user: Any) -> QuerySet[Agent]:
    """Agents on which ``user`` holds any role: they may read their governance pages."""
    return _agents_with_any(user, SEE_PERMS)


def governance_readable_agents(user: Any) -> QuerySet[Agent]:
    """Agents whose change requests ``user`` may read: governance owners and auditors."""
    return _agents_with_any(user, (agent_perms.GOVERN, agent_perms.AUDIT))


def agent_visible_to(user: Any, slug: str) -> Agent | None:
    """The agent ``slug`` when ``user`` may see it, else None."""
    return visible_agents(user).select_related("tier", "current_policy").filter(slug=slug).first()


def visible_change_requests(user: Any) -> QuerySet[ChangeRequest]:
    return (
        ChangeRequest.objects.filter(agent__in=governance_readable_agents(user))
        .select_related("agent", "author", "closed_by", "applied_version")
        .prefetch_related("approvals__approver")
    )


def change_request_visible_to(user: Any, change_request_id: int) -> ChangeRequest | None:
    return visible_change_requests(user).filter(pk=change_request_id).first()


def can_read_governance(user: Any, agent: Agent) -> bool:
    return is_active_person(user) and (
        agent_perms.can_govern(user, agent) or agent_perms.can_read_audit(user, agent)
    )


RECENT_ROLE_CHANGES = 8


def recent_role_changes(user: Any, limit: int = RECENT_ROLE_CHANGES) -> list[EventRow] | None:
    """The last role, permission and account changes (``audit.verbs.ROLE_AND_ACCESS_VERBS``)
    for people who govern every agent (the governance owner role, superusers); None for
    anyone else. Who holds which role decides who approves governance changes, so those who
    approve them see it change."""
    if not is_active_person(user) or not user.has_perm(agent_perms.GOVERN):
        return None
    events = AuditEvent.objects.filter(verb__in=ROLE_AND_ACCESS_VERBS).order_by("-pk")[:limit]
    return [EventRow.of(event) for event in events]
