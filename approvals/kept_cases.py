"""What the layers below governance know of regression cases (``governance.cases``).

Which actions a kill switch stopped: those its sweep cancelled or revoked
(``approvals.actions.stop_actions_in_scope``), as the audit log recorded them — each
``action.cancelled`` / ``action.revoked`` event of the sweep names the switch. Read-only;
the incident page lists them and ``governance.cases`` checks a case kept from an incident
against them.

Who may keep a case: the rule is governance's (``governance.permissions.can_keep_case``);
the pages that offer "keep as a case" below it (the audit console's trace, the incident
page) ask through the ``may_keep_case`` hook, which ``governance`` connects."""

from __future__ import annotations

from django.db.models import QuerySet

from approvals.models import Action
from audit import verbs
from audit.models import AuditEvent
from core.hooks import Hook

may_keep_case = Hook(
    "may_keep_case",
    """may_keep_case(user, agent, *, from_incident: bool = False) -> bool: whether ``user``
    may keep a regression case of ``agent``'s action (``from_incident``: kept from the page
    of a kill switch that stopped it). Only reads.""",
)

STOP_VERBS = (verbs.ACTION_CANCELLED, verbs.ACTION_REVOKED)


def _stop_events(switch_id: int) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(
        verb__in=STOP_VERBS, target_type="action", data__kill_switch=switch_id
    )


def actions_stopped_by(switch_id: int) -> QuerySet[Action]:
    """The actions switch ``switch_id`` stopped, oldest first."""
    ids = [int(target) for target in _stop_events(switch_id).values_list("target_id", flat=True)]
    return Action.objects.filter(pk__in=ids).select_related("agent").order_by("id")


def was_stopped_by(action_id: int, switch_id: int) -> bool:
    return _stop_events(switch_id).filter(target_id=str(action_id)).exists()
