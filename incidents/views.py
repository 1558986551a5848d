"""The incidents page: kill switches (engage, release, history) and drills. Thin views over
``incidents.actions``, ``incidents.tasks`` and ``rollout.permissions``."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.stepup import require_recent_second_factor
from approvals.models import Action
from approvals.states import Status
from audit import verbs
from audit.chain import Actor
from audit.models import AuditEvent
from core.errors import answering_refusals
from core.redirects import next_target
from incidents.actions import (
    engage_kill_switch,
    known_tools,
    release_kill_switch,
)
from incidents.breakers import METRICS, window_counts
from incidents.models import Drill
from incidents.tasks import run_drill_task
from rollout import permissions as perms
from rollout.environments import configured_environments
from rollout.models import Agent, KillSwitch, ToolRule
from rollout.policy import PROBE_TOOL
from rollout.selectors import agent_visible_to

SCOPES = (KillSwitch.Scope.GLOBAL, KillSwitch.Scope.AGENT, KillSwitch.Scope.TOOL)


def _stopped_counts(switches: list[KillSwitch]) -> dict[int, dict]:
    """What each switch's engage stopped, as its audit event recorded it."""
    events = AuditEvent.objects.filter(
        verb=verbs.KILL_SWITCH_ENGAGED,
        target_type="kill_switch",
        target_id__in=[str(switch.pk) for switch in switches],
    ).values_list("target_id", "data")
    return {int(target_id): (data or {}).get("stopped") or {} for target_id, data in events}


def _resumes(switch: KillSwitch) -> str:
    """What releasing ``switch`` lets run again, in one sentence."""
    where = f" in {switch.environment}" if switch.environment else ""
    if switch.scope == KillSwitch.Scope.GLOBAL:
        return f"Every agent's gate calls{where} run again."
    if switch.scope == KillSwitch.Scope.AGENT:
        return f"Gate calls of {switch.target}{where} run again."
    agents = sorted(
        set(ToolRule.objects.filter(tool=switch.target).values_list("agent__slug", flat=True))
    )
    named = ", ".join(agents) if agents else "no agent (no rule names it)"
    return f"Calls to {switch.target}{where} run again for {named}."


def agent_health(agents: list[Agent]) -> list[dict]:
    """Per agent, for the console: gate calls and denials in the last minute, how near each
    configured breaker threshold is (``incidents.breakers.window_counts``), the last drill."""
    since = timezone.now() - timedelta(seconds=60)
    rates = {
        row["agent"]: row
        for row in Action.objects.filter(agent__in=agents, created_at__gte=since)
        .exclude(tool=PROBE_TOOL)
        .values("agent")
        .annotate(
            calls=Count("id"),
            denials=Count("id", filter=Q(status=Status.DENIED)),
        )
    }
    last_drills: dict[int, Drill] = {}
    for drill in Drill.objects.filter(agent__in=agents).order_by("agent_id", "-started_at"):
        last_drills.setdefault(drill.agent_id, drill)
    rows = []
    for agent in agents:
        config = agent.circuit_breaker or {}
        breakers = []
        if config:
            window = int(config.get("window_seconds", 300))
            counts = window_counts(agent, window)
            for metric in METRICS:
                threshold = config.get(f"max_{metric}")
                if isinstance(threshold, int) and not isinstance(threshold, bool) and threshold > 0:
                    count = counts.get(metric, 0)
                    breakers.append(
                        {
                            "metric": metric,
                            "count": count,
                            "threshold": threshold,
                            "window": window,
                            "left": max(0, threshold - count),
                            "near": count * 4 >= threshold * 3,
                        }
                    )
        rate = rates.get(agent.pk, {})
        rows.append(
            {
                "agent": agent,
                "calls": rate.get("calls", 0),
                "denials": rate.get("denials", 0),
                "breakers": breakers,
                "drill": last_drills.get(agent.pk),
            }
        )
    return rows


def console_context(request: HttpRequest, *, form: dict | None = None) -> dict:
    """The incidents page's context; ``form`` is the engage form a refusal re-renders:
    ``{"key": "global" | "tool" | "agent:<slug>", "target", "reason", "errors": {field:
    message}, "unknown_tool": bool}``."""
    killable = list(perms.agents_for(request.user, perms.KILL).order_by("slug"))
    engaged = list(KillSwitch.objects.filter(released_at__isnull=True, is_drill=False))
    counts = _stopped_counts(engaged)
    for switch in engaged:
        switch.stopped = counts.get(switch.pk, {})
        switch.resumes = _resumes(switch)
    # A switch of one environment leaves the others running: only a switch of every
    # environment makes another one of the same scope pointless.
    everywhere = [s for s in engaged if not s.environment]
    by_agent = {s.target: s for s in everywhere if s.scope == KillSwitch.Scope.AGENT}
    global_switch = next((s for s in everywhere if s.scope == KillSwitch.Scope.GLOBAL), None)
    form = form or {}

    def typed(key: str) -> dict:
        return form if form.get("key") == key else {"errors": {}}

    agents = [
        {"agent": agent, "switch": by_agent.get(agent.slug), "form": typed(f"agent:{agent.slug}")}
        for agent in killable
    ]
    return {
        "health": agent_health(list(perms.incident_agents(request.user).order_by("slug"))),
        "engaged": engaged,
        "history": KillSwitch.objects.filter(released_at__isnull=False, is_drill=False)[:50],
        "drills": Drill.objects.select_related("agent")[:20],
        "killable_agents": killable,
        "agents": agents,
        "can_kill_globally": perms.can_kill_globally(request.user),
        "engaged_agents": set(by_agent),
        "global_switch": global_switch,
        "global_engaged": global_switch is not None,
        "engaged_tools": [s for s in engaged if s.scope == KillSwitch.Scope.TOOL],
        "known_tools": known_tools(),
        "environments": configured_environments(),
        "global_form": typed("global"),
        "tool_form": typed("tool"),
    }


