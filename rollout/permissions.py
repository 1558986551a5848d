"""Who may do what to which agent. Every view, API endpoint, consumer and task asks here.

A permission held through a group (or directly) as a model permission covers every agent;
django-guardian object permissions cover one agent. Superusers hold all of them.

A request made with a personal API token acts as the token's owner *narrowed by the
token's scopes*: ``bind_token_scopes`` (called by the token's authentication class) makes
every permission check on that user object — these functions, and any direct
``user.has_perm`` elsewhere — answer False for a permission outside the scopes. Views ask
``token_scope_allows`` first only to answer with a clear ``token_scope`` error."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from guardian.shortcuts import get_objects_for_user

from config.people import is_active_person
from rollout.models import Agent

REVIEW = "rollout.review_agent"
CRITICAL_APPROVE = "rollout.critical_approve_agent"
GOVERN = "rollout.govern_agent"
KILL = "rollout.kill_agent"
AUDIT = "rollout.audit_agent"


# What a personal token may be allowed to do; each scope unlocks these permissions of its
# owner (and nothing the owner does not hold).
TOKEN_SCOPES = ("decide", "govern", "kill", "read_audit")
SCOPE_PERMISSIONS = {
    "decide": frozenset({REVIEW, CRITICAL_APPROVE}),
    "govern": frozenset({GOVERN}),
    "kill": frozenset({KILL}),
    "read_audit": frozenset({AUDIT, "audit.view_auditevent", "audit.view_sensitive"}),
}
SCOPE_LABELS = {
    "decide": "decide on actions",
    "govern": "governance",
    "kill": "kill switches",
    "read_audit": "read the audit log",
}
_SCOPES_ATTRIBUTE = "airlock_token_scopes"


def token_scopes(subject: Any) -> frozenset[str] | None:
    """The scopes a personal token narrows ``subject`` (a request, a DRF request's ``auth``
    or a user) to; None when it is not a personal-token request (no narrowing)."""
    for candidate in (subject, getattr(subject, "auth", None), getattr(subject, "user", None)):
        scopes = getattr(candidate, _SCOPES_ATTRIBUTE, None)
        if scopes is not None:
            return scopes
    return None


def token_scope_allows(subject: Any, scope: str) -> bool:
    """False only for a personal-token request (or its user) whose token lacks ``scope``;
    sessions are not narrowed."""
    if scope not in SCOPE_PERMISSIONS:
        raise ValueError(f"unknown token scope {scope!r}")
    scopes = token_scopes(subject)
    return scopes is None or scope in scopes


def perm_in_scopes(perm: str, scopes: frozenset[str] | None) -> bool:
    """Whether a token with ``scopes`` may use its owner's ``perm`` (default deny)."""
    if scopes is None:
        return True
    return any(perm in SCOPE_PERMISSIONS[scope] for scope in scopes if scope in SCOPE_PERMISSIONS)


def bind_token_scopes(user: Any, scopes: Any) -> Any:
    """Narrow this ``user`` object (loaded for one request) to a personal token's scopes:
    its ``has_perm`` answers False outside them, superuser or not. Returns the user."""
    bound = frozenset(scope for scope in scopes if scope in SCOPE_PERMISSIONS)
    owner_has_perm = user.has_perm

    def has_perm(perm: str, obj: Any = None) -> bool:
        return perm_in_scopes(perm, bound) and owner_has_perm(perm, obj)

    def has_perms(perm_list: Any, obj: Any = None) -> bool:
        return all(has_perm(perm, obj) for perm in perm_list)

    def has_module_perms(app_label: str) -> bool:
        return False  # no admin or model-level browsing with a token

    setattr(user, _SCOPES_ATTRIBUTE, bound)
    user.has_perm = has_perm
    user.has_perms = has_perms
    user.has_module_perms = has_module_perms
    return user


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


def can_manage_people(user: Any) -> bool:
    """Who may see the People page and disable or re-enable accounts: superusers and holders
    of Django's ``auth.change_user``. Never through a personal token."""
    if not is_active_person(user) or token_scopes(user) is not None:
        return False
    return bool(user.is_superuser or user.has_perm("auth.change_user"))


def can_operate_switch(user: Any, scope: str, target: str) -> bool:
    """Engage or release a kill switch: an agent's needs the kill right on that agent;
    global and tool-wide switches reach every agent, so they need the global right."""
    if scope == "agent":
        agent = Agent.objects.filter(slug=target).first()
        return agent is not None and can_kill(user, agent)
    return can_kill_globally(user)


def can_see_incidents(user: Any) -> bool:
    """Who may read kill switches, their history and drills: anyone who may stop some agent,
    and auditors."""
    return can_kill_globally(user) or agents_for(user, KILL).exists() or can_read_audit(user)
