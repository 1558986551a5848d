"""Change requests: the list, one request with its diff, approvals, backtest and readiness,
and approving, rejecting, withdrawing and editing it. Someone who may not read an agent's
governance gets 404 for its requests."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts import stepup
from core.errors import answering_refusals
from governance import actions
from governance.backtest import backtest_change, backtest_delta
from governance.cases import replay_change
from governance.forms import (
    ApproveChangeForm,
    EditChangeForm,
    RejectChangeForm,
    WithdrawChangeForm,
)
from governance.models import ChangeRequest
from governance.readiness import compute_readiness
from governance.selectors import change_request_visible_to, visible_change_requests
from governance.views.common import flashing_refusals, form_errors
from rollout import permissions as agent_perms


@login_required
@require_GET
def change_list(request: HttpRequest) -> HttpResponse:
    requests_ = visible_change_requests(request.user)
    status = request.GET.get("status", "open")
    if status in ChangeRequest.Status.values:
        requests_ = requests_.filter(status=status)
    else:
        status = "all"
    rows = [
        {
            "change_request": cr,
            "changes": actions.changes_of(cr),
            "approvals": len(actions.current_approvals(cr)),
        }
        for cr in requests_[:200]
    ]
    context = {
        "rows": rows,
        "status": status,
        "statuses": ["open", "applied", "rejected", "withdrawn"],
    }
    if request.GET.get("partial"):
        # The live region's re-read (static/live.js): the fragment only, marked as such.
        response = render(request, "rollout/_change_list.html", context)
        response["X-Airlock-Fragment"] = "changes"
        return response
    return render(request, "rollout/change_list.html", context)


def _change_or_404(request: HttpRequest, change_id: int) -> ChangeRequest:
    change_request = change_request_visible_to(request.user, change_id)
    if change_request is None:
        raise Http404("No such change request.")
    return change_request


@login_required
@require_GET
def change_detail(request: HttpRequest, change_id: int) -> HttpResponse:
    change_request = _change_or_404(request, change_id)
    user = request.user
    agent = change_request.agent
    is_open = change_request.is_open
    refusal = actions.approval_refusal(change_request, user) if is_open else None
    backtest = None
    if is_open and ("tier" in change_request.after or "tools" in change_request.after):
        backtest = backtest_change(agent, change_request.after, days=14)
    approvals = list(change_request.approvals.select_related("approver"))
    context = {
        "change_request": change_request,
        "agent": agent,
        "changes": actions.changes_of(change_request),
        "approvals": approvals,
        "current_approvals": [
            a for a in approvals if a.revision == change_request.revision and not a.voided
        ],
        "stale": is_open and actions.is_stale(change_request),
        "can_approve": is_open and refusal is None,
        "approve_refusal": refusal[1] if refusal and is_open else "",
        "can_reject": is_open
        and agent_perms.can_govern(user, agent)
        and change_request.author_id != user.pk,
        "is_author": change_request.author_id == user.pk,
        "approve_form": ApproveChangeForm(initial={"revision": change_request.revision}),
        "reject_form": RejectChangeForm(),
        "withdraw_form": WithdrawChangeForm(),
        "backtest": backtest,
        # Access decides who governs, not what the gate answers: no replay for it alone.
        "delta": backtest_delta(agent, change_request.after)
        if is_open and set(change_request.after) - {"access"}
        else None,
        "readiness": compute_readiness(agent) if "tier" in change_request.after else None,
        # The kept cases the change would answer differently (open requests: the live
        # policy is the "today" they are compared with).
        "case_report": replay_change(agent, change_request.after) if is_open else None,
    }
    return render(request, "rollout/change_detail.html", context)


def _change_action(request: HttpRequest, change_id: int, run: Any, done: str) -> HttpResponse:
    change_request = _change_or_404(request, change_id)
    with flashing_refusals(request) as refused:
        run(change_request)
    if not refused:
        messages.success(request, done)
    return redirect("rollout:change-detail", change_id=change_request.pk)


@login_required
@require_POST
def approve_change(request: HttpRequest, change_id: int) -> HttpResponse:
    form = ApproveChangeForm(request.POST)
    if not form.is_valid():
        _change_or_404(request, change_id)
        messages.error(request, form_errors(form))
        return redirect("rollout:change-detail", change_id=change_id)
    _change_or_404(request, change_id)
    with flashing_refusals(request, hide=False) as refused:
        stepup.require_recent_second_factor(request, purpose="approve a governance change")
    if refused:
        return redirect("rollout:change-detail", change_id=change_id)

    def run(change_request: ChangeRequest) -> None:
        result = actions.approve_change_request(
            change_request_id=change_request.pk,
            user=request.user,
            revision=form.cleaned_data["revision"],
            comment=form.cleaned_data["comment"],
        )
        if result.status == ChangeRequest.Status.APPLIED:
            messages.success(
                request,
                f"Applied: policy version {result.applied_version.number} of "
                f"{result.agent.slug} is now current.",
            )

    return _change_action(request, change_id, run, "Approval recorded.")


@login_required
@require_POST
def reject_change(request: HttpRequest, change_id: int) -> HttpResponse:
    form = RejectChangeForm(request.POST)
    if not form.is_valid():
        _change_or_404(request, change_id)
        messages.error(request, form_errors(form))
        return redirect("rollout:change-detail", change_id=change_id)
    return _change_action(
        request,
        change_id,
        lambda cr: actions.reject_change_request(
            change_request_id=cr.pk, user=request.user, comment=form.cleaned_data["comment"]
        ),
        "Rejected.",
    )


@login_required
@require_POST
def withdraw_change(request: HttpRequest, change_id: int) -> HttpResponse:
    form = WithdrawChangeForm(request.POST)
    form.is_valid()
    return _change_action(
        request,
        change_id,
        lambda cr: actions.withdraw_change_request(
            change_request_id=cr.pk,
            user=request.user,
            comment=form.cleaned_data.get("comment", ""),
        ),
        "Withdrawn.",
    )


@login_required
def edit_change(request: HttpRequest, change_id: int) -> HttpResponse:
    change_request = _change_or_404(request, change_id)
    if change_request.author_id != request.user.pk or not agent_perms.can_govern(
        request.user, change_request.agent
    ):
        raise PermissionDenied("Only the author may edit a change request.")
    if not change_request.is_open:
        messages.error(request, f"This change request is {change_request.status}.")
        return redirect("rollout:change-detail", change_id=change_request.pk)
    initial = {
        "changes": json.dumps(
            actions.proposal_as_input(change_request.after), indent=2, sort_keys=True
        ),
        "reason": change_request.reason,
        "required_approvals": change_request.required_approvals,
    }
    form = EditChangeForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        with answering_refusals(request, hide=True) as refused:
            actions.edit_change_request(
                change_request_id=change_request.pk,
                user=request.user,
                changes=form.cleaned_data["changes"],
                reason=form.cleaned_data["reason"],
                required_approvals=form.cleaned_data["required_approvals"],
            )
        if refused.refusal:
            form.add_error(None, refused.refusal.detail)
            for name, problems in refused.refusal.fields.items():
                form.add_error(None, f"{name}: {' '.join(problems)}")
        else:
            messages.success(request, "Edited: earlier approvals no longer count.")
            return redirect("rollout:change-detail", change_id=change_request.pk)
    return render(
        request,
        "rollout/change_edit.html",
        {"change_request": change_request, "form": form, "agent": change_request.agent},
    )