@login_required
def incidents(request: HttpRequest) -> HttpResponse:
    """What is engaged now, the controls to stop things, history and drills."""
    if not perms.can_see_incidents(request.user):
        raise PermissionDenied
    if request.GET.get("partial") == "1":
        # The live region alone, re-read by ``static/live.js`` on every switch event.
        response = render(request, "incidents/_live.html", console_context(request))
        response["X-Airlock-Fragment"] = "incidents"
        return response
    return render(request, "incidents/incidents.html", console_context(request))


@login_required
@require_POST
def engage(request: HttpRequest) -> HttpResponse:
    """Engage a switch. Asks for a reason and, for global and agent scope, the target's name
    typed again (``global`` for the global switch), so a stray click cannot stop production;
    a tool no agent's rule names needs its own confirmation. A refusal re-renders the page
    with what was typed kept and the problem next to its field."""
    scope = request.POST.get("scope", "")
    target = (request.POST.get("target") or "").strip()
    reason = (request.POST.get("reason") or "").strip()
    confirm = (request.POST.get("confirm") or "").strip()
    allow_unknown_tool = request.POST.get("allow_unknown_tool") == "on"
    environment = (request.POST.get("environment") or "").strip()
    if scope not in SCOPES:
        messages.error(request, "Choose a scope: global, agent or tool.")
        return redirect("incidents")
    if not perms.can_operate_switch(request.user, scope, target):
        raise PermissionDenied
    key = {"global": "global", "tool": "tool"}.get(scope, f"agent:{target}")
    form = {
        "key": key,
        "target": target,
        "reason": reason,
        "environment": environment,
        "errors": {},
    }

    def refuse(field: str, message: str) -> HttpResponse:
        form["errors"][field] = message
        if field == "target" and scope == KillSwitch.Scope.TOOL:
            form["unknown_tool"] = True
        context = console_context(request, form=form)
        return render(request, "incidents/incidents.html", context, status=400)

    expected = "global" if scope == KillSwitch.Scope.GLOBAL else target
    if scope in (KillSwitch.Scope.GLOBAL, KillSwitch.Scope.AGENT) and confirm != expected:
        return refuse("confirm", f"Type {expected!r} to confirm; nothing was engaged.")
    with answering_refusals(request, hide=True) as refused:
        switch = engage_kill_switch(
            scope=scope,
            target=target,
            reason=reason,
            actor=Actor.user(request.user),
            allow_unknown_tool=allow_unknown_tool,
            environment=environment,
        )
    if refused:
        refusal = refused.refusal
        field = next(iter(refusal.fields), None) or (
            "reason" if refusal.code == "reason_required" else "target"
        )
        return refuse(field, refusal.detail if refusal.fields else refused.message)
    stopped = switch.stopped_counts
    messages.success(
        request,
        f"Kill switch engaged on {switch}: {stopped.get('cancelled', 0)} pending cancelled, "
        f"{stopped.get('revoked', 0)} grants revoked.",
    )
    return redirect(next_target(request, reverse("incidents")))


@login_required
@require_POST
def release(request: HttpRequest, switch_id: int) -> HttpResponse:
    """Release a switch, with a reason. The switch stays in history."""
    switch = KillSwitch.objects.filter(pk=switch_id).first()
    # Switches are shown to whoever may see incidents; to anyone else they do not exist.
    if switch is None or not perms.can_see_incidents(request.user):
        raise Http404("No such kill switch.")
    if not perms.can_operate_switch(request.user, switch.scope, switch.target):
        raise PermissionDenied
    with answering_refusals(
        request, show=lambda message: messages.error(request, message)
    ) as refused:
        # Recovery is fast but not careless: a fresh second factor, where step-up is on.
        require_recent_second_factor(request, purpose="release a kill switch")
        release_kill_switch(
            switch_id=switch.pk,
            reason=request.POST.get("reason", ""),
            actor=Actor.user(request.user),
        )
    if not refused:
        messages.success(request, f"Kill switch on {switch} released.")
    return redirect("incidents")


@login_required
@require_POST
def run_drill(request: HttpRequest, slug: str) -> HttpResponse:
    """Queue a drill of one agent on a worker (it takes a few seconds)."""
    # An agent the person may not see answers as if it did not exist.
    agent = agent_visible_to(request.user, slug)
    if agent is None:
        raise Http404("No such agent.")
    if not perms.can_kill(request.user, agent):
        raise PermissionDenied
    run_drill_task.delay(agent.pk, request.user.get_username())
    messages.success(
        request, f"Drill of {agent.slug} started; its result appears below in a few seconds."
    )
    return redirect("incidents")
