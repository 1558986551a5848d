"""Which agents a person may see, built only on ``rollout.permissions``. Pages, the API and
the websocket consumers all ask here (change requests: ``governance.selectors``).

Like Zulip's ``access_*`` helpers, a lookup answers None both for "missing" and for "not
yours to see", so nothing reveals what exists."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from core.people import is_active_person
from rollout import permissions as agent_perms
from rollout.models import Agent

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
