"""Standing approvals ("approve, and allow the same for a while"): the one write path for
creating, using and ending them. The bounds are policy (``rollout.standing``); this module
applies them.

- ``terms_refusal``: a reviewer's terms on a pending card, checked against the tool's
  bounds in the agent's current policy (``standing_out_of_bounds``).
- ``create_if_agreed``: with the approval that completes a card's quorum, when every
  approval carries the same terms.
- ``use_for_call``: the gate, where it would otherwise answer ``pending``.
- ``revoke``, ``end_for_kill_switch``, ``end_for_policy_change``: the ways one ends early
  (expiry and the count end it where it is used).

Each runs inside the caller's transaction (``revoke`` opens its own), locks the standing
approval rows it changes, audits every change (``standing.created`` / ``standing.ended``;
a use is the covered action's own ``action.approved`` event) and broadcasts on commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from approvals import events
from approvals.models import Action, Decision, StandingApproval
from audit import verbs
from audit.chain import Actor, append_event, lock_chain_position
from core.errors import Refused
from core.identity import same_person
from core.people import is_active_person
from rollout import permissions as rollout_permissions
from rollout.models import Agent, KillSwitch, PolicyVersion
from rollout.policy import effective_snapshot
from rollout.standing import RISKS, covers_hold, is_allowed, match_problem, terms_problems

REASON_CODE = "standing_approval"
EndReason = StandingApproval.EndReason
END_TEXT = {
    EndReason.REVOKED: "revoked by a reviewer",
    EndReason.KILL_SWITCH: "a kill switch was engaged",
    EndReason.POLICY_CHANGED: "the policy of its tool, tier or bounds changed",
    EndReason.USED_UP: "every use was taken",
    EndReason.EXPIRED: "its time ran out",
}


@dataclass(frozen=True)
class Terms:
    """What an approver asks for: also approve matching calls for ``minutes``, at most
    ``uses`` times."""

    minutes: int
    uses: int


def environment_of(blast_radius: Any) -> str:
    """The environment a call declares (``blast_radius.environment``), as compared."""
    if not isinstance(blast_radius, dict):
        return ""
    return str(blast_radius.get("environment") or "").strip().lower()


def in_shadow(snapshot: dict) -> bool:
    """An agent whose tier only shadows never gets standing approvals."""
    tier = snapshot.get("tier") or {}
    return tier.get("name") == "shadow" or (tier.get("outcomes") or {}).get("write") == "shadow"


def policy_for(snapshot: dict, token_environment: str) -> dict:
    """The policy a call made with a token bound to ``token_environment`` is judged by: the
    agent's with that environment's override (``rollout.policy.effective_snapshot``); the
    agent's own for an unbound token, whatever its call declares."""
    return effective_snapshot(snapshot, token_environment)


def _bounds(snapshot: dict, tool: str) -> dict:
    return ((snapshot.get("tools") or {}).get(tool) or {}).get("standing") or {}


def terms_refusal(action: Action, terms: Terms, snapshot: dict) -> Refused | None:
    """Why ``terms`` may not go with an approval of ``action`` under the agent's current
    policy ``snapshot``: ``400 standing_out_of_bounds`` with the field at fault. A card
    held for low confidence offers none: its hold is for that call alone, and later ones
    like it are held for their own look (``use_for_call``)."""
    snapshot = policy_for(snapshot, action.environment)
    if in_shadow(snapshot):
        problems = {"standing": "An agent in shadow never gets standing approvals."}
    elif not covers_hold(action.reason_code):
        problems = {
            "standing": "A call held for low confidence is decided on its own: "
            "no standing approval comes from it or answers one like it."
        }
    else:
        problems = terms_problems(
            _bounds(snapshot, action.tool), terms.minutes, terms.uses, action.risk
        )
    if not problems:
        return None
    return Refused(
        "standing_out_of_bounds",
        "The standing terms are outside the bounds this tool's policy sets: "
        + "; ".join(problems.values()),
        400,
        {field: [text] for field, text in problems.items()},
    )


def _broadcast_on_commit(standing: StandingApproval, change: str) -> None:
    transaction.on_commit(lambda: events.broadcast_standing(standing, change))


def _terms_of(decision: Decision) -> Terms | None:
    if decision.standing_minutes is None or decision.standing_uses is None:
        return None
    return Terms(decision.standing_minutes, decision.standing_uses)


