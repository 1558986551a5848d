"""The agent pages: the list of agents a person may see (with their daily figures), the
registration form, an agent's page (policy, readiness, charts, backtest, versions, tokens,
access) and a policy version (with "revert to this version" for its governors)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from approvals.models import StandingApproval
from approvals.standing import active as active_standing
from approvals.states import Status
from core.errors import answering_refusals
from governance import access as agent_access
from governance import actions, charts
from governance.backtest import backtest_change
from governance.forms import (
    AccessChangeForm,
    AgentSettingsForm,
    BacktestForm,
    EnvironmentTierForm,
    RegisterAgentForm,
    RevertForm,
    TierForm,
    TokenForm,
)
from governance.metrics import daily_metrics, pending_counts
from governance.models import ChangeRequest
from governance.readiness import compute_readiness
from governance.selectors import (
    can_read_governance,
    recent_role_changes,
    visible_change_requests,
)
from governance.views.common import agent_or_404
from rollout import permissions as agent_perms
from rollout.models import Agent, KillSwitch, PolicyVersion, Tier
from rollout.policy_diff import diff_policies
from rollout.selectors import visible_agents

SPARK_DAYS = 14
CHART_DAYS = 30


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
            "can_register": actions.can_register_agents(request.user),
            "role_changes": recent_role_changes(request.user),
            "audit_links": agent_perms.can_read_audit(request.user),
        },
    )


@login_required
def agent_register(request: HttpRequest) -> HttpResponse:
    if not actions.can_register_agents(request.user):
        raise PermissionDenied("You may not register agents.")
    form = RegisterAgentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with answering_refusals(request) as refused:
            agent = actions.register(user=request.user, **form.cleaned_data)
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


# The agent page's sections, each with its own URL: (section, URL name, tab label).
SECTIONS = (
    ("overview", "rollout:agent-detail", "Overview"),
    ("policy", "rollout:agent-policy", "Policy"),
    ("access", "rollout:agent-access", "Access"),
    ("tokens", "rollout:token-issue", "Tokens"),
    ("metrics", "rollout:agent-metrics", "Metrics"),
    ("history", "rollout:agent-history", "History"),
)


def section_url(agent: Agent, section: str) -> str:
    """The URL of one section of ``agent``'s page."""
    name = next(name for key, name, _ in SECTIONS if key == section)
    return reverse(name, kwargs={"slug": agent.slug})


@login_required
@require_GET
def agent_detail(request: HttpRequest, slug: str, section: str = "overview") -> HttpResponse:
    """One section of an agent's page: overview (tier ladder, readiness, backtest, health),
    policy (tool rules, activity and rate limit), access, tokens (and the webhook secret),
    metrics or history (policy versions). Seen by whoever may see the agent."""
    agent = agent_or_404(request, slug)
    user = request.user
    can_govern = agent_perms.can_govern(user, agent)
    context: dict[str, Any] = {
        "agent": agent,
        "section": section,
        "section_label": next(label for key, _, label in SECTIONS if key == section),
        "tabs": [
            {"label": label, "url": section_url(agent, key), "current": key == section}
            for key, _, label in SECTIONS
        ],
        "can_govern": can_govern,
        "can_review": agent_perms.can_review(user, agent),
        "can_read_governance": can_read_governance(user, agent),
    }
    if section == "overview":
        backtest_form, backtest = _backtest(agent, request)
        context.update(
            {
                "tiers": list(Tier.objects.order_by("rank")),
                "releases": agent.releases.order_by("-first_seen_at")[:20],
                "readiness": compute_readiness(agent),
                "backtest_form": backtest_form,
                "backtest": backtest,
                "switch": _switch_state([agent]).get(agent.slug),
                "last_drill": agent.drills.first(),
                # Change requests: for those who may read the agent's governance.
                "open_changes": visible_change_requests(user).filter(
                    agent=agent, status=ChangeRequest.Status.OPEN
                ),
                "tier_form": TierForm(initial={"tier": agent.tier.name}),
                "pending": agent.actions.filter(status=Status.PENDING).count(),
            }
        )
        if context["can_review"]:
            context["standing_approvals"] = list(
                active_standing(StandingApproval.objects.filter(agent=agent))[:100]
            )
    elif section == "policy":
        snapshot = agent.current_policy.snapshot if agent.current_policy else {}
        environments = snapshot.get("environments") or {}
        context["rules"] = [
            {
                "tool": tool,
                "rule": rule,
                "limits": rule.get("argument_limits") or [],
                # Where this rule does not apply: an environment overrides it.
                "overridden_in": sorted(
                    name
                    for name, entry in environments.items()
                    if tool in (entry.get("tools") or {})
                ),
            }
            for tool, rule in sorted((snapshot.get("tools") or {}).items())
        ]
        context["settings_form"] = AgentSettingsForm(
            initial={"active": agent.active, "rate_limit_per_minute": agent.rate_limit_per_minute}
        )
        context["overrides"] = [
            {
                "environment": environment,
                "tier": (entry.get("tier") or {}).get("name"),
                "tools": [
                    {"tool": tool, "rule": rule, "base": (snapshot.get("tools") or {}).get(tool)}
                    for tool, rule in sorted((entry.get("tools") or {}).items())
                ],
            }
            for environment, entry in sorted((snapshot.get("environments") or {}).items())
        ]
        context["environment_tier_form"] = EnvironmentTierForm()
    elif section == "access":
        context.update(
            {
                "access": agent_access.overview(agent),
                "access_rights": [
                    (right, agent_access.RIGHT_LABELS[right]) for right in agent_access.RIGHTS
                ],
                "access_form": AccessChangeForm(initial={"operation": "grant", "kind": "user"}),
            }
        )
    elif section == "tokens":
        context.update({"tokens": agent.tokens.order_by("-created_at"), "token_form": TokenForm()})
    elif section == "metrics":
        context["charts"] = _charts(agent)
    elif section == "history":
        context["versions"] = list(
            agent.policy_versions.order_by("-number").defer("snapshot")[:100]
        )
        context["version_diff"] = _version_diff(agent, request)
    return render(request, "rollout/agent_detail.html", context)


@login_required
@require_GET
def agent_policy(request: HttpRequest, slug: str) -> HttpResponse:
    return agent_detail(request, slug, section="policy")


@login_required
@require_GET
def agent_metrics(request: HttpRequest, slug: str) -> HttpResponse:
    return agent_detail(request, slug, section="metrics")


@login_required
@require_GET
def agent_history(request: HttpRequest, slug: str) -> HttpResponse:
    return agent_detail(request, slug, section="history")


@login_required
@require_GET
def version_detail(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    agent = agent_or_404(request, slug)
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
            "revert": _revert_offer(request, agent, version),
        },
    )


def _revert_offer(request: HttpRequest, agent: Agent, version: PolicyVersion) -> dict | None:
    """What the version page offers its governors: a revert form (reason pre-filled), or
    why there is nothing to revert. None for people who may not govern the agent."""
    if not agent_perms.can_govern(request.user, agent):
        return None
    try:
        changes = actions.revert_changes(agent, version)
    except actions.GovernanceRefused as refusal:
        return {"unavailable": refusal.detail}
    if not changes:
        return {"nothing": True}
    return {"form": RevertForm(initial={"reason": actions.revert_reason(version)})}
