"""Who may see and act on actions. Built on ``rollout.permissions``; views, the API,
consumers and tasks ask here."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from approvals.models import Action
from core.people import is_active_person, is_agent
from rollout import permissions as agent_perms


def visible_actions(user: Any, queryset: QuerySet[Action] | None = None) -> QuerySet[Action]:
    """Actions ``user`` may see: an agent its own, submitted in its token's environment
    (an unbound token sees its unbound ones); a person those of agents they review or audit
    (everything for a global auditor)."""
    queryset = Action.objects.all() if queryset is None else queryset
    if is_agent(user):
        return queryset.filter(agent=user.agent, environment=user.token.environment)
    if not is_active_person(user):
        return queryset.none()
    if user.has_perm(agent_perms.REVIEW) or user.has_perm(agent_perms.AUDIT):
        return queryset
    agent_ids = set(agent_perms.agents_for(user, agent_perms.REVIEW).values_list("id", flat=True))
    agent_ids |= set(agent_perms.agents_for(user, agent_perms.AUDIT).values_list("id", flat=True))
    return queryset.filter(agent_id__in=agent_ids)


def reviewable_actions(user: Any, queryset: QuerySet[Action] | None = None) -> QuerySet[Action]:
    """Actions ``user`` may decide on (their queue's population)."""
    queryset = Action.objects.all() if queryset is None else queryset
    if not is_active_person(user):
        return queryset.none()
    if user.has_perm(agent_perms.REVIEW):
        return queryset
    return queryset.filter(agent__in=agent_perms.reviewable_agents(user))


def can_view_action(user: Any, action: Action) -> bool:
    if is_agent(user):
        return action.agent_id == user.agent.pk and action.environment == user.token.environment
    return agent_perms.can_review(user, action.agent) or agent_perms.can_read_audit(
        user, action.agent
    )
