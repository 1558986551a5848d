"""Governance pages: thin views over ``rollout.selectors`` (what a person may see) and
``rollout.governance`` (every change). Someone who may not see an agent or a change request
gets 404; someone who may see it but not change it gets 403."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts import stepup
from approvals.states import Status
from core.errors import Answered, answering_refusals
from rollout import access as agent_access
from rollout import charts, governance
from rollout import permissions as agent_perms
from rollout.backtest import backtest_change
from rollout.forms import (
    AccessChangeForm,
    AgentSettingsForm,
    ApproveChangeForm,
    BacktestForm,
    EditChangeForm,
    RegisterAgentForm,
    RejectChangeForm,
    RemoveToolForm,
    ShadowLabelForm,
    TierForm,
    TokenForm,
    ToolRuleForm,
    WithdrawChangeForm,
)
from rollout.metrics import daily_metrics, pending_counts
from rollout.models import Agent, ChangeRequest, KillSwitch, ShadowLabel, Tier
from rollout.policy_diff import diff_policies
from rollout.readiness import compute_readiness
from rollout.selectors import (
    agent_visible_to,
    can_read_governance,
    change_request_visible_to,
    recent_role_changes,
    visible_agents,
    visible_change_requests,
)

SPARK_DAYS = 14
CHART_DAYS = 30


def _agent_or_404(request: HttpRequest, slug: str) -> Agent:
    agent = agent_visible_to(request.user, slug)
    if agent is None:
        raise Http404("No such agent.")
    return agent


def _governed_agent(request: HttpRequest, slug: str) -> Agent:
    agent = _agent_or_404(request, slug)
    if not agent_perms.can_govern(request.user, agent):
        raise PermissionDenied("You may not govern this agent.")
    return agent


def _flashing_refusals(
    request: HttpRequest, *, hide: bool = True
) -> AbstractContextManager[Answered]:
    """A governance page's answer to a refusal in its block: an error message on the page
    it redirects to (with ``hide``, 403 and 404 are the error pages instead; a step-up
    request is shown, so the person can enter a code)."""
    return answering_refusals(
        request, hide=hide, show=lambda message: messages.error(request, message)
    )


def _stepped_up(request: HttpRequest, purpose: str) -> bool:
    """Whether ``request`` may hand out a credential: step-up off, or a recent second factor
    (a code posted with the form is verified here). When not, says why."""
    with _flashing_refusals(request, hide=False) as refused:
        stepup.require_recent_second_factor(request, purpose=purpose)
    return not refused


def _propose(request: HttpRequest, agent: Agent, changes: dict, reason: str) -> HttpResponse:
    """Send a form's change through the write path and say what happened."""
    with _flashing_refusals(request) as refused:
        result = governance.propose_change(
            agent=agent, user=request.user, changes=changes, reason=reason
        )
    if refused:
        return redirect("rollout:agent-detail", slug=agent.slug)
    if result.applied:
        messages.success(
            request,
            f"Applied at once (it only reduces autonomy): policy version "
            f"{result.policy_version.number} is now current.",
        )
        return redirect("rollout:agent-detail", slug=agent.slug)
    messages.info(
        request,
        f"This gives the agent more autonomy, so it is change request "
        f"#{result.change_request.pk}: another governance owner must approve it.",
    )
    return redirect("rollout:change-detail", change_id=result.change_request.pk)


# --- agents -------------------------------------------------------------------------------


def _switch_state(agents: list[Agent]) -> dict[str, KillSwitch]:
    engaged = KillSwitch.objects.filter(released_at__isnull=True, is_drill=False)
    by_slug: dict[str, KillSwitch] = {}
    global_switch = None
    for switch in engaged:
        if switch.scope == KillSwitch.Scope.GLOBAL:
            global_switch = global_switch or switch
        elif switch.scope == KillSwitch.Scope.AGENT:
            by_slug.setdefault(switch.target, switch)
    return {
        agent.slug: switch
        for agent in agents
        if (switch := by_slug.get(agent.slug) or global_switch) is not None
    }


