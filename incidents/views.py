"""The incidents page: kill switches (engage, release, history) and drills. Thin views over
``incidents.actions``, ``incidents.tasks`` and ``rollout.permissions``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.stepup import require_recent_second_factor
from audit.chain import Actor
from core.errors import answering_refusals
from core.redirects import next_target
from incidents.actions import engage_kill_switch, release_kill_switch
from incidents.models import Drill
from incidents.tasks import run_drill_task
from rollout import permissions as perms
from rollout.models import KillSwitch
from rollout.selectors import agent_visible_to

SCOPES = (KillSwitch.Scope.GLOBAL, KillSwitch.Scope.AGENT, KillSwitch.Scope.TOOL)


@login_required
def incidents(request: HttpRequest) -> HttpResponse:
    """What is engaged now, the controls to stop things, history and drills."""
    if not perms.can_see_incidents(request.user):
        raise PermissionDenied
    killable = perms.agents_for(request.user, perms.KILL).order_by("slug")
    engaged = KillSwitch.objects.filter(released_at__isnull=True, is_drill=False)
    context = {
        "engaged": engaged,
        "history": KillSwitch.objects.filter(released_at__isnull=False, is_drill=False)[:50],
        "drills": Drill.objects.select_related("agent")[:20],
        "killable_agents": killable,
        "can_kill_globally": perms.can_kill_globally(request.user),
        "engaged_agents": set(
            engaged.filter(scope=KillSwitch.Scope.AGENT).values_list("target", flat=True)
        ),
        "global_engaged": engaged.filter(scope=KillSwitch.Scope.GLOBAL).exists(),
    }
    return render(request, "incidents/incidents.html", context)


@login_required
@require_POST
def engage(request: HttpRequest) -> HttpResponse:
    """Engage a switch. Asks for a reason and, for global and agent scope, the target's name
    typed again (``global`` for the global switch), so a stray click cannot stop production."""
    scope = request.POST.get("scope", "")
    target = (request.POST.get("target") or "").strip()
    reason = (request.POST.get("reason") or "").strip()
    confirm = (request.POST.get("confirm") or "").strip()
    if scope not in SCOPES:
        messages.error(request, "Choose a scope: global, agent or tool.")
        return redirect("incidents")
    if not perms.can_operate_switch(request.user, scope, target):
        raise PermissionDenied
    expected = "global" if scope == KillSwitch.Scope.GLOBAL else target
    if scope in (KillSwitch.Scope.GLOBAL, KillSwitch.Scope.AGENT) and confirm != expected:
        messages.error(request, f"Type {expected!r} to confirm; nothing was engaged.")
        return redirect(next_target(request, reverse("incidents")))
    with answering_refusals(
        request, show=lambda message: messages.error(request, message)
    ) as refused:
        switch = engage_kill_switch(
            scope=scope, target=target, reason=reason, actor=Actor.user(request.user)
        )
    if refused:
        return redirect(next_target(request, reverse("incidents")))
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
