"""What every governance page shares: finding the agent a person may see (404 otherwise) or
govern (403 otherwise), answering a refusal with a message on the page it redirects to, the
step-up check before handing out a credential, and sending a form's change through the
write path."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts import stepup
from core.errors import Answered, answering_refusals
from governance import actions
from governance.backtest import backtest_delta
from governance.cases import replay_change
from rollout import permissions as agent_perms
from rollout.models import Agent
from rollout.selectors import agent_visible_to


def agent_or_404(request: HttpRequest, slug: str) -> Agent:
    """The agent ``slug`` if the person may see it; 404 whether it is missing or not theirs."""
    agent = agent_visible_to(request.user, slug)
    if agent is None:
        raise Http404("No such agent.")
    return agent


def governed_agent(request: HttpRequest, slug: str) -> Agent:
    """The agent ``slug`` if the person may govern it: 404 if they may not see it, else 403."""
    agent = agent_or_404(request, slug)
    if not agent_perms.can_govern(request.user, agent):
        raise PermissionDenied("You may not govern this agent.")
    return agent


def flashing_refusals(
    request: HttpRequest, *, hide: bool = True
) -> AbstractContextManager[Answered]:
    """A governance page's answer to a refusal in its block: an error message on the page
    it redirects to (with ``hide``, 403 and 404 are the error pages instead; a step-up
    request is shown, so the person can enter a code)."""
    return answering_refusals(
        request, hide=hide, show=lambda message: messages.error(request, message)
    )


def stepped_up(request: HttpRequest, purpose: str) -> bool:
    """Whether ``request`` may hand out a credential: step-up off, or a recent second factor
    (a code posted with the form is verified here). When not, says why."""
    with flashing_refusals(request, hide=False) as refused:
        stepup.require_recent_second_factor(request, purpose=purpose)
    return not refused


PREVIEW_STEP = "preview"
SPLIT_STEP = "split"
CARRIED_OUT = {"csrfmiddlewaretoken", "step", "confirm"}


def section_redirect(agent: Agent, section: str) -> HttpResponse:
    name = {
        "overview": "rollout:agent-detail",
        "policy": "rollout:agent-policy",
        "access": "rollout:agent-access",
    }[section]
    return redirect(name, slug=agent.slug)


def preview_or_propose(
    request: HttpRequest, agent: Agent, changes: dict, reason: str, *, section: str = "overview"
) -> HttpResponse:
    """A change form's answer: with ``step=preview`` the preview (readable diff, direction,
    backtest delta against today's policy) and writes nothing; otherwise the change goes
    through the write path (``step=split``: its tightening parts apply now). The values are
    validated again on every post: the preview's hidden fields are not trusted."""
    step = request.POST.get("step")
    if step == PREVIEW_STEP:
        return preview(request, agent, changes, reason, section=section)
    return propose(
        request,
        agent,
        changes,
        reason,
        apply_tightening_now=step == SPLIT_STEP,
        section=section,
    )


def preview(
    request: HttpRequest, agent: Agent, changes: dict, reason: str, *, section: str = "overview"
) -> HttpResponse:
    """What the change would do, read-only: no audit event, no change request."""
    with flashing_refusals(request) as refused:
        proposal = actions.preview_change(agent=agent, changes=changes)
    if refused:
        return section_redirect(agent, section)
    return render_preview(
        request, agent, proposal, reason, back=section_redirect(agent, section)["Location"]
    )


def render_preview(
    request: HttpRequest,
    agent: Agent,
    proposal: actions.Proposal,
    reason: str,
    *,
    back: str,
    extra: dict | None = None,
) -> HttpResponse:
    """The preview page of ``proposal``: it posts the same form back to this path (minus the
    step) to propose it. ``extra`` adds to the template's context."""
    carried = [
        (name, value)
        for name in request.POST
        if name not in CARRIED_OUT
        for value in request.POST.getlist(name)
    ]
    return render(
        request,
        "rollout/change_preview.html",
        {
            "agent": agent,
            "proposal": proposal,
            "classification": proposal.classification,
            "mixed": proposal.mixed,
            "tightening_changes": proposal.tightening_changes if proposal.mixed else [],
            "delta": backtest_delta(agent, proposal.after) if proposal.changes else None,
            "case_report": replay_change(agent, proposal.after) if proposal.changes else None,
            "carried": carried,
            "reason": reason,
            "post_to": request.path,
            "back": back,
            **(extra or {}),
        },
    )


def propose(
    request: HttpRequest,
    agent: Agent,
    changes: dict,
    reason: str,
    *,
    apply_tightening_now: bool = False,
    section: str = "overview",
) -> HttpResponse:
    """Send a form's change through the write path and say what happened."""
    with flashing_refusals(request) as refused:
        result = actions.propose_change(
            agent=agent,
            user=request.user,
            changes=changes,
            reason=reason,
            apply_tightening_now=apply_tightening_now,
        )
    if refused:
        return section_redirect(agent, section)
    return answer_proposal(request, result, section_redirect(agent, section))


def answer_proposal(
    request: HttpRequest, result: actions.ProposalResult, applied: HttpResponse
) -> HttpResponse:
    """Say what a proposed change did: applied at once (then ``applied``, a redirect), or a
    change request (its page), after its tightening parts when they applied first."""
    if result.applied:
        messages.success(
            request,
            f"Applied at once (it only reduces autonomy): policy version "
            f"{result.policy_version.number} is now current.",
        )
        return applied
    if result.policy_version is not None:
        messages.success(
            request,
            f"The tightening parts applied at once: policy version "
            f"{result.policy_version.number} is now current.",
        )
    messages.info(
        request,
        f"This gives the agent more autonomy, so it is change request "
        f"#{result.change_request.pk}: another governance owner must approve it.",
    )
    return redirect("rollout:change-detail", change_id=result.change_request.pk)


def form_errors(form: Any) -> str:
    """A form's errors as one line, for a message on the page a form redirects to."""
    return "; ".join(
        f"{name}: {' '.join(problems)}" if name != "__all__" else " ".join(problems)
        for name, problems in form.errors.items()
    )