@login_required
@require_GET
def agent_list(request: HttpRequest) -> HttpResponse:
    agents = list(visible_agents(request.user).select_related("tier", "current_policy"))
    ids = [agent.pk for agent in agents]
    metrics = daily_metrics(ids, days=SPARK_DAYS)
    pending = pending_counts(ids)
    switches = _switch_state(agents)
    open_changes = dict.fromkeys(ids, 0)
    for agent_id in ChangeRequest.objects.filter(
        agent_id__in=ids, status=ChangeRequest.Status.OPEN
    ).values_list("agent_id", flat=True):
        open_changes[agent_id] += 1
    rows = []
    for agent in agents:
        days = metrics[agent.pk]
        rows.append(
            {
                "agent": agent,
                "pending": pending.get(agent.pk, 0),
                "switch": switches.get(agent.slug),
                "open_changes": open_changes[agent.pk],
                "total": sum(day.total for day in days),
                "sparks": [
                    charts.sparkline(
                        [day.total for day in days],
                        name="actions",
                        label=f"{agent.slug}: actions per day, last {SPARK_DAYS} days",
                    ),
                    charts.sparkline(
                        [day.approval_rate for day in days],
                        name="approval_rate",
                        y_max=1,
                        label=f"{agent.slug}: approval rate per day",
                    ),
                    charts.sparkline(
                        [day.rejection_rate for day in days],
                        name="rejection_rate",
                        y_max=1,
                        label=f"{agent.slug}: rejection rate per day",
                    ),
                    charts.sparkline(
                        [day.failure_rate for day in days],
                        name="failure_rate",
                        y_max=1,
                        label=f"{agent.slug}: execution-failure rate per day",
                    ),
                ],
            }
        )
    return render(
        request,
        "rollout/agent_list.html",
        {
            "rows": rows,
            "days": SPARK_DAYS,
            "can_register": governance.can_register_agents(request.user),
            "role_changes": recent_role_changes(request.user),
            "audit_links": agent_perms.can_read_audit(request.user),
        },
    )


@login_required
def agent_register(request: HttpRequest) -> HttpResponse:
    if not governance.can_register_agents(request.user):
        raise PermissionDenied("You may not register agents.")
    form = RegisterAgentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with answering_refusals(request) as refused:
            agent = governance.register(user=request.user, **form.cleaned_data)
        if refused.refusal:
            for name, problems in refused.refusal.fields.items():
                for problem in problems:
                    form.add_error(name if name in form.fields else None, problem)
            if not refused.refusal.fields:
                form.add_error(None, refused.refusal.detail)
        else:
            messages.success(
                request,
                f"Registered {agent.slug} at tier {agent.tier.name} with no tools. "
                "Add tool rules and promote it through change requests.",
            )
            return redirect("rollout:agent-detail", slug=agent.slug)
    return render(request, "rollout/agent_register.html", {"form": form})


def _charts(agent: Agent) -> dict[str, Any]:
    days = daily_metrics([agent.pk], days=CHART_DAYS)[agent.pk]
    dates = [day.day for day in days]
    outcome_series = [
        ("allowed", "allowed", [d.outcomes["allowed"] for d in days]),
        ("approved", "approved", [d.outcomes["approved"] for d in days]),
        ("rejected", "rejected", [d.outcomes["rejected"] for d in days]),
        ("pending", "pending", [d.outcomes["pending"] for d in days]),
        ("expired", "expired/cancelled", [d.outcomes["expired"] for d in days]),
        ("denied", "denied", [d.outcomes["denied"] for d in days]),
        ("shadowed", "shadowed", [d.outcomes["shadowed"] for d in days]),
    ]
    waits = [None if d.decision_seconds is None else d.decision_seconds / 60 for d in days]
    return {
        "days": CHART_DAYS,
        "outcomes": charts.stacked_bars(
            dates, outcome_series, label=f"{agent.slug}: actions per day by outcome"
        ),
        "decision_time": charts.line_chart(
            dates,
            [("decision_minutes", "mean minutes to a decision", waits)],
            label=f"{agent.slug}: time to decision per day",
            y_unit=" min",
        ),
        "rates": charts.line_chart(
            dates,
            [
                ("rejection_rate", "rejection rate", [d.rejection_rate for d in days]),
                ("failure_rate", "execution-failure rate", [d.failure_rate for d in days]),
            ],
            label=f"{agent.slug}: rejection and failure rates per day",
            y_max=1,
            y_unit="%",
        ),
        "totals": {name: sum(values) for name, _, values in outcome_series},
    }


