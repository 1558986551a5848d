"""What governance data a person may see: change requests, and the role changes shown to
those who approve them. Built on ``rollout.permissions`` and the agent selectors of
``rollout.selectors``; pages, the API, the governance websocket consumer and the refusal
audit all ask here.

Like Zulip's ``access_*`` helpers, a lookup answers None both for "missing" and for "not
yours to see", so nothing reveals what exists."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from audit.models import AuditEvent
from audit.search import EventRow
from audit.verbs import ROLE_AND_ACCESS_VERBS
from core.people import is_active_person
from governance.models import ChangeRequest
from rollout import permissions as agent_perms
from rollout.models import Agent
from rollout.selectors import governance_readable_agents


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
