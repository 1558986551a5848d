"""Dashboard pages: thin views over selectors and ``approvals.actions``."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from approvals.permissions import reviewable_actions, visible_actions
from approvals.states import Status


@login_required
def queue(request: HttpRequest) -> HttpResponse:
    pending = (
        reviewable_actions(request.user).filter(status=Status.PENDING).select_related("agent")[:200]
    )
    return render(request, "approvals/queue.html", {"actions": pending})


@login_required
def action_detail(request: HttpRequest, action_id: int) -> HttpResponse:
    action = visible_actions(request.user).select_related("agent").filter(pk=action_id).first()
    if action is None:
        raise Http404("No such action.")
    return render(request, "approvals/action_detail.html", {"action": action})