def disagreement(approvals: list[Decision]) -> str | None:
    """Why a card's approvals create no standing approval although some asked for one
    (None: all agree, or nobody asked)."""
    asked = [_terms_of(d) for d in approvals]
    if not any(asked):
        return None
    if all(asked) and len(set(asked)) == 1:
        return None
    return (
        "No standing approval: every approver of the card must give the same standing terms "
        "(" + "; ".join(_terms_text(d) for d in approvals) + ")."
    )


def _terms_text(decision: Decision) -> str:
    terms = _terms_of(decision)
    who = decision.reviewer.get_username()
    if terms is None:
        return f"{who}: none"
    return f"{who}: {terms.minutes} min, {terms.uses} uses"


def create_if_agreed(
    action: Action, approvals: list[Decision], user: Any
) -> StandingApproval | None:
    """With the approval that completed ``action``'s quorum (the caller holds its row
    lock): create the standing approval its approvers agreed on — every approval carrying
    the same terms — for the approved (maybe edited) arguments, the action's agent, tool,
    declared environment and assessed risk. Audits ``standing.created`` (terms, approvers)
    or, when terms were asked but differ, ``standing.not_created`` with why; broadcasts on
    commit."""
    terms = {_terms_of(d) for d in approvals}
    if terms == {None}:
        return None
    why = disagreement(approvals)
    if why is not None:
        append_event(
            verb=verbs.STANDING_NOT_CREATED,
            actor=Actor.user(user),
            target_type="action",
            target_id=action.pk,
            agent_slug=action.agent.slug,
            correlation_id=action.correlation_id,
            data={"why": why},
        )
        return None
    (agreed,) = terms
    assert agreed is not None
    snapshot = _current_policy(action.agent_id)
    bounds = _bounds(policy_for(snapshot.snapshot, action.environment), action.tool)
    now = timezone.now()
    standing = StandingApproval.objects.create(
        agent=action.agent,
        tool=action.tool,
        environment=environment_of(action.blast_radius),
        arguments=action.arguments,
        at_most=list(bounds.get("at_most") or []),
        risk=action.risk,
        max_uses=agreed.uses,
        minutes=agreed.minutes,
        expires_at=now + timedelta(minutes=agreed.minutes),
        source_action=action,
        policy_version=snapshot,
    )
    standing.approvers.set([d.reviewer for d in approvals])
    append_event(
        verb=verbs.STANDING_CREATED,
        actor=Actor.user(user),
        target_type="standing_approval",
        target_id=standing.pk,
        agent_slug=action.agent.slug,
        correlation_id=action.correlation_id,
        data={
            "action": action.pk,
            "tool": action.tool,
            "environment": standing.environment,
            "minutes": agreed.minutes,
            "uses": agreed.uses,
            "risk": standing.risk,
            "at_most": standing.at_most,
            "expires_at": standing.expires_at.isoformat(),
            "approvers": [d.reviewer.get_username() for d in approvals],
            "payload_hash": action.payload_hash,
            "policy_version": snapshot.number,
        },
    )
    _broadcast_on_commit(standing, "created")
    return standing


def _current_policy(agent_id: int) -> PolicyVersion:
    return Agent.objects.select_related("current_policy").get(pk=agent_id).current_policy


# --- the gate -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Use:
    """A standing approval that covers a call, with the use this call takes."""

    standing: StandingApproval
    number: int  # 1-based
    approvers: list[str]


@dataclass
class Lookup:
    """What the gate's look-up found and changed: the use (None: nothing covers the call)
    and the standing approvals it ended on the way, audited by ``record_lookup`` once the
    submission's own event is written."""

    use: Use | None = None
    ended: list[tuple[StandingApproval, str, Actor]] = field(default_factory=list)


