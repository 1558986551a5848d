"""Who may read which part of the audit log. The console's pages and API ask here; the
answer is an ``audit.search.AuditScope`` the log's search and export apply.

- The audit search, export and verification status need ``rollout.audit_agent``: held
  globally (the auditor role, superusers) it covers every event; held for some agents
  (django-guardian) it covers those agents' events only — never the agent-less ``global``
  partition (kill switches, checkpoints), which belongs to everyone.
- An action's trace and replay follow the action: whoever may see the action (its
  reviewers, its auditors) may see its story (``approvals.permissions.can_view_action``).
"""

from __future__ import annotations

from typing import Any

from approvals.permissions import can_view_action
from audit.search import AuditScope
from core.people import is_active_person
from rollout import permissions as agent_perms


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
