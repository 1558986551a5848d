"""One kill switch's page: what it was, and the actions it stopped — each of which an
incident owner (or a governor) of its agent may keep as a regression case for the policy
to be checked against (the form posts to governance: ``rollout:case-keep``)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from approvals.kept_cases import actions_stopped_by, may_keep_case
from rollout import permissions as perms
from rollout.models import KillSwitch

MAX_LISTED = 200


@login_required
@require_GET
def switch_detail(request: HttpRequest, switch_id: int) -> HttpResponse:
    """Whoever may read incidents sees global and tool switches, and the switches of the
    agents the incident console shows them (404 otherwise); of the actions a switch
    stopped, only those of such agents."""
    if not perms.can_see_incidents(request.user):
        raise PermissionDenied
    visible = perms.incident_agents(request.user)
    switch = KillSwitch.objects.filter(pk=switch_id).first()
    if switch is None or (
        # An agent's switch is that agent's incident: as if missing to those it is not shown.
        switch.scope == KillSwitch.Scope.AGENT and not visible.filter(slug=switch.target).exists()
    ):
        raise Http404("No such kill switch.")
    stopped = list(actions_stopped_by(switch.pk).filter(agent__in=visible)[: MAX_LISTED + 1])
    rows = [
        {
            "action": action,
            "can_keep": may_keep_case(request.user, action.agent, from_incident=True),
            "keep_prefix": f"keep-{action.pk}",
        }
        for action in stopped[:MAX_LISTED]
    ]
    return render(
        request,
        "incidents/switch_detail.html",
        {"switch": switch, "rows": rows, "truncated": len(stopped) > MAX_LISTED},
    )
