"""Per-agent access on the agent's page: granting or removing one right of one user or group,
after a preview of what it would do."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from governance import access as agent_access
from governance import actions
from governance.forms import AccessChangeForm
from governance.views import agents
from governance.views.common import flashing_refusals, form_errors, governed_agent, propose


@login_required
@require_http_methods(["GET", "POST"])
def access_change(request: HttpRequest, slug: str) -> HttpResponse:
    """Grant or remove one right of one user or group. Without ``confirm`` it only shows
    what the change would do (who gains or loses what, at once or after a second owner);
    confirmed, it goes through the governance write path like any policy change. Read
    (GET), the agent page's access section."""
    if request.method == "GET":
        return agents.agent_detail(request, slug, section="access")
    agent = governed_agent(request, slug)
    form = AccessChangeForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return redirect("rollout:agent-access", slug=agent.slug)
    if request.POST.get("confirm") == "1":
        return propose(
            request, agent, form.changes(), form.cleaned_data["reason"], section="access"
        )
    with flashing_refusals(request) as refused:
        proposal = actions.preview_change(agent=agent, changes=form.changes())
    if refused:
        return redirect("rollout:agent-access", slug=agent.slug)
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