def _version_diff(agent: Agent, request: HttpRequest) -> dict[str, Any] | None:
    """The diff between the versions ``?diff_from=`` and ``?diff_to=`` (default: the current
    one and the one before it)."""
    newest = agent.current_policy.number if agent.current_policy else None
    if newest is None:
        return None
    try:
        to_number = int(request.GET.get("diff_to") or newest)
        from_number = int(request.GET.get("diff_from") or max(to_number - 1, 1))
    except ValueError:
        return None
    versions = {
        v.number: v for v in agent.policy_versions.filter(number__in=(from_number, to_number))
    }
    old, new = versions.get(from_number), versions.get(to_number)
    if old is None or new is None:
        return None
    return {"from": old, "to": new, "diff": diff_policies(old.snapshot, new.snapshot)}


def _backtest(agent: Agent, request: HttpRequest) -> tuple[BacktestForm, Any]:
    if "backtest_tier" not in request.GET:
        return BacktestForm(initial={"days": 14}), None
    form = BacktestForm(request.GET)
    if not form.is_valid():
        return form, None
    tier = Tier.objects.get(name=form.cleaned_data["backtest_tier"])
    result = backtest_change(agent, {"tier": tier.as_policy()}, days=form.cleaned_data["days"])
    return form, {"tier": tier, "result": result}


@login_required
@require_GET
def agent_detail(request: HttpRequest, slug: str) -> HttpResponse:
    agent = _agent_or_404(request, slug)
    user = request.user
    can_govern = agent_perms.can_govern(user, agent)
    snapshot = agent.current_policy.snapshot if agent.current_policy else {}
    tools = sorted((snapshot.get("tools") or {}).items())
    rules = [
        {"tool": tool, "rule": rule, "limits": rule.get("argument_limits") or []}
        for tool, rule in tools
    ]
    backtest_form, backtest = _backtest(agent, request)
    versions = list(agent.policy_versions.order_by("-number").defer("snapshot")[:100])
    switch = _switch_state([agent]).get(agent.slug)
    context = {
        "agent": agent,
        "can_govern": can_govern,
        "can_review": agent_perms.can_review(user, agent),
        "can_read_governance": can_read_governance(user, agent),
        "tiers": list(Tier.objects.order_by("rank")),
        "rules": rules,
        "releases": agent.releases.order_by("-first_seen_at")[:20],
        "tokens": agent.tokens.order_by("-created_at"),
        "versions": versions,
        "version_diff": _version_diff(agent, request),
        "readiness": compute_readiness(agent),
        "charts": _charts(agent),
        "backtest_form": backtest_form,
        "backtest": backtest,
        "switch": switch,
        "last_drill": agent.drills.first(),
        # Change requests are for those who may read the agent's governance (not reviewers).
        "open_changes": visible_change_requests(user).filter(
            agent=agent, status=ChangeRequest.Status.OPEN
        ),
        "tier_form": TierForm(initial={"tier": agent.tier.name}),
        "rule_form": ToolRuleForm(initial={"effect": "read", "rule": "allowed"}),
        "settings_form": AgentSettingsForm(
            initial={"active": agent.active, "rate_limit_per_minute": agent.rate_limit_per_minute}
        ),
        "token_form": TokenForm(),
        "pending": agent.actions.filter(status=Status.PENDING).count(),
        "access": agent_access.overview(agent),
        "access_rights": [
            (right, agent_access.RIGHT_LABELS[right]) for right in agent_access.RIGHTS
        ],
        "access_form": AccessChangeForm(initial={"operation": "grant", "kind": "user"}),
    }
    return render(request, "rollout/agent_detail.html", context)


