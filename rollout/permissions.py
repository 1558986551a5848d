"""Who may do what to which agent. Every view, API endpoint, consumer and task asks here.

A permission held through a group (or directly) as a model permission covers every agent;
django-guardian object permissions cover one agent. Superusers hold all of them.

A request made with a personal API token acts as the token's owner narrowed by the
token's scopes (``accounts.permissions``): every check here sees only what they allow."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from guardian.shortcuts import get_objects_for_user

from accounts.permissions import perm_in_scopes, token_scopes
from audit.search import AuditScope
from core.people import is_active_person
from rollout.models import Agent

REVIEW = "rollout.review_agent"
CRITICAL_APPROVE = "rollout.critical_approve_agent"
GOVERN = "rollout.govern_agent"
KILL = "rollout.kill_agent"
AUDIT = "rollout.audit_agent"


def has_agent_perm(user: Any, perm: str, agent: Agent) -> bool:
    """True when ``user`` holds ``perm`` for all agents or for this one."""
    if not is_active_person(user):
        return False
    return user.has_perm(perm) or user.has_perm(perm, agent)


def can_review(user: Any, agent: Agent) -> bool:
    return has_agent_perm(user, REVIEW, agent)


def can_approve_critical(user: Any, agent: Agent) -> bool:
    return has_agent_perm(user, CRITICAL_APPROVE, agent)


def can_govern(user: Any, agent: Agent) -> bool:
    return has_agent_perm(user, GOVERN, agent)


def can_kill(user: Any, agent: Agent) -> bool:
    return has_agent_perm(user, KILL, agent)


def can_kill_globally(user: Any) -> bool:
    """Global and tool-wide switches reach every agent, so they need the global right."""
    return is_active_person(user) and user.has_perm(KILL)


def can_read_audit(user: Any, agent: Agent | None = None) -> bool:
    if not is_active_person(user):
        return False
    if user.has_perm(AUDIT):
        return True
    return agent is not None and user.has_perm(AUDIT, agent)


def agents_for(user: Any, perm: str) -> QuerySet[Agent]:
    """The agents ``user`` holds ``perm`` on (all of them for a global holder)."""
    if not is_active_person(user) or not perm_in_scopes(perm, token_scopes(user)):
        return Agent.objects.none()
    if user.has_perm(perm):
        return Agent.objects.all()
    # guardian's query reads the grant tables directly (not ``has_perm``): scope checked above.
    return get_objects_for_user(user, perm, klass=Agent, accept_global_perms=False)


def reviewable_agents(user: Any) -> QuerySet[Agent]:
    return agents_for(user, REVIEW)


def can_see_agent(user: Any, agent: Agent) -> bool:
    """Any role on the agent lets a person see it."""
    return any(has_agent_perm(user, perm, agent) for perm in (REVIEW, GOVERN, KILL, AUDIT))


def can_operate_switch(user: Any, scope: str, target: str) -> bool:
    """Engage or release a kill switch: an agent's needs the kill right on that agent;
    global and tool-wide switches reach every agent, so they need the global right. An agent
    that does not exist is the global right's to ask about (the write path then refuses it
    as an unknown target); to anyone else it is not theirs to stop."""
    if scope == "agent":
        agent = Agent.objects.filter(slug=target).first()
        if agent is None:
            return can_kill_globally(user)
        return can_kill(user, agent)
    return can_kill_globally(user)


def can_see_incidents(user: Any) -> bool:
    """Who may read kill switches, their history and drills: anyone who may stop some agent,
    and auditors."""
    return can_kill_globally(user) or agents_for(user, KILL).exists() or can_read_audit(user)


def incident_agents(user: Any) -> QuerySet:
    """The agents whose state the incident console shows ``user`` (and whose switch events
    its socket forwards): every agent for the global kill right and auditors, otherwise the
    agents the person may stop."""
    if can_kill_globally(user) or can_read_audit(user):
        return Agent.objects.all()
    return agents_for(user, KILL)


def audit_scope(user: Any) -> AuditScope | None:
    """What ``user`` may read of the audit log, or None when nothing."""
    if not is_active_person(user):
        return None
    if can_read_audit(user):
        return AuditScope(everything=True)
    slugs = frozenset(agents_for(user, AUDIT).values_list("slug", flat=True))
    return AuditScope(everything=False, agent_slugs=slugs) if slugs else None
