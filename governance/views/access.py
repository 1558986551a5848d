"""Per-agent access on the agent's page: granting or removing one right of one user or group,
after a preview of what it would do."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from governance import access as agent_access
from governance import actions
from governance.forms import AccessChangeForm
from governance.views.common import flashing_refusals, form_errors, governed_agent, propose


@login_required
@require_POST
def access_change(request: HttpRequest, slug: str) -> HttpResponse:
    """Grant or remove one right of one user or group. Without ``confirm`` it only shows
    what the change would do (who gains or loses what, at once or after a second owner);
    confirmed, it goes through the governance write path like any policy change."""
    agent = governed_agent(request, slug)
    form = AccessChangeForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return redirect(reverse("rollout:agent-detail", args=[agent.slug]) + "#access")
    if request.POST.get("confirm") == "1":
        return propose(request, agent, form.changes(), form.cleaned_data["reason"])
    with flashing_refusals(request) as refused:
        proposal = actions.preview_change(agent=agent, changes=form.changes())
    if refused:
        return redirect(reverse("rollout:agent-detail", args=[agent.slug]) + "#access")
    effect = agent_access.describe_effect(
        agent,
        form.cleaned_data["right"],
        form.holder(),
        form.cleaned_data["operation"] == "grant",
    )
    return render(
        request,
        "rollout/access_preview.html",
        {
            "agent": agent,
            "form": form,
            "effect": effect,
            "proposal": proposal,
            "right_label": agent_access.RIGHT_LABELS[form.cleaned_data["right"]],
        },
    )
