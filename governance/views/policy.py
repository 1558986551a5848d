"""The policy forms of an agent's page: its tier, its settings (active, rate limit) and its
tool rules. Each turns into a proposed change for ``governance.actions.propose_change``,
which applies a tightening at once and makes anything else a change request."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from governance.forms import AgentSettingsForm, RemoveToolForm, TierForm, ToolRuleForm
from governance.views.common import form_errors, governed_agent, preview_or_propose


@login_required
@require_POST
def change_tier(request: HttpRequest, slug: str) -> HttpResponse:
    agent = governed_agent(request, slug)
    form = TierForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return redirect("rollout:agent-detail", slug=agent.slug)
    return preview_or_propose(request, agent, form.changes(), form.cleaned_data["reason"])


@login_required
@require_POST
def change_settings(request: HttpRequest, slug: str) -> HttpResponse:
    agent = governed_agent(request, slug)
    form = AgentSettingsForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return redirect("rollout:agent-policy", slug=agent.slug)
    return preview_or_propose(
        request, agent, form.changes(), form.cleaned_data["reason"], section="policy"
    )


@login_required
def rule_form(request: HttpRequest, slug: str, tool: str | None = None) -> HttpResponse:
    """Add a tool rule (no ``tool``) or change one; both go through ``propose_change``."""
    agent = governed_agent(request, slug)
    current = (agent.current_policy.snapshot.get("tools") or {}) if agent.current_policy else {}
    if tool is not None and tool not in current:
        raise Http404("No such tool rule.")
    initial = ToolRuleForm.initial_for(tool, current[tool]) if tool else {"base_risk": "low"}
    form = ToolRuleForm(request.POST or None, initial=initial, fixed_tool=tool)
    if request.method == "POST" and form.is_valid():
        if tool is None and form.cleaned_data["tool"] in current:
            form.add_error("tool", "This tool has a rule; change it from the agent page.")
        else:
            return preview_or_propose(
                request, agent, form.changes(), form.cleaned_data["reason"], section="policy"
            )
    return render(
        request,
        "rollout/rule_form.html",
        {"agent": agent, "form": form, "tool": tool, "current": current.get(tool or "")},
    )


@login_required
@require_POST
def remove_rule(request: HttpRequest, slug: str, tool: str) -> HttpResponse:
    agent = governed_agent(request, slug)
    form = RemoveToolForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return redirect("rollout:agent-policy", slug=agent.slug)
    return preview_or_propose(
        request, agent, {"tools": {tool: None}}, form.cleaned_data["reason"], section="policy"
    )
