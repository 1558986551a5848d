"""Who may read which part of the audit log. Views, the API and the export ask here.

- The audit search, export and verification status need ``rollout.audit_agent``: held
  globally (the auditor role, superusers) it covers every event; held for some agents
  (django-guardian) it covers those agents' events only — never the agent-less ``global``
  partition (kill switches, checkpoints), which belongs to everyone.
- An action's trace and replay follow the action: whoever may see the action (its
  reviewers, its auditors) may see its story (``approvals.permissions.can_view_action``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from approvals.permissions import can_view_action
from audit.chain import partition_agent
from core.people import is_active_person
from rollout import permissions as agent_perms


@dataclass(frozen=True)
class AuditScope:
    """The events one person may read: all, or those of some agents."""

    everything: bool
    agent_slugs: frozenset[str] = frozenset()

    def restrict(self, queryset: QuerySet) -> QuerySet:
        if self.everything:
            return queryset
        return queryset.filter(agent_slug__in=sorted(self.agent_slugs))

    def allows_partition(self, partition: str) -> bool:
        """An agent's chain stripes (``slug#1``…) belong to that agent."""
        return self.everything or partition_agent(partition) in self.agent_slugs

    def allows_agent(self, slug: str) -> bool:
        return self.everything or slug in self.agent_slugs


def audit_scope(user: Any) -> AuditScope | None:
    """What ``user`` may read of the audit log, or None when nothing."""
    if not is_active_person(user):
        return None
    if agent_perms.can_read_audit(user):
        return AuditScope(everything=True)
    slugs = frozenset(
        agent_perms.agents_for(user, agent_perms.AUDIT).values_list("slug", flat=True)
    )
    return AuditScope(everything=False, agent_slugs=slugs) if slugs else None


def can_view_trace(user: Any, action: Any) -> bool:
    """People who may see the action may read its trace and replay."""
    return is_active_person(user) and can_view_action(user, action)
