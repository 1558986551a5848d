"""Shadow labels: an agent's shadowed actions, which its reviewers label "would approve /
would reject" so that agreement with people can be measured before a promotion."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from approvals.states import Status
from governance import actions
from governance.forms import ShadowLabelForm
from governance.models import ShadowLabel
from governance.views.common import agent_or_404, flashing_refusals, form_errors
from rollout import permissions as agent_perms


@login_required
def shadow_actions(request: HttpRequest, slug: str) -> HttpResponse:
    """The agent's shadow actions, for reviewers to label "would approve / would reject"."""
    agent = agent_or_404(request, slug)
    can_label = agent_perms.can_review(request.user, agent)
    shadowed = list(agent.actions.filter(status=Status.SHADOWED).order_by("-created_at")[:100])
    labels = {
        label.action_id: label
        for label in ShadowLabel.objects.filter(action__in=shadowed, reviewer=request.user)
    }
    counts: dict[int, dict[str, int]] = {}
    for action_id, label in ShadowLabel.objects.filter(action__in=shadowed).values_list(
        "action_id", "label"
    ):
        counts.setdefault(action_id, {"would_approve": 0, "would_reject": 0})[label] += 1
    rows = [
        {"action": action, "mine": labels.get(action.pk), "counts": counts.get(action.pk, {})}
        for action in shadowed
    ]
    return render(
        request,
        "rollout/shadow_actions.html",
        {"agent": agent, "rows": rows, "can_label": can_label},
    )


@login_required
@require_POST
def label_shadow_action(request: HttpRequest, slug: str, action_id: int) -> HttpResponse:
    agent = agent_or_404(request, slug)
    if not agent_perms.can_review(request.user, agent):
        raise PermissionDenied("You may not review this agent.")
    if not agent.actions.filter(pk=action_id).exists():
        raise Http404("No such action.")
    form = ShadowLabelForm(request.POST)
    if form.is_valid():
        with flashing_refusals(request) as refused:
            actions.label_shadow_action(
                action_id=action_id, user=request.user, label=form.cleaned_data["label"]
            )
        if not refused:
            messages.success(request, f"Labelled action #{action_id}.")
    else:
        messages.error(request, form_errors(form))
    return redirect("rollout:shadow-actions", slug=agent.slug)
