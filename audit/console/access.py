"""Who may read which part of the audit log. The console's pages and API ask here; the
answer is an ``audit.search.AuditScope`` the log's search and export apply.

- The audit search, export and verification status need ``rollout.audit_agent``
  (``rollout.permissions.audit_scope``, where the right is defined, so the navigation
  below the console asks the same rule): held
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
from rollout.permissions import audit_scope

__all__ = ["AuditScope", "audit_scope", "can_view_trace"]


def can_view_trace(user: Any, action: Any) -> bool:
    """People who may see the action may read its trace and replay."""
    return is_active_person(user) and can_view_action(user, action)