def use_for_call(
    *,
    agent: Agent,
    snapshot: dict,
    tool: str,
    arguments: Any,
    blast_radius: Any,
    token_environment: str,
    on_behalf_of: str,
    risk: str,
    reason_code: str,
) -> Lookup:
    """Inside the gate's transaction, for a call it would otherwise answer ``pending``:
    the first active standing approval (oldest first) that covers it, with one use taken
    (``uses + 1`` under ``SELECT … FOR UPDATE``, so two calls racing for the last use get
    it once: the second re-reads the row after the first commits). Never for an agent in
    shadow, or when the tool's bounds no longer allow it, and never for a call held for its
    own sake (``rollout.standing.covers_hold``: a ``low_confidence`` hold asks a person to
    look at this very call). One that ran out of time is ended
    (``expired``) on the way; the one whose last use this is, ended (``used_up``).
    Writes no audit event: the caller calls ``record_lookup`` after the submission's."""
    lookup = Lookup()
    snapshot = policy_for(snapshot, token_environment)
    bounds = _bounds(snapshot, tool)
    if in_shadow(snapshot) or not is_allowed(bounds) or not covers_hold(reason_code):
        return lookup
    ceiling = bounds.get("max_risk")
    candidates = list(
        StandingApproval.objects.select_for_update(of=("self",))
        .select_related("agent")
        .filter(
            agent=agent,
            tool=tool,
            environment=environment_of(blast_radius),
            # Approved for calls with a token of the same environment: an unbound token
            # declaring "staging" does not use what a staging-bound call was approved for.
            source_action__environment=token_environment,
            ended_at__isnull=True,
        )
        .order_by("id")
    )
    now = timezone.now()
    for standing in candidates:
        if standing.expires_at <= now:
            _mark_ended(standing, EndReason.EXPIRED, Actor.system("expiry"), lookup)
            continue
        if standing.uses >= standing.max_uses:
            _mark_ended(standing, EndReason.USED_UP, Actor.system("standing"), lookup)
            continue
        if match_problem(standing.arguments, standing.at_most, standing.risk, arguments, risk):
            continue
        if ceiling not in RISKS or RISKS.index(risk) > RISKS.index(ceiling):
            continue  # above the tool's bound now (narrowing ends these; this is a backstop)
        approvers = [user.get_username() for user in standing.approvers.all()]
        if on_behalf_of and any(same_person(on_behalf_of, name) for name in approvers):
            continue  # nobody approves their own request, standing or not
        standing.uses += 1
        standing.save(update_fields=["uses"])
        lookup.use = Use(standing, standing.uses, approvers)
        if standing.uses >= standing.max_uses:
            _mark_ended(standing, EndReason.USED_UP, Actor.system("standing"), lookup)
        break
    return lookup


def _mark_ended(standing: StandingApproval, reason: str, actor: Actor, lookup: Lookup) -> None:
    standing.ended_at = timezone.now()
    standing.end_reason = reason
    standing.ended_by = str(actor)
    standing.save(update_fields=["ended_at", "end_reason", "ended_by"])
    lookup.ended.append((standing, reason, actor))


def record_lookup(lookup: Lookup) -> None:
    """Audit (``standing.ended``) and broadcast what the gate's look-up ended; broadcast
    the use."""
    for standing, reason, actor in lookup.ended:
        _audit_end(standing, reason, actor)
    if lookup.use is not None and lookup.use.standing.ended_at is None:
        _broadcast_on_commit(lookup.use.standing, "used")


# --- ending ---------------------------------------------------------------------------------


def _end_locked(standing: StandingApproval, reason: str, actor: Actor, **data: Any) -> None:
    standing.ended_at = timezone.now()
    standing.end_reason = reason
    standing.ended_by = str(actor)
    standing.save(update_fields=["ended_at", "end_reason", "ended_by"])
    _audit_end(standing, reason, actor, **data)


def _audit_end(standing: StandingApproval, reason: str, actor: Actor, **data: Any) -> None:
    append_event(
        verb=verbs.STANDING_ENDED,
        actor=actor,
        target_type="standing_approval",
        target_id=standing.pk,
        agent_slug=standing.agent.slug,
        data={
            "reason": reason,
            "why": END_TEXT[reason],
            "tool": standing.tool,
            "uses": standing.uses,
            "max_uses": standing.max_uses,
            **data,
        },
    )
    _broadcast_on_commit(standing, "ended")


def _hold_chain_head(agent_slug: str) -> None:
    """Take the audit chain head the ending's event goes to before any standing approval
    row: a gate call takes its head first and then the row, so a holder of the row never
    waits for a head (no lock cycle however many gate calls wait on the row)."""
    lock_chain_position(agent_slug)


def _end_all(queryset: QuerySet, reason: str, actor: Actor, **data: Any) -> int:
    ended = list(
        queryset.filter(ended_at__isnull=True)
        .select_for_update(of=("self",))
        .select_related("agent")
        .order_by("id")
    )
    for standing in ended:
        _end_locked(standing, reason, actor, **data)
    return len(ended)


