"""The incident workflow's write path: engaging and releasing kill switches.

The ``KillSwitch`` rows belong to ``rollout`` (every gate call reads them there); stopping
what a switch covers is approvals' sweep (``approvals.actions.stop_actions_in_scope``) and
its notices approvals' outbox, both called here inside the engage's transaction. Each
action audits in its transaction and broadcasts with ``transaction.on_commit``."""

from __future__ import annotations

from django.db import connection, transaction
from django.utils import timezone

from approvals.actions import stop_actions_in_scope
from approvals.notifications import owe_kill_switch
from audit import verbs
from audit.chain import Actor, append_event
from core.errors import Refused
from incidents import events
from rollout.actions import KILL_SWITCH_LOCK_KEY
from rollout.environments import UnknownEnvironment, known_environment
from rollout.models import Agent, KillSwitch, ToolRule


class KillSwitchError(Refused):
    """A kill-switch request the rules refuse: engaging with bad input (``400``), releasing
    what is already released (``409``)."""


def engage_kill_switch(
    *,
    scope: str,
    target: str,
    reason: str,
    actor: Actor,
    is_drill: bool = False,
    trip: dict | None = None,
    allow_unknown_tool: bool = False,
    environment: str = "",
) -> KillSwitch:
    """Stop everything in scope, in one transaction: new gate calls are denied, pending
    actions are cancelled, approved or allowed actions not yet reported are revoked, waiting
    agents are answered. Audits ``kill_switch.engaged`` and each cancelled/revoked action;
    broadcasts to dashboards and waiting long-polls on commit.

    The target must be known (``check_target``): an agent that exists, a tool some agent's
    rule names — or, for a tool, ``allow_unknown_tool`` says the person means a tool no rule
    names yet (a misspelt name would otherwise stop nothing and look like safety).

    ``environment`` ("" = every environment) narrows any scope to the calls and actions of
    that environment (``rollout.environments``); an unknown name is ``400
    invalid_environment`` (field ``environment``)."""
    reason = (reason or "").strip()
    if not reason:
        raise KillSwitchError("reason_required", "Engaging a kill switch needs a reason.", 400)
    if scope not in KillSwitch.Scope.values:
        raise KillSwitchError(
            "invalid_scope", f"Scope must be one of {', '.join(KillSwitch.Scope.values)}.", 400
        )
    target = "" if scope == KillSwitch.Scope.GLOBAL else (target or "").strip()
    if scope != KillSwitch.Scope.GLOBAL and not target:
        raise KillSwitchError("target_required", f"A {scope} switch needs a target.", 400)
    check_target(scope, target, allow_unknown_tool=allow_unknown_tool)
    try:
        environment = known_environment(environment)
    except UnknownEnvironment as exc:
        raise KillSwitchError(
            "invalid_environment", f"{exc} Nothing was engaged.", 400, {"environment": [str(exc)]}
        ) from exc
    with transaction.atomic():
        _hold_gate_lock_exclusive()
        switch = KillSwitch.objects.create(
            scope=scope,
            target=target,
            reason=reason,
            engaged_by=str(actor),
            is_drill=is_drill,
            trip=trip or {},
            environment=environment,
        )
        # Lock order everywhere is action rows, then audit chain heads: the sweep locks the
        # actions in scope before anything is audited (a racing approval does the same).
        switch.stopped_counts = {}  # for the caller's response; not stored
        # Registered before the sweep's own on-commit work, so dashboards hear it first.
        transaction.on_commit(lambda: events.broadcast_switch(switch, "engaged"))
        if not is_drill:
            switch.stopped_counts = stop_actions_in_scope(switch=switch, actor=actor)
        append_event(
            verb=verbs.KILL_SWITCH_ENGAGED,
            actor=actor,
            target_type="kill_switch",
            target_id=switch.pk,
            agent_slug=target if scope == KillSwitch.Scope.AGENT else "",
            data={
                "scope": scope,
                "target": target,
                "environment": environment,
                "reason": reason,
                "drill": is_drill,
                "trip": trip or {},
                "stopped": switch.stopped_counts,
            },
        )
        if not is_drill:
            owe_kill_switch(switch, "engaged")
    return switch


def known_tools() -> list[str]:
    """Every tool some agent's rule names, sorted: the tools a switch can be known to stop."""
    return sorted(set(ToolRule.objects.values_list("tool", flat=True)))


def check_target(scope: str, target: str, *, allow_unknown_tool: bool = False) -> None:
    """Refuse (``400 unknown_target``, field ``target``) an agent switch on an agent that
    does not exist, and a tool switch on a tool no agent's rule names unless
    ``allow_unknown_tool``."""
    if scope == KillSwitch.Scope.AGENT and not Agent.objects.filter(slug=target).exists():
        raise KillSwitchError(
            "unknown_target",
            f"No agent {target!r}; nothing was engaged.",
            400,
            fields={"target": [f"No agent is called {target!r}."]},
        )
    if (
        scope == KillSwitch.Scope.TOOL
        and not allow_unknown_tool
        and not ToolRule.objects.filter(tool=target).exists()
    ):
        raise KillSwitchError(
            "unknown_target",
            f"No agent's rule names the tool {target!r}, so a switch on it would stop "
            "nothing today; nothing was engaged. Confirm that you mean an unknown tool "
            '("allow_unknown_tool") to engage it anyway.',
            400,
            fields={"target": [f"No agent's rule names the tool {target!r}."]},
        )


def release_kill_switch(*, switch_id: int, reason: str, actor: Actor) -> KillSwitch:
    """Lift a switch. Needs a reason; the switch stays in history. Audits
    ``kill_switch.released``; broadcasts on commit."""
    reason = (reason or "").strip()
    if not reason:
        raise KillSwitchError("reason_required", "Releasing a kill switch needs a reason.")
    with transaction.atomic():
        switch = KillSwitch.objects.select_for_update().get(pk=switch_id)
        if switch.released_at is not None:
            raise KillSwitchError("already_released", "This kill switch is already released.")
        switch.released_at = timezone.now()
        switch.released_by = str(actor)
        switch.release_reason = reason
        switch.save(update_fields=["released_at", "released_by", "release_reason"])
        append_event(
            verb=verbs.KILL_SWITCH_RELEASED,
            actor=actor,
            target_type="kill_switch",
            target_id=switch.pk,
            agent_slug=switch.target if switch.scope == KillSwitch.Scope.AGENT else "",
            data={"scope": switch.scope, "target": switch.target, "reason": reason},
        )
        if not switch.is_drill:
            owe_kill_switch(switch, "released")
        transaction.on_commit(lambda: events.broadcast_switch(switch, "released"))
    return switch


def _hold_gate_lock_exclusive() -> None:
    # Gate transactions hold it shared (rollout.actions.KILL_SWITCH_LOCK_KEY): a gate call
    # either finished before the engage (and is swept by it) or sees the switch.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [KILL_SWITCH_LOCK_KEY])
