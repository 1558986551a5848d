"""The policy forms of an agent's page: its tier, its settings (active, rate limit) and its
tool rules. Each turns into a proposed change for ``governance.actions.propose_change``,
which applies a tightening at once and makes anything else a change request — as does
reverting to a policy version."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from governance import actions
from governance.forms import (
    AgentSettingsForm,
    ClearEnvironmentRuleForm,
    EnvironmentRuleForm,
    EnvironmentTierForm,
    RemoveToolForm,
    RevertForm,
    TierForm,
    ToolRuleForm,
)
from governance.views.common import (
    PREVIEW_STEP,
    SPLIT_STEP,
    answer_proposal,
    flashing_refusals,
    form_errors,
    governed_agent,
    preview_or_propose,
    render_preview,
)
from rollout.environments import UnknownEnvironment, known_environment
from rollout.policy import effective_snapshot


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


@login_required
@require_POST
def change_environment_tier(request: HttpRequest, slug: str) -> HttpResponse:
    """Set or clear the tier an agent has in one environment (preview, then propose)."""
    agent = governed_agent(request, slug)
    form = EnvironmentTierForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return redirect("rollout:agent-policy", slug=agent.slug)
    return preview_or_propose(
        request, agent, form.changes(), form.cleaned_data["reason"], section="policy"
    )


@login_required
def environment_rule_form(request: HttpRequest, slug: str) -> HttpResponse:
    """Set a tool's rule for one environment. ``?environment=&tool=`` starts from what a call
    there gets now (the override, else the agent's own rule); goes through
    ``propose_change`` like every rule."""
    agent = governed_agent(request, slug)
    snapshot = agent.current_policy.snapshot if agent.current_policy else {}
    try:
        environment = known_environment(request.GET.get("environment"))
    except UnknownEnvironment:
        environment = ""
    tool = str(request.GET.get("tool") or "").strip()
    initial: dict = {"base_risk": "low", "environment": environment}
    current = None
    if environment and tool:
        current = (effective_snapshot(snapshot, environment).get("tools") or {}).get(tool)
        if current:
            initial = {**ToolRuleForm.initial_for(tool, current), "environment": environment}
        else:
            initial["tool"] = tool
    form = EnvironmentRuleForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        return preview_or_propose(
            request, agent, form.changes(), form.cleaned_data["reason"], section="policy"
        )
    return render(
        request,
        "rollout/environment_rule_form.html",
        {
            "agent": agent,
            "form": form,
            "tool": tool if current else "",
            "environment": environment,
            "current": current,
        },
    )


@login_required
@require_POST
def clear_environment_rule(request: HttpRequest, slug: str) -> HttpResponse:
    """Clear a tool's override in one environment (preview, then propose)."""
    agent = governed_agent(request, slug)
    form = ClearEnvironmentRuleForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return redirect("rollout:agent-policy", slug=agent.slug)
    return preview_or_propose(
        request, agent, form.changes(), form.cleaned_data["reason"], section="policy"
    )


@login_required
@require_POST
def revert_to_version(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """ "Revert to this version" of a version's page: ``step=preview`` shows what the revert
    would change (``actions.preview_revert``) and writes nothing; ``step=propose`` (or
    ``split``: its tightening parts now) sends it through ``actions.revert_to_version``.
    The change is recomputed from the version on every post, against the live policy."""
    agent = governed_agent(request, slug)
    version = agent.policy_versions.filter(number=number).first()
    if version is None:
        raise Http404("No such policy version.")
    version_page = redirect("rollout:version-detail", slug=agent.slug, number=version.number)
    form = RevertForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return version_page
    reason = form.cleaned_data["reason"]
    step = request.POST.get("step")
    with flashing_refusals(request) as refused:
        if step == PREVIEW_STEP:
            _, _, proposal = actions.preview_revert(agent=agent, number=version.number)
        else:
            result = actions.revert_to_version(
                agent=agent,
                number=version.number,
                user=request.user,
                reason=reason,
                apply_tightening_now=step == SPLIT_STEP,
            )
    if refused:
        return version_page
    if step == PREVIEW_STEP:
        return render_preview(
            request,
            agent,
            proposal,
            reason,
            back=version_page["Location"],
            extra={"revert_of": version},
        )
    return answer_proposal(request, result, redirect("rollout:agent-history", slug=agent.slug))
