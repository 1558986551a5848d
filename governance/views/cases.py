"""Regression cases: an agent's kept cases with their answer under today's policy, keeping
one (posted from an action's trace or a kill switch's page) and retiring one. Thin views
over ``governance.cases``; ``governance.permissions`` decides who may do what."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from core.redirects import next_target
from governance import cases
from governance import permissions as case_perms
from governance.models import RegressionCase
from governance.views.common import agent_or_404, flashing_refusals, form_errors


class KeepCaseForm(forms.Form):
    """The "keep as a case" form of the trace and the incident page. An empty expectation
    means the default (``governance.cases.default_expectation``)."""

    action_id = forms.IntegerField(min_value=1)
    expected = forms.ChoiceField(
        choices=[("", "as decided"), *RegressionCase.Expected.choices], required=False
    )
    note = forms.CharField(max_length=cases.NOTE_MAX, required=False, strip=True)
    switch_id = forms.IntegerField(min_value=1, required=False)


@login_required
@require_GET
def case_list(request: HttpRequest, slug: str) -> HttpResponse:
    """The agent's kept cases, each replayed through today's policy."""
    agent = agent_or_404(request, slug)
    if not case_perms.can_read_cases(request.user, agent):
        raise PermissionDenied("You may not read this agent's cases.")
    report = cases.replay_current(agent)
    return render(
        request,
        "rollout/case_list.html",
        {
            "agent": agent,
            "report": report,
            "can_retire": case_perms.can_retire_case(request.user, agent),
            "shows_requests": case_perms.can_read_case_requests(request.user, agent),
        },
    )


@login_required
@require_POST
def keep_case(request: HttpRequest, slug: str) -> HttpResponse:
    """Keep one of the agent's actions as a case; back to the page it came from on a
    refusal, to the agent's cases when kept."""
    agent = agent_or_404(request, slug)
    if not case_perms.can_keep_case(request.user, agent, from_incident=True):
        # Neither a governor nor an incident owner of the agent: nothing to keep here.
        raise PermissionDenied("You may not keep cases of this agent.")
    back = next_target(request, reverse("rollout:agent-cases", args=[agent.slug]))
    form = KeepCaseForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return redirect(back)
    data = form.cleaned_data
    if not agent.actions.filter(pk=data["action_id"]).exists():
        # Another agent's action posted under this agent's address: as if missing.
        messages.error(request, f"{agent.slug} has no action #{data['action_id']}.")
        return redirect(back)
    with flashing_refusals(request) as refused:
        case = cases.keep_case(
            action_id=data["action_id"],
            user=request.user,
            expected=data["expected"] or None,
            note=data["note"],
            switch_id=data["switch_id"],
        )
    if refused:
        return redirect(back)
    messages.success(
        request,
        f"Kept action #{data['action_id']} as case #{case.pk}: expected to "
        f"{cases.EXPECTED_PHRASES[case.expected]}.",
    )
    if case_perms.can_read_cases(request.user, agent):
        return redirect(f"{reverse('rollout:agent-cases', args=[agent.slug])}#case-{case.pk}")
    return redirect(back)


@login_required
@require_POST
def retire_case(request: HttpRequest, slug: str, case_id: int) -> HttpResponse:
    agent = agent_or_404(request, slug)
    if not case_perms.can_retire_case(request.user, agent):
        raise PermissionDenied("You may not retire this agent's cases.")
    if not RegressionCase.objects.filter(pk=case_id, agent=agent).exists():
        messages.error(request, f"{agent.slug} has no case #{case_id}.")
        return redirect("rollout:agent-cases", slug=agent.slug)
    with flashing_refusals(request) as refused:
        cases.retire_case(case_id=case_id, user=request.user)
    if not refused:
        messages.success(request, f"Retired case #{case_id}.")
    return redirect("rollout:agent-cases", slug=agent.slug)
