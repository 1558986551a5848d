"""Where each person lands and what the navigation offers them.

Each role has a home: an incident owner the incident console, a reviewer the queue, a
governance owner the change requests, an auditor the audit log. A person with several roles
lands on the first of those they hold, in that order, unless they chose another home in
their profile (``accounts.preferences``, which stores only a key: the choice is checked
here, against what the person may open now). The navigation shows only the pages the
person may open — asked of the same permission functions the pages ask.

Pages of other apps are found by URL name (none is imported), so a page that moves keeps
its link as long as its name resolves; a name that does not resolve is left out."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.functional import SimpleLazyObject

from accounts.permissions import can_manage_people
from accounts.preferences import chosen_home
from core.people import is_active_person
from rollout import permissions as agent_perms
from rollout.permissions import audit_scope

# A role's home, in the order a person with several roles lands: the first they hold.
INCIDENTS, QUEUE, CHANGES, AUDIT = "incidents", "queue", "changes", "audit"
HOME_ORDER = (INCIDENTS, QUEUE, CHANGES, AUDIT)


def _url(*names: str) -> str:
    """The path of the first of ``names`` that resolves, or "" when none does."""
    for name in names:
        try:
            return reverse(name)
        except NoReverseMatch:
            continue
    return ""


@dataclass(frozen=True)
class Link:
    key: str
    label: str
    url: str
    # A home's one-line description, shown where a person chooses their home.
    description: str = ""


class Access:
    """What one person may open, each answer asked at most once per request."""

    def __init__(self, user: Any) -> None:
        self.user = user
        self.person = is_active_person(user)
        self._held: dict[str, bool] = {}

    def _holds(self, perm: str) -> bool:
        """Whether the person holds ``perm`` on every agent (a role) or on some agent."""
        if not self.person:
            return False
        if perm not in self._held:
            self._held[perm] = (
                self.user.has_perm(perm) or agent_perms.agents_for(self.user, perm).exists()
            )
        return self._held[perm]

    @property
    def kills(self) -> bool:
        """The incident owner's role: may stop some agent."""
        return self._holds(agent_perms.KILL)

    @property
    def reviews(self) -> bool:
        return self._holds(agent_perms.REVIEW)

    @property
    def governs(self) -> bool:
        return self._holds(agent_perms.GOVERN)

    @cached_property
    def audits(self) -> bool:
        """May open the audit log (``rollout.permissions.audit_scope``, as the page asks)."""
        return self.person and audit_scope(self.user) is not None

    @property
    def sees_actions(self) -> bool:
        """Reviewers and auditors see actions (``approvals.permissions.visible_actions``)."""
        return self.reviews or self._holds(agent_perms.AUDIT)

    @property
    def sees_agents(self) -> bool:
        """Any role on an agent shows it (``rollout.selectors.visible_agents``)."""
        return any(
            map(
                self._holds,
                (agent_perms.REVIEW, agent_perms.GOVERN, agent_perms.KILL, agent_perms.AUDIT),
            )
        )

    @property
    def reads_changes(self) -> bool:
        """Governance owners and auditors (``rollout.selectors.governance_readable_agents``)."""
        return self._holds(agent_perms.GOVERN) or self._holds(agent_perms.AUDIT)

    @cached_property
    def sees_incidents(self) -> bool:
        """As the incident console asks (``rollout.permissions.can_see_incidents``)."""
        return agent_perms.can_see_incidents(self.user)

    @cached_property
    def manages_people(self) -> bool:
        return can_manage_people(self.user)

    # --- homes ------------------------------------------------------------------------

    def _home_links(self) -> dict[str, Link]:
        return {
            INCIDENTS: Link(
                INCIDENTS,
                "Incidents",
                _url("incidents:incidents", "incidents"),
                "Kill switches, what they stopped, drills.",
            ),
            QUEUE: Link(QUEUE, "Queue", _url("queue"), "Pending actions waiting for you."),
            CHANGES: Link(
                CHANGES,
                "Changes",
                _url("governance:change-list", "rollout:change-list"),
                "Open governance change requests.",
            ),
            AUDIT: Link(
                AUDIT, "Audit", _url("audit-search"), "Search, export and verify the audit log."
            ),
        }

    def _holds_role(self, key: str) -> bool:
        return {
            INCIDENTS: lambda: self.kills,
            QUEUE: lambda: self.reviews,
            CHANGES: lambda: self.governs,
            AUDIT: lambda: self.audits,
        }[key]()

    def _may_open_home(self, key: str) -> bool:
        return {
            INCIDENTS: lambda: self.sees_incidents,
            QUEUE: lambda: self.reviews,
            CHANGES: lambda: self.reads_changes,
            AUDIT: lambda: self.audits,
        }[key]()

    @cached_property
    def homes(self) -> list[Link]:
        """The homes this person may choose (pages they may open), in role order."""
        links = self._home_links()
        return [links[key] for key in HOME_ORDER if links[key].url and self._may_open_home(key)]

    @cached_property
    def default_home(self) -> Link:
        """The first of incident owner, reviewer, governance owner, auditor they hold; the
        queue for someone holding none (it says they review no agents)."""
        links = self._home_links()
        for key in HOME_ORDER:
            if links[key].url and self._holds_role(key):
                return links[key]
        return links[QUEUE]

    @cached_property
    def chosen_home(self) -> str:
        return chosen_home(self.user) if self.person else ""

    @cached_property
    def home(self) -> Link:
        """Where ``/`` sends the person: their choice while they may still open it, else
        their default."""
        for link in self.homes:
            if link.key == self.chosen_home:
                return link
        return self.default_home

    # --- navigation ---------------------------------------------------------------------

    @cached_property
    def navigation(self) -> list[Link]:
        """The main navigation: only pages this person may open."""
        if not self.person:
            return []
        offered = [
            ("queue", "Queue", ("queue",), self.reviews),
            ("decided", "Decided", ("decided",), self.sees_actions),
            ("agents", "Agents", ("governance:agent-list", "rollout:agent-list"), self.sees_agents),
            (
                "changes",
                "Changes",
                ("governance:change-list", "rollout:change-list"),
                self.reads_changes,
            ),
            ("incidents", "Incidents", ("incidents:incidents", "incidents"), self.sees_incidents),
            ("audit", "Audit", ("audit-search",), self.audits),
            ("people", "People", ("people",), self.manages_people),
        ]
        links = []
        for key, label, names, may_open in offered:
            if may_open and (url := _url(*names)):
                links.append(Link(key, label, url))
        return links


def access_of(request: HttpRequest) -> Access:
    """The request's ``Access``, built once per request."""
    access = getattr(request, "_airlock_access", None)
    if access is None or access.user is not request.user:
        access = Access(request.user)
        request._airlock_access = access  # type: ignore[attr-defined]
    return access


def navigation(request: HttpRequest) -> dict[str, Any]:
    """Template context processor: ``airlock_access`` (lazy: a page that never shows the
    navigation asks nothing)."""
    return {"airlock_access": SimpleLazyObject(lambda: access_of(request))}
