"""An agent's credentials: issuing and revoking its bearer tokens and rotating its webhook
secret. A new token or secret is shown once, in the response that made it."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from governance import actions
from governance.forms import TokenForm
from governance.views import agents
from governance.views.common import flashing_refusals, form_errors, governed_agent, stepped_up
from rollout.environments import known_environment


@login_required
@require_http_methods(["GET", "POST"])
def issue_token(request: HttpRequest, slug: str) -> HttpResponse:
    """A new agent token, shown once; needs a recent second factor like approving a
    governance change (when step-up is on). Read (GET), the agent page's tokens section."""
    if request.method == "GET":
        return agents.agent_detail(request, slug, section="tokens")
    agent = governed_agent(request, slug)
    form = TokenForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return redirect("rollout:token-issue", slug=agent.slug)
    if not stepped_up(request, "issue an agent token"):
        return redirect("rollout:token-issue", slug=agent.slug)
    with flashing_refusals(request) as refused:
        token = actions.issue_token(agent=agent, user=request.user, **form.cleaned_data)
    if refused:
        return redirect("rollout:token-issue", slug=agent.slug)
    # Shown once, in this response only; never stored in a message or the session.
    context = {
        "agent": agent,
        "token": token,
        "environment": known_environment(form.cleaned_data["environment"]),
    }
    response = render(request, "rollout/token_issued.html", context)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def rotate_webhook_secret(request: HttpRequest, slug: str) -> HttpResponse:
    """A new webhook secret, shown once; the old one still signs during the grace period.
    Needs a recent second factor like approving a governance change (when step-up is on)."""
    agent = governed_agent(request, slug)
    if not stepped_up(request, "rotate the webhook secret"):
        return redirect("rollout:token-issue", slug=agent.slug)
    with flashing_refusals(request) as refused:
        secret = actions.rotate_webhook_secret(agent=agent, user=request.user)
    if refused:
        return redirect("rollout:token-issue", slug=agent.slug)
    response = render(request, "rollout/webhook_secret.html", {"agent": agent, "secret": secret})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def revoke_token(request: HttpRequest, slug: str, token_id: int) -> HttpResponse:
    agent = governed_agent(request, slug)
    with flashing_refusals(request) as refused:
        record = actions.revoke_token(agent=agent, token_id=token_id, user=request.user)
    if not refused:
        messages.success(request, f"Token {record.prefix}… is revoked.")
    return redirect("rollout:token-issue", slug=agent.slug)