def revoke(*, standing_id: int, user: Any, channel: str = "api") -> StandingApproval:
    """A reviewer of the agent ends a standing approval at once (a tightening: nobody else
    is asked). Audits ``standing.ended`` (reason ``revoked``); broadcasts on commit.
    Refused: ``404 not_found`` (or not visible), ``409 not_active`` (already ended)."""
    slug = (
        StandingApproval.objects.filter(pk=standing_id)
        .values_list("agent__slug", flat=True)
        .first()
    )
    with transaction.atomic():
        if slug is not None:
            _hold_chain_head(slug)
        standing = (
            StandingApproval.objects.select_for_update(of=("self",))
            .select_related("agent")
            .filter(pk=standing_id)
            .first()
        )
        if standing is None or not rollout_permissions.can_review(user, standing.agent):
            raise Refused("not_found", "No such standing approval.", 404)
        if standing.ended_at is not None:
            raise Refused(
                "not_active",
                f"This standing approval already ended ({END_TEXT[standing.end_reason]}).",
                409,
            )
        _end_locked(standing, EndReason.REVOKED, Actor.user(user), channel=channel)
    return standing


def end_for_kill_switch(*, switch: KillSwitch, actor: Actor) -> int:
    """Inside an engaging kill switch's transaction: end every active standing approval in
    its scope (global, the agent, or the tool; of its environment and of unbound tokens when
    it has one). Releasing the switch brings none back; a
    drill switch never calls this. Audits each (reason ``kill_switch``)."""
    queryset = StandingApproval.objects.all()
    if switch.scope == KillSwitch.Scope.AGENT:
        queryset = queryset.filter(agent__slug=switch.target)
    elif switch.scope == KillSwitch.Scope.TOOL:
        queryset = queryset.filter(tool=switch.target)
    if switch.environment:
        # As the sweep: its environment's, and those approved for unbound tokens' calls.
        queryset = queryset.filter(source_action__environment__in=[switch.environment, ""])
    return _end_all(queryset, EndReason.KILL_SWITCH, actor, kill_switch=switch.pk)


def end_for_policy_change(
    *, agent: Agent, tools: set[str] | None, actor: Actor, policy_version: int | None = None
) -> int:
    """Inside a policy change's transaction: end the agent's active standing approvals of
    ``tools`` (whose rule changed), or all of them (``None``: the tier or the agent's
    activity changed). Audits each (reason ``policy_changed``)."""
    _hold_chain_head(agent.slug)
    queryset = StandingApproval.objects.filter(agent=agent)
    if tools is not None:
        if not tools:
            return 0
        queryset = queryset.filter(tool__in=tools)
    return _end_all(queryset, EndReason.POLICY_CHANGED, actor, policy_version=policy_version)


def end_expired(*, limit: int = 1000) -> int:
    """End (audited, reason ``expired``) the standing approvals whose time ran out, each in
    its own transaction, so the log says when one stopped even if no call came after. The
    gate never uses one past its time either way."""
    due = list(
        StandingApproval.objects.filter(ended_at__isnull=True, expires_at__lte=timezone.now())
        .values_list("pk", "agent__slug")
        .order_by("pk")[:limit]
    )
    ended = 0
    for standing_id, slug in due:
        with transaction.atomic():
            _hold_chain_head(slug)
            standing = (
                StandingApproval.objects.select_for_update(of=("self",))
                .select_related("agent")
                .filter(pk=standing_id, ended_at__isnull=True, expires_at__lte=timezone.now())
                .first()
            )
            if standing is not None:
                _end_locked(standing, EndReason.EXPIRED, Actor.system("expiry"))
                ended += 1
    return ended


# --- reading --------------------------------------------------------------------------------


def active(queryset: QuerySet | None = None) -> QuerySet[StandingApproval]:
    """Standing approvals still in force now (not ended, not out of time or uses)."""
    queryset = StandingApproval.objects.all() if queryset is None else queryset
    return (
        queryset.filter(
            ended_at__isnull=True, expires_at__gt=timezone.now(), uses__lt=F("max_uses")
        )
        .select_related("agent", "source_action")
        .prefetch_related("approvers")
        .order_by("expires_at", "id")
    )


def active_for_reviewer(user: Any) -> QuerySet[StandingApproval]:
    """The active standing approvals of every agent ``user`` reviews (the queue page)."""
    if not is_active_person(user):
        return StandingApproval.objects.none()
    if user.has_perm(rollout_permissions.REVIEW):
        return active()
    agents = rollout_permissions.reviewable_agents(user)
    return active(StandingApproval.objects.filter(agent__in=agents))