@login_required
@require_GET
def version_detail(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    agent = _agent_or_404(request, slug)
    version = agent.policy_versions.filter(number=number).first()
    if version is None:
        raise Http404("No such policy version.")
    previous = agent.policy_versions.filter(number__lt=number).order_by("-number").first()
    diff = diff_policies(previous.snapshot, version.snapshot) if previous else None
    return render(
        request,
        "rollout/version_detail.html",
        {
            "agent": agent,
            "version": version,
            "previous": previous,
            "diff": diff,
            "snapshot_json": json.dumps(version.snapshot, indent=2, sort_keys=True),
        },
    )


@login_required
@require_POST
def change_tier(request: HttpRequest, slug: str) -> HttpResponse:
    agent = _governed_agent(request, slug)
    form = TierForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return redirect("rollout:agent-detail", slug=agent.slug)
    return _propose(request, agent, form.changes(), form.cleaned_data["reason"])


@login_required
@require_POST
def change_settings(request: HttpRequest, slug: str) -> HttpResponse:
    agent = _governed_agent(request, slug)
    form = AgentSettingsForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return redirect("rollout:agent-detail", slug=agent.slug)
    return _propose(request, agent, form.changes(), form.cleaned_data["reason"])


def _form_errors(form: Any) -> str:
    return "; ".join(
        f"{name}: {' '.join(problems)}" if name != "__all__" else " ".join(problems)
        for name, problems in form.errors.items()
    )


@login_required
def rule_form(request: HttpRequest, slug: str, tool: str | None = None) -> HttpResponse:
    """Add a tool rule (no ``tool``) or change one; both go through ``propose_change``."""
    agent = _governed_agent(request, slug)
    current = (agent.current_policy.snapshot.get("tools") or {}) if agent.current_policy else {}
    if tool is not None and tool not in current:
        raise Http404("No such tool rule.")
    initial = ToolRuleForm.initial_for(tool, current[tool]) if tool else {"base_risk": "low"}
    form = ToolRuleForm(request.POST or None, initial=initial, fixed_tool=tool)
    if request.method == "POST" and form.is_valid():
        if tool is None and form.cleaned_data["tool"] in current:
            form.add_error("tool", "This tool has a rule; change it from the agent page.")
        else:
            return _propose(request, agent, form.changes(), form.cleaned_data["reason"])
    return render(
        request,
        "rollout/rule_form.html",
        {"agent": agent, "form": form, "tool": tool, "current": current.get(tool or "")},
    )


@login_required
@require_POST
def remove_rule(request: HttpRequest, slug: str, tool: str) -> HttpResponse:
    agent = _governed_agent(request, slug)
    form = RemoveToolForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return redirect("rollout:agent-detail", slug=agent.slug)
    return _propose(request, agent, {"tools": {tool: None}}, form.cleaned_data["reason"])


@login_required
@require_POST
def issue_token(request: HttpRequest, slug: str) -> HttpResponse:
    """A new agent token, shown once; needs a recent second factor like approving a
    governance change (when step-up is on)."""
    agent = _governed_agent(request, slug)
    form = TokenForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return redirect("rollout:agent-detail", slug=agent.slug)
    if not _stepped_up(request, "issue an agent token"):
        return redirect("rollout:agent-detail", slug=agent.slug)
    with _flashing_refusals(request) as refused:
        token = governance.issue_token(agent=agent, user=request.user, **form.cleaned_data)
    if refused:
        return redirect("rollout:agent-detail", slug=agent.slug)
    # Shown once, in this response only; never stored in a message or the session.
    response = render(request, "rollout/token_issued.html", {"agent": agent, "token": token})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def rotate_webhook_secret(request: HttpRequest, slug: str) -> HttpResponse:
    """A new webhook secret, shown once; the old one still signs during the grace period.
    Needs a recent second factor like approving a governance change (when step-up is on)."""
    agent = _governed_agent(request, slug)
    if not _stepped_up(request, "rotate the webhook secret"):
        return redirect("rollout:agent-detail", slug=agent.slug)
    with _flashing_refusals(request) as refused:
        secret = governance.rotate_webhook_secret(agent=agent, user=request.user)
    if refused:
        return redirect("rollout:agent-detail", slug=agent.slug)
    response = render(request, "rollout/webhook_secret.html", {"agent": agent, "secret": secret})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def revoke_token(request: HttpRequest, slug: str, token_id: int) -> HttpResponse:
    agent = _governed_agent(request, slug)
    with _flashing_refusals(request) as refused:
        record = governance.revoke_token(agent=agent, token_id=token_id, user=request.user)
    if not refused:
        messages.success(request, f"Token {record.prefix}… is revoked.")
    return redirect("rollout:agent-detail", slug=agent.slug)


# --- access -------------------------------------------------------------------------------


@login_required
@require_POST
def access_change(request: HttpRequest, slug: str) -> HttpResponse:
    """Grant or remove one right of one user or group. Without ``confirm`` it only shows
    what the change would do (who gains or loses what, at once or after a second owner);
    confirmed, it goes through the governance write path like any policy change."""
    agent = _governed_agent(request, slug)
    form = AccessChangeForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return redirect(reverse("rollout:agent-detail", args=[agent.slug]) + "#access")
    if request.POST.get("confirm") == "1":
        return _propose(request, agent, form.changes(), form.cleaned_data["reason"])
    with _flashing_refusals(request) as refused:
        proposal = governance.preview_change(agent=agent, changes=form.changes())
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


# --- shadow labels ------------------------------------------------------------------------


@login_required
def shadow_actions(request: HttpRequest, slug: str) -> HttpResponse:
    """The agent's shadow actions, for reviewers to label "would approve / would reject"."""
    agent = _agent_or_404(request, slug)
    can_label = agent_perms.can_review(request.user, agent)
    actions = list(agent.actions.filter(status=Status.SHADOWED).order_by("-created_at")[:100])
    labels = {
        label.action_id: label
        for label in ShadowLabel.objects.filter(action__in=actions, reviewer=request.user)
    }
    counts: dict[int, dict[str, int]] = {}
    for action_id, label in ShadowLabel.objects.filter(action__in=actions).values_list(
        "action_id", "label"
    ):
        counts.setdefault(action_id, {"would_approve": 0, "would_reject": 0})[label] += 1
    rows = [
        {"action": action, "mine": labels.get(action.pk), "counts": counts.get(action.pk, {})}
        for action in actions
    ]
    return render(
        request,
        "rollout/shadow_actions.html",
        {"agent": agent, "rows": rows, "can_label": can_label},
    )


@login_required
@require_POST
def label_shadow_action(request: HttpRequest, slug: str, action_id: int) -> HttpResponse:
    agent = _agent_or_404(request, slug)
    if not agent_perms.can_review(request.user, agent):
        raise PermissionDenied("You may not review this agent.")
    if not agent.actions.filter(pk=action_id).exists():
        raise Http404("No such action.")
    form = ShadowLabelForm(request.POST)
    if form.is_valid():
        with _flashing_refusals(request) as refused:
            governance.label_shadow_action(
                action_id=action_id, user=request.user, label=form.cleaned_data["label"]
            )
        if not refused:
            messages.success(request, f"Labelled action #{action_id}.")
    else:
        messages.error(request, _form_errors(form))
    return redirect("rollout:shadow-actions", slug=agent.slug)


# --- change requests ----------------------------------------------------------------------


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
            "changes": governance.changes_of(cr),
            "approvals": len(governance.current_approvals(cr)),
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
    refusal = governance.approval_refusal(change_request, user) if is_open else None
    backtest = None
    if is_open and ("tier" in change_request.after or "tools" in change_request.after):
        backtest = backtest_change(agent, change_request.after, days=14)
    approvals = list(change_request.approvals.select_related("approver"))
    context = {
        "change_request": change_request,
        "agent": agent,
        "changes": governance.changes_of(change_request),
        "diff": diff_policies(change_request.before, change_request.after),
        "approvals": approvals,
        "current_approvals": [
            a for a in approvals if a.revision == change_request.revision and not a.voided
        ],
        "stale": is_open and governance.is_stale(change_request),
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
        "readiness": compute_readiness(agent) if "tier" in change_request.after else None,
    }
    return render(request, "rollout/change_detail.html", context)


def _change_action(request: HttpRequest, change_id: int, run: Any, done: str) -> HttpResponse:
    change_request = _change_or_404(request, change_id)
    with _flashing_refusals(request) as refused:
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
        messages.error(request, _form_errors(form))
        return redirect("rollout:change-detail", change_id=change_id)
    _change_or_404(request, change_id)
    with _flashing_refusals(request, hide=False) as refused:
        stepup.require_recent_second_factor(request, purpose="approve a governance change")
    if refused:
        return redirect("rollout:change-detail", change_id=change_id)

    def run(change_request: ChangeRequest) -> None:
        result = governance.approve_change_request(
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
        messages.error(request, _form_errors(form))
        return redirect("rollout:change-detail", change_id=change_id)
    return _change_action(
        request,
        change_id,
        lambda cr: governance.reject_change_request(
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
        lambda cr: governance.withdraw_change_request(
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
            governance.proposal_as_input(change_request.after), indent=2, sort_keys=True
        ),
        "reason": change_request.reason,
        "required_approvals": change_request.required_approvals,
    }
    form = EditChangeForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        with answering_refusals(request, hide=True) as refused:
            governance.edit_change_request(
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
