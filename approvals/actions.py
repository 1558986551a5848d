"""Every change to an action passes through here: the gate's submission, people's decisions,
the agent's withdrawals and reports, expiry, and the kill switch's sweep.

Each function locks the action row, checks the transition against ``approvals.states``,
saves, writes the audit event (and any owed webhook as an outbox row) in the same
transaction, and queues the broadcast with ``transaction.on_commit``."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from accounts.stepup import risk_needs_step_up
from approvals import events, hooks, notifications, rules, standing
from approvals.masking import keep_masked_values
from approvals.models import Action, Channel, Decision, EmailDecisionLink, Outbox, Report
from approvals.permissions import reviewable_actions
from approvals.states import APPROVED_BY_STANDING, EXECUTABLE, Status, transition
from audit import verbs
from audit.canonical import canonical_json, payload_hash, sha256_hex
from audit.chain import (
    FREE_STRIPE_SQL,
    Actor,
    ChainPosition,
    append_event,
    lock_chain_position,
    new_event,
    stripe_partitions,
    write_event,
)
from audit.installation import installation_id
from core.digests import token_digest
from core.errors import Refused
from core.links import public_link
from core.sql import insert_statement, mark_saved
from grants.tokens import InvalidGrant, read_grant, sign_grant
from rollout import permissions as rollout_permissions
from rollout.actions import KILL_SWITCH_LOCK_KEY, engaged_switches_for, release_for
from rollout.models import Agent, KillSwitch, PolicyVersion
from rollout.policy import (
    Counters,
    GateRequest,
    SwitchState,
    assess_edit,
    confidence_of,
    evaluate,
)

DEFAULT_REVERSIBLE_WINDOW_SECONDS = 24 * 3600


class ActionRefused(Refused):
    """A request about an action the rules refuse."""


@dataclass
class Submission:
    action: Action
    created: bool  # False: an idempotent replay of an earlier submission


# --- helpers ------------------------------------------------------------------------------


def _on_commit_broadcast(action: Action, change: str) -> None:
    transaction.on_commit(lambda: events.broadcast_action(action, change))


def _owe_webhook(action: Action, event: str) -> None:
    """Record the webhook owed to the agent for this change, in the change's transaction."""
    if not action.callback_url:
        return
    row = Outbox.objects.create(
        kind=Outbox.Kind.WEBHOOK,
        action=action,
        agent=action.agent,
        destination=action.callback_url,
        payload={
            "event": event,
            "action_id": action.pk,
            "status": action.status,
            "feedback": action.feedback,
            "payload_hash": action.payload_hash,
            "arguments": action.arguments,
            "at": timezone.now().isoformat(),
            # Where people see it; built from AIRLOCK_PUBLIC_URL like every outgoing link.
            "links": {"card": public_link("action-detail", action.pk)},
        },
    )
    from approvals.tasks import enqueue_delivery

    transaction.on_commit(lambda: enqueue_delivery(row.pk))


def _audit(action: Action, verb: str, actor: Actor, data: dict | None = None) -> None:
    append_event(
        verb=verb,
        actor=actor,
        target_type="action",
        target_id=action.pk,
        agent_slug=action.agent.slug,
        correlation_id=action.correlation_id,
        data={"status": action.status, **(data or {})},
    )


def _lock(action_id: int) -> Action:
    return (
        Action.objects.select_for_update(of=("self",))
        .select_related("agent", "policy_version")
        .get(pk=action_id)
    )


def _is_expired(action: Action) -> bool:
    return action.expires_at is not None and timezone.now() >= action.expires_at


def _expire_locked(action: Action, actor: Actor) -> None:
    transition(action, Status.EXPIRED)
    action.decided_at = timezone.now()
    action.feedback = "Expired before a human decided."
    action.save(update_fields=["status", "decided_at", "feedback", "updated_at"])
    _audit(action, verbs.ACTION_EXPIRED, actor, {"expires_at": action.expires_at.isoformat()})
    _owe_webhook(action, "action.expired")
    _on_commit_broadcast(action, "expired")


AGENT_GONE_FEEDBACK = "Cancelled: the agent stopped renewing its lease (agent_gone)."


def _cancel_gone_locked(action: Action) -> None:
    """The agent's lease lapsed: nobody is waiting for this decision any more."""
    transition(action, Status.CANCELLED)
    action.decided_at = timezone.now()
    action.feedback = AGENT_GONE_FEEDBACK
    action.save(update_fields=["status", "decided_at", "feedback", "updated_at"])
    _audit(
        action,
        verbs.ACTION_CANCELLED,
        Actor.system("lease"),
        {"reason": "agent_gone", "lease_expires_at": action.lease_expires_at.isoformat()},
    )
    _owe_webhook(action, "action.cancelled")
    _on_commit_broadcast(action, "agent_gone")


def _settle_overdue_locked(action: Action) -> rules.Refusal | None:
    """End a pending action whose deadline passed (``rules.overdue``: expiry or a lapsed
    lease, whichever came first), in the caller's transaction; None when none has."""
    if action.status != Status.PENDING:
        return None
    lapsed = rules.overdue(action, timezone.now())
    if lapsed is rules.EXPIRED:
        _expire_locked(action, Actor.system("expiry"))
    elif lapsed is rules.AGENT_GONE:
        _cancel_gone_locked(action)
    return lapsed


# --- the gate -----------------------------------------------------------------------------


# Fields of a submission that say how its caller waits, not what it asks: a replay may
# differ in them (a call first put to people by an MCP card round, then retried by a client
# that waits with a lease) and is still the same request.
NOT_FINGERPRINTED = frozenset({"lease_seconds"})


def request_fingerprint(body: dict) -> str:
    """Digest of a submission body, to tell an idempotent replay from a conflicting reuse
    of the same key. The lease is left out: it is set by the submission that creates the
    action, and a replay neither sets nor changes it."""
    return sha256_hex(canonical_json({k: v for k, v in body.items() if k not in NOT_FINGERPRINTED}))


def _existing_submission(
    agent: Agent, environment: str, key: str, fingerprint: str
) -> Submission | None:
    existing = Action.objects.filter(
        agent=agent, environment=environment, idempotency_key=key
    ).first()
    if existing is None:
        return None
    if existing.request_hash != fingerprint:
        raise ActionRefused(
            "idempotency_conflict",
            "This Idempotency-Key was already used with a different request body.",
        )
    return Submission(existing, created=False)


def submit_action(
    *,
    agent: Agent,
    idempotency_key: str,
    body: dict,
    drill_probe: bool = False,
    environment: str = "",
) -> Submission:
    """The gate: decide one tool call and record it as an action.

    Creates the action in its initial status (allowed, denied, shadowed or pending) with
    the decision's reasons and the policy version used. Audits ``action.submitted`` —
    for every outcome — in the same transaction, so the event is durable before the agent
    gets its answer; broadcasts a pending action to its reviewers on commit. Replays of the
    same key and body return the first action.

    ``drill_probe``: the caller recognised a running drill's own probe token
    (``approvals.hooks.drill_probe_call``); without it ``PROBE_TOOL`` is an unknown tool.

    ``environment``: the environment of the agent's token ("" = unbound). The action is
    recorded in it; a call declaring another is denied (``environment_mismatch``); one
    declaring none is recorded as declared in it. Idempotency keys are per environment."""
    fingerprint = request_fingerprint(body)
    try:
        submission = _decide_and_record(
            agent, idempotency_key, fingerprint, body, drill_probe, environment
        )
    except (_KeyTaken, IntegrityError):
        # The key is taken: by an earlier request (found inside the transaction), or by a
        # concurrent one that won the unique constraint. Answer with its action (or the
        # conflict) from the committed row, outside the aborted transaction.
        replay = _existing_submission(agent, environment, idempotency_key, fingerprint)
        if replay:
            return replay
        raise
    _check_breaker(agent)
    return submission


def _check_breaker(agent: Agent) -> None:
    """After the change committed: let the agent's circuit breaker look at the window."""
    if agent.circuit_breaker:
        hooks.after_counted_outcome(agent.pk)


class _KeyTaken(Exception):
    """An action with this idempotency key exists; rolls the gate's transaction back."""


@dataclass
class _GateInputs:
    """What the gate reads, under the kill-switch lock, before it decides."""

    policy: PolicyVersion
    counters: Counters
    switches: list[SwitchState]
    position: ChainPosition  # the locked audit chain head the event goes to
    action_id: int | None  # drawn in advance on PostgreSQL (the event names it)


# The gate's reads on PostgreSQL, in two statements rather than six. A statement sees what
# was committed when it started, so the kill switches are read by the second one, after the
# first has taken the kill-switch lock shared: a call that waited for an engage sees the
# switch (incidents.actions). Policy, idempotency key and counters need no such ordering.
_GATE_READ_SQL = """
SELECT pg_advisory_xact_lock_shared(%s),
       pv.id, pv.number, pv.snapshot,
       EXISTS (SELECT 1 FROM approvals_action
               WHERE agent_id = a.id AND environment = %s AND idempotency_key = %s),
       recent.agent_count, recent.tool_count
FROM rollout_agent a
JOIN rollout_policyversion pv ON pv.id = a.current_policy_id
CROSS JOIN LATERAL (
    SELECT count(*) AS agent_count, count(*) FILTER (WHERE tool = %s) AS tool_count
    FROM approvals_action WHERE agent_id = a.id AND created_at >= %s
) AS recent
WHERE a.id = %s
"""
_GATE_LOCK_SQL = f"""
WITH switches AS (
    SELECT coalesce(json_agg(json_build_array(id, scope, target, is_drill, environment)), '[]')
           AS list
    FROM rollout_killswitch
    WHERE released_at IS NULL
      AND (scope = 'global' OR (scope = 'agent' AND target = %s)
           OR (scope = 'tool' AND target = %s))
      AND (environment = '' OR %s = '' OR environment = %s)
), stripe AS ({FREE_STRIPE_SQL})
SELECT switches.list, nextval(pg_get_serial_sequence('approvals_action', 'id')),
       stripe.partition, stripe.last_seq, stripe.last_hash
FROM switches LEFT JOIN stripe ON true
"""  # noqa: S608 (constant parts only)


def _read_gate_inputs(agent: Agent, request: GateRequest, key: str, since: Any) -> _GateInputs:
    """Take the kill-switch lock shared, then read the policy, the rate counters and the
    engaged switches that may apply to the call (of every environment, and of its token's;
    all of them for an unbound token), and lock an audit chain head. Raises ``_KeyTaken``
    when an action with this idempotency key exists in the token's environment."""
    if connection.vendor != "postgresql":
        return _read_gate_inputs_orm(agent, request, key, since)
    tool, environment = request.tool, request.environment
    with connection.cursor() as cursor:
        cursor.execute(
            _GATE_READ_SQL, [KILL_SWITCH_LOCK_KEY, environment, key, tool, since, agent.pk]
        )
        _, policy_id, number, snapshot, key_taken, agent_count, tool_count = cursor.fetchone()
        if key_taken:
            raise _KeyTaken
        cursor.execute(
            _GATE_LOCK_SQL,
            [agent.slug, tool, environment, environment, stripe_partitions(agent.slug)],
        )
        switch_rows, action_id, *stripe = cursor.fetchone()
    policy = mark_saved(
        PolicyVersion(
            id=policy_id,
            agent=agent,
            number=number,
            snapshot=_SNAPSHOT_FIELD.from_db_value(snapshot, None, connection),
        )
    )
    return _GateInputs(
        policy=policy,
        counters=Counters(agent_last_minute=agent_count, tool_last_minute=tool_count),
        switches=[SwitchState(*row) for row in switch_rows],  # json: psycopg decodes it
        position=lock_chain_position(agent.slug, None if stripe[0] is None else tuple(stripe)),
        action_id=action_id,
    )


_SNAPSHOT_FIELD = PolicyVersion._meta.get_field("snapshot")


def _read_gate_inputs_orm(agent: Agent, request: GateRequest, key: str, since: Any) -> _GateInputs:
    """``_read_gate_inputs`` through the ORM (SQLite: one writer at a time, no lock)."""
    tool = request.tool
    if Action.objects.filter(
        agent=agent, environment=request.environment, idempotency_key=key
    ).exists():
        raise _KeyTaken
    policy = Agent.objects.select_related("current_policy").get(pk=agent.pk).current_policy
    recent = Action.objects.filter(agent=agent, created_at__gte=since).aggregate(
        agent_last_minute=Count("id"), tool_last_minute=Count("id", filter=Q(tool=tool))
    )
    return _GateInputs(
        policy=policy,
        counters=Counters(**recent),
        switches=[
            SwitchState(s.pk, s.scope, s.target, s.is_drill, s.environment)
            for s in engaged_switches_for(agent.slug, tool, request.environment)
        ],
        position=lock_chain_position(agent.slug),
        action_id=None,
    )


@transaction.atomic
def _decide_and_record(
    agent: Agent,
    key: str,
    fingerprint: str,
    body: dict,
    drill_probe: bool = False,
    environment: str = "",
) -> Submission:
    """One transaction of three statements on PostgreSQL (plus BEGIN and COMMIT): two reads
    (``_read_gate_inputs``), then the action, its ``action.submitted`` event and the chain
    head written together (``audit.chain.write_event``)."""
    tool = body["tool"]
    arguments = body["arguments"]
    request = GateRequest(
        tool,
        arguments,
        body.get("blast_radius") or {},
        drill_probe=drill_probe,
        environment=environment,
        confidence=confidence_of(body.get("rationale")),
    )
    # Recorded as assessed: a bound token's environment stands in for an undeclared one,
    # so a reviewer's edit, a standing approval and the card all see where it runs.
    blast_radius = request.recorded_blast_radius
    now = timezone.now()
    inputs = _read_gate_inputs(agent, request, key, now - timedelta(seconds=60))
    policy = inputs.policy
    decision = evaluate(policy.snapshot, request, inputs.switches, inputs.counters)

    action = Action(
        id=inputs.action_id,
        agent=agent,
        release=release_for(agent, body.get("release")),
        tool=tool,
        effect=decision.effect,
        arguments=arguments,
        original_arguments=arguments,
        summary=body.get("summary", ""),
        rationale=body.get("rationale") or {},
        evidence=body.get("evidence") or [],
        blast_radius=blast_radius,
        compensation=body.get("compensation"),
        on_behalf_of=body.get("on_behalf_of", ""),
        callback_url=body.get("callback_url", ""),
        status=decision.outcome,
        reason_code=decision.reason_code,
        reasons=decision.reasons,
        risk=decision.risk,
        required_approvals=decision.required_approvals,
        needs_critical_approver=decision.needs_critical_approver,
        payload_hash=payload_hash(arguments),
        policy_version=policy,
        idempotency_key=key,
        environment=environment,
        request_hash=fingerprint,
        correlation_id=str(body.get("correlation_id") or ""),
        expires_at=now + timedelta(seconds=decision.ttl_seconds) if decision.ttl_seconds else None,
        lease_seconds=body.get("lease_seconds"),
        lease_expires_at=(
            now + timedelta(seconds=body["lease_seconds"])
            if body.get("lease_seconds") and decision.outcome == Status.PENDING
            else None
        ),
        grant_expires_at=_grant_deadline(now) if decision.outcome == Status.ALLOWED else None,
    )
    if decision.outcome == Status.DENIED and decision.reason_code == "kill_switch":
        action.feedback = "; ".join(decision.reasons)
    covered = None
    if decision.outcome == Status.PENDING:
        covered = standing.use_for_call(
            agent=agent,
            snapshot=policy.snapshot,
            tool=tool,
            arguments=arguments,
            blast_radius=blast_radius,
            token_environment=environment,
            on_behalf_of=action.on_behalf_of,
            risk=decision.risk,
            reason_code=decision.reason_code,
        )
        if covered.use is not None:
            _approve_by_standing(action, covered.use, now)
    if action.id is None:  # no id drawn in advance: the row first, for the event to name
        action.save()
        if action.status in EXECUTABLE:  # allowed, or approved by a standing approval
            _issue_grant(action, now)
            action.save(update_fields=["grant", "grant_id"])
        also = []
    else:
        if action.status in EXECUTABLE:  # allowed, or approved by a standing approval
            _issue_grant(action, now)
        also = [insert_statement(action)]
    # A duplicate idempotency key aborts this whole transaction; submit_action answers it.
    write_event(
        new_event(
            inputs.position,
            verb=verbs.ACTION_SUBMITTED,
            actor=Actor.agent(agent),
            target_type="action",
            target_id=action.pk,
            agent_slug=agent.slug,
            correlation_id=action.correlation_id,
            # A covered call is recorded as the gate held it (pending), then approved by
            # the standing approval's own event: each status move has its event.
            data={
                "tool": tool,
                "outcome": decision.outcome,
                "reason_code": decision.reason_code,
                "reasons": decision.reasons,
                "risk": decision.risk,
                "policy_version": policy.number,
                "payload_hash": action.payload_hash,
                "switch_id": decision.switch_id,
                "environment": environment,
                **(
                    {"standing_approval": covered.use.standing.pk}
                    if covered and covered.use
                    else {}
                ),
            },
        ),
        also=also,
    )
    mark_saved(action)
    if covered is not None:
        # Audited after the submission's event, which took the chain head read above.
        standing.record_lookup(covered)
    if covered is not None and covered.use is not None:
        _record_standing_use(action, covered.use)
    elif action.status == Status.PENDING:
        notifications.owe_new_pending(action)
        hooks.action_pending(action)
        _on_commit_broadcast(action, "submitted")
    return Submission(action, created=True)


def _approve_by_standing(action: Action, covered: standing.Use, now: Any) -> None:
    """A call the gate holds for people goes straight on to ``approved`` when people's
    standing approval covers it: the table's own pending → approved move, taken at once
    (``approvals.states``), with the grant window of any approval."""
    transition(action, APPROVED_BY_STANDING[1])
    action.reason_code = standing.REASON_CODE
    action.reasons = [
        *action.reasons,
        f"approved by standing approval #{covered.standing.pk} of "
        f"{', '.join(covered.approvers)} (use {covered.number} of {covered.standing.max_uses})",
    ]
    action.standing_approval = covered.standing
    action.expires_at = None
    action.lease_expires_at = None
    action.decided_at = now
    action.grant_expires_at = _grant_deadline(now)


def _record_standing_use(action: Action, covered: standing.Use) -> None:
    """After the submission event: the approval event of a call a standing approval
    covered (its id, the use, the approvers), the webhook owed as for any approval, the
    broadcast on commit."""
    _audit(
        action,
        verbs.ACTION_APPROVED,
        Actor.system("standing_approval"),
        {
            "standing_approval": covered.standing.pk,
            "use": covered.number,
            "max_uses": covered.standing.max_uses,
            "approvers": covered.approvers,
            "channels": [Channel.STANDING],
            "payload_hash": action.payload_hash,
            "policy_version": action.policy_version.number,
        },
    )
    _owe_webhook(action, "action.approved")
    _on_commit_broadcast(action, "approved")


def _grant_deadline(start: Any) -> Any:
    return start + timedelta(seconds=settings.GRANT_TTL_SECONDS)


def _obo_username(on_behalf_of: str) -> str | None:
    """The username of the person an action is on behalf of, when it names one exactly."""
    if not on_behalf_of:
        return None
    model = get_user_model()
    found = model._default_manager.filter(**{model.USERNAME_FIELD: on_behalf_of}).exists()
    return on_behalf_of if found else None


def _issue_grant(action: Action, now: Any) -> None:
    """Sign the execution grant of an action that just became allowed or approved (it must
    have its id and ``grant_expires_at``) and keep it on the row (the caller saves): the
    claims bind the action to its tool, the canonical hash of the arguments that will run,
    the person it acts for, its environment and policy version, until the grant window
    closes. Issued once; a replay of the submission answers the stored token."""
    action.grant_id = uuid.uuid4().hex
    claims = {
        "iss": installation_id(),
        "jti": action.grant_id,
        "sub": str(action.pk),
        "agent": action.agent.slug,
        "tool": action.tool,
        "payload_hash": action.payload_hash,
        "obo": _obo_username(action.on_behalf_of),
        # The environment of the token that asked (null for an unbound token).
        "env": action.environment or None,
        "pv": None if action.policy_version is None else action.policy_version.number,
        "iat": int(now.timestamp()),
        "exp": int(action.grant_expires_at.timestamp()),
    }
    action.grant = sign_grant(claims)


# --- people's decisions -------------------------------------------------------------------


def current_approvals(action: Action) -> list[Decision]:
    """Approvals bound to the action's current payload; voided ones do not count."""
    return rules.current_approvals(
        action, action.decisions.select_related("reviewer").order_by("created_at", "id")
    )


def _critical_approver_of(action: Action) -> rules.IsCriticalApprover:
    return lambda person: rollout_permissions.can_approve_critical(person, action.agent)


def decision_refusal(
    action: Action, user: Any, verdict: str, *, seen_hash: str | None = None
) -> rules.Refusal | None:
    """``rules.decision_refusal`` with this person's permissions and the action's current
    approvals read now. The write path asks it under the row lock; a single card asks it
    too (a page of cards asks the same rule over prefetched rows)."""
    return rules.decision_refusal(
        action,
        user,
        verdict,
        approvals=current_approvals(action),
        may_review=rollout_permissions.can_review(user, action.agent),
        is_critical_approver=_critical_approver_of(action),
        now=timezone.now(),
        seen_hash=seen_hash,
    )


def _refuse_or_expire(
    action: Action, user: Any, verdict: str, seen_hash: str | None
) -> ActionRefused | None:
    refusal = decision_refusal(action, user, verdict, seen_hash=seen_hash)
    if refusal is None:
        return None
    if refusal in (rules.EXPIRED, rules.AGENT_GONE):
        # Expiry and a lapsed lease are denials: record them now, in this transaction, then
        # refuse — correctness never waits for the sweep.
        _settle_overdue_locked(action)
    return ActionRefused(refusal.code, refusal.detail, refusal.status)


# Called by the write path with the action (its risk already re-assessed) when approving
# it needs a fresh second factor; raises (``accounts.stepup.StepUpRequired``) when the
# person has none. Pages and the API pass one that checks their request.
StepUpCheck = Callable[[Action], None]


def _require_step_up(action: Action, step_up: StepUpCheck | None) -> None:
    """Step-up is decided on the risk of the payload that will run, under the row lock: an
    edit that raised the risk asks for it even when the card did not."""
    if not risk_needs_step_up(action.risk):
        return
    if step_up is None:  # a path that cannot ask for a second factor may not approve this
        raise ActionRefused(
            "step_up_required",
            f"Approving a {action.risk}-risk action needs a fresh second factor.",
            403,
        )
    step_up(action)


def approve(
    *,
    action_id: int,
    user: Any,
    comment: str = "",
    arguments: dict | None = None,
    seen_hash: str | None = None,
    channel: str = Channel.API,
    step_up: StepUpCheck | None = None,
    standing_terms: standing.Terms | None = None,
) -> Action:
    """Record ``user``'s approval (optionally of edited ``arguments``) of the payload they
    saw (``seen_hash``; refused with ``payload_changed`` when it is no longer the one that
    would run); decide the action once the quorum is met.

    ``standing_terms`` ("also approve matching calls for N minutes, up to K uses") must fit
    the tool's standing bounds in the agent's current policy (``400
    standing_out_of_bounds``, nothing recorded); the approval that completes the quorum
    creates the standing approval when every approval carries the same terms
    (``approvals.standing.create_if_agreed``).

    An edit keeps the original beside it, changes the payload hash, voids earlier approvals
    and is re-assessed under the agent's current policy (``_apply_edit``): a refused edit
    changes nothing; one that raised the bar leaves the action pending until it is met.
    Step-up is asked on the resulting risk. Audits ``action.edited``,
    ``action.approval_recorded`` and ``action.approved`` (each with the ``channel``); owes
    a webhook and broadcasts on commit. Nothing is written when anything is refused."""
    with transaction.atomic():
        action = _lock(action_id)
        refusal = _refuse_or_expire(action, user, Decision.Verdict.APPROVE, seen_hash)
        if (
            refusal is None
            and arguments is not None
            and payload_hash(arguments) != action.payload_hash
        ):
            refusal = _apply_edit(action, user, arguments, channel)
        if refusal is None and standing_terms is not None:
            refusal = _standing_terms_refusal(action, standing_terms)
        if refusal is None:
            _require_step_up(action, step_up)
            _record_approval(action, user, comment, channel, standing_terms)
    if refusal is not None:
        raise refusal
    return action


def _standing_terms_refusal(action: Action, terms: standing.Terms) -> ActionRefused | None:
    """Terms are judged by the agent's current policy, as an edit is (``_apply_edit``)."""
    policy = Agent.objects.select_related("current_policy").get(pk=action.agent_id).current_policy
    refused = standing.terms_refusal(action, terms, policy.snapshot)
    if refused is None:
        return None
    return ActionRefused(refused.code, refused.detail, refused.status, refused.fields)


def _apply_edit(action: Action, user: Any, arguments: dict, channel: str) -> ActionRefused | None:
    """Re-assess the edited payload as the gate would, from the argument limits on, under
    the agent's current policy (with the declared blast radius and the one the edited
    arguments imply); refuse an edit that would now be denied, else store the payload, the
    new bar and the policy version, and void every approval given so far."""
    arguments = keep_masked_values(user, action.tool, action.arguments, arguments)
    if payload_hash(arguments) == action.payload_hash:
        return None  # only masked fields "changed": the editor could not see them
    # The agent's current policy, not the one the agent was judged under: the edited payload
    # is a new request in all but its origin.
    policy = Agent.objects.select_related("current_policy").get(pk=action.agent_id).current_policy
    verdict = assess_edit(
        policy.snapshot, action.tool, arguments, action.blast_radius, action.environment
    )
    if verdict.outcome != Status.PENDING:
        if verdict.reason_code == "argument_limit":
            return ActionRefused(
                "argument_limit",
                "The edited arguments break the tool's limits: " + "; ".join(verdict.reasons),
                400,
            )
        return ActionRefused(
            verdict.reason_code,
            "The agent's current policy would not let these arguments be approved: "
            + "; ".join(verdict.reasons),
            409,
        )
    before = {
        "risk": action.risk,
        "required_approvals": action.required_approvals,
        "needs_critical_approver": action.needs_critical_approver,
        "policy_version": action.policy_version.number,
        "expires_at": action.expires_at.isoformat() if action.expires_at else None,
    }
    old_hash = action.payload_hash
    action.arguments = arguments
    action.payload_hash = payload_hash(arguments)
    action.risk = verdict.risk
    action.required_approvals = verdict.required_approvals
    action.needs_critical_approver = verdict.needs_critical_approver
    action.reason_code = verdict.reason_code
    action.reasons = verdict.reasons
    action.policy_version = policy
    if verdict.ttl_seconds:
        # A riskier payload gets its risk's shorter time to decide, counted from the edit;
        # an edit never extends the time left.
        deadline = timezone.now() + timedelta(seconds=verdict.ttl_seconds)
        if action.expires_at is None or deadline < action.expires_at:
            action.expires_at = deadline
    action.save(
        update_fields=[
            "arguments",
            "payload_hash",
            "risk",
            "required_approvals",
            "needs_critical_approver",
            "reason_code",
            "reasons",
            "policy_version",
            "expires_at",
            "updated_at",
        ]
    )
    voided = action.decisions.filter(verdict=Decision.Verdict.APPROVE, voided=False).update(
        voided=True
    )
    _audit(
        action,
        verbs.ACTION_EDITED,
        Actor.user(user),
        {
            "old_payload_hash": old_hash,
            "new_payload_hash": action.payload_hash,
            "approvals_voided": voided,
            "channel": channel,
            "policy_version": policy.number,
            "before": before,
            "after": {
                "risk": action.risk,
                "required_approvals": action.required_approvals,
                "needs_critical_approver": action.needs_critical_approver,
                "policy_version": policy.number,
                "expires_at": action.expires_at.isoformat() if action.expires_at else None,
            },
            "reasons": verdict.reasons,
        },
    )
    return None


def _record_approval(
    action: Action,
    user: Any,
    comment: str,
    channel: str,
    standing_terms: standing.Terms | None = None,
) -> None:
    edited = (
        action.arguments if action.payload_hash != payload_hash(action.original_arguments) else None
    )
    Decision.objects.create(
        action=action,
        reviewer=user,
        verdict=Decision.Verdict.APPROVE,
        comment=comment,
        edited_arguments=edited,
        payload_hash=action.payload_hash,
        channel=channel,
        standing_minutes=standing_terms.minutes if standing_terms else None,
        standing_uses=standing_terms.uses if standing_terms else None,
    )
    approvals = current_approvals(action)
    _audit(
        action,
        verbs.ACTION_APPROVAL_RECORDED,
        Actor.user(user),
        {
            "comment": comment,
            "payload_hash": action.payload_hash,
            "approvals": len(approvals),
            "required": action.required_approvals,
            "channel": channel,
            **(
                {"standing_terms": {"minutes": standing_terms.minutes, "uses": standing_terms.uses}}
                if standing_terms
                else {}
            ),
        },
    )
    if rules.quorum_met(action, approvals, _critical_approver_of(action)):
        transition(action, Status.APPROVED)
        action.decided_at = timezone.now()
        action.grant_expires_at = _grant_deadline(action.decided_at)
        _issue_grant(action, action.decided_at)
        action.save(
            update_fields=[
                "status",
                "decided_at",
                "grant_expires_at",
                "grant",
                "grant_id",
                "updated_at",
            ]
        )
        _audit(
            action,
            verbs.ACTION_APPROVED,
            Actor.user(user),
            {
                "approvers": [d.reviewer.get_username() for d in approvals],
                "channels": [d.channel for d in approvals],
                "payload_hash": action.payload_hash,
                "policy_version": action.policy_version.number,
            },
        )
        standing.create_if_agreed(action, approvals, user)
        _owe_webhook(action, "action.approved")
        _on_commit_broadcast(action, "approved")
    else:
        _on_commit_broadcast(action, "approval_recorded")


def reject(
    *,
    action_id: int,
    user: Any,
    comment: str,
    seen_hash: str | None = None,
    channel: str = Channel.API,
) -> Action:
    """Reject a pending action as the person saw it (``seen_hash``: refused with
    ``payload_changed`` when the arguments changed since); ``comment`` is returned to the
    agent as ``feedback``. Audits ``action.rejected`` with the ``channel``; owes a webhook
    and broadcasts on commit."""
    action = _reject(
        action_id=action_id, user=user, comment=comment, seen_hash=seen_hash, channel=channel
    )
    _check_breaker(action.agent)
    return action


def _reject(
    *, action_id: int, user: Any, comment: str, seen_hash: str | None, channel: str
) -> Action:
    """``reject`` but for the circuit breaker's look, which runs after the commit."""
    comment = (comment or "").strip()
    if not comment:
        raise ActionRefused(
            "comment_required",
            "A rejection needs a reason for the agent.",
            400,
            fields={"comment": ["Say why you reject it: the reason is returned to the agent."]},
        )
    with transaction.atomic():
        action = _lock(action_id)
        refusal = _refuse_or_expire(action, user, Decision.Verdict.REJECT, seen_hash)
        if refusal is None:
            Decision.objects.create(
                action=action,
                reviewer=user,
                verdict=Decision.Verdict.REJECT,
                comment=comment,
                payload_hash=action.payload_hash,
                channel=channel,
            )
            transition(action, Status.REJECTED)
            action.feedback = comment
            action.decided_at = timezone.now()
            action.save(update_fields=["status", "feedback", "decided_at", "updated_at"])
            _audit(
                action,
                verbs.ACTION_REJECTED,
                Actor.user(user),
                {"comment": comment, "payload_hash": action.payload_hash, "channel": channel},
            )
            _owe_webhook(action, "action.rejected")
            _on_commit_broadcast(action, "rejected")
    if refusal is not None:
        raise refusal
    return action


# --- decisions from an email's links ------------------------------------------------------

# An email link of an action that never expires still does, this long after it was sent.
EMAIL_LINK_LONGEST_SECONDS = 24 * 3600


def issue_email_decision_links(*, action: Action, person: Any) -> dict[str, str]:
    """The Approve and Reject links of a notification email to ``person``: one per verdict
    they may give now (``decision_refusal``, the card's and the write path's rule), each
    bound to ``person``, the action, the verdict and the current payload hash, and expiring
    with the action (``EMAIL_LINK_LONGEST_SECONDS`` after now for one without expiry).
    Creates ``EmailDecisionLink`` rows (the token's digest only) in the caller's transaction
    and returns ``{verdict: token}``: the tokens exist only in the email. Not audited (a
    link decides nothing; its use is, as the decision, channel ``email``); not broadcast."""
    now = timezone.now()
    expires_at = action.expires_at or now + timedelta(seconds=EMAIL_LINK_LONGEST_SECONDS)
    if expires_at <= now:
        return {}
    tokens = {}
    for verdict in (Decision.Verdict.APPROVE, Decision.Verdict.REJECT):
        if decision_refusal(action, person, verdict, seen_hash=action.payload_hash) is not None:
            continue
        token = secrets.token_urlsafe(32)
        EmailDecisionLink.objects.create(
            action=action,
            person=person,
            verdict=verdict,
            payload_hash=action.payload_hash,
            token_digest=token_digest(token),
            expires_at=expires_at,
        )
        tokens[verdict] = token
    return tokens


def email_link_refusal(link: EmailDecisionLink, user: Any) -> rules.Refusal | None:
    """Why ``user`` may not confirm ``link`` now, or None: the link's own rule
    (``rules.email_link_refusal``), then the write path's (``decision_refusal`` on the
    payload the email showed). What the confirmation page asks before it offers to
    confirm; ``decide_by_email_link`` asks the same again under the locks."""
    return rules.email_link_refusal(link, user, timezone.now()) or decision_refusal(
        link.action, user, link.verdict, seen_hash=link.payload_hash
    )


def decide_by_email_link(
    *,
    action_id: int,
    token: str,
    user: Any,
    comment: str = "",
    step_up: StepUpCheck | None = None,
) -> Action:
    """Give the verdict of the email link ``token`` (of action ``action_id``) as ``user``:
    ``approve`` or ``reject`` with channel ``email`` and the payload hash the email showed,
    so every rule of the write path holds (quorum, separation of duties, the critical
    approver, step-up, re-assessed edits → ``payload_changed``, expiry, kill switches).

    Refused when the link is unknown (``link_invalid``), issued to someone else
    (``link_not_yours``), used (``link_used``) or expired (``link_expired``; an action past
    its own deadline is settled first, as the write path would). The link row is locked
    first and marked used in the decision's transaction: a replay, or a second confirmation
    racing the first, is refused ``link_used``. Audits and broadcasts what ``approve`` /
    ``reject`` do (the events name channel ``email``); a refusal writes nothing but what the
    write path records (an expiry)."""
    refusal: Refused | None = None
    with transaction.atomic():
        link = (
            EmailDecisionLink.objects.select_for_update()
            .filter(action_id=action_id, token_digest=token_digest(token))
            .first()
        )
        if link is None:
            raise ActionRefused(rules.LINK_INVALID.code, rules.LINK_INVALID.detail, 404)
        link_refusal = rules.email_link_refusal(link, user, timezone.now())
        if link_refusal is not None:
            if link_refusal is rules.LINK_EXPIRED:
                _settle_overdue_locked(_lock(action_id))
            refusal = ActionRefused(link_refusal.code, link_refusal.detail, link_refusal.status)
        else:
            try:
                if link.verdict == Decision.Verdict.APPROVE:
                    action = approve(
                        action_id=action_id,
                        user=user,
                        comment=comment,
                        seen_hash=link.payload_hash,
                        channel=Channel.EMAIL,
                        step_up=step_up,
                    )
                else:
                    action = _reject(
                        action_id=action_id,
                        user=user,
                        comment=comment,
                        seen_hash=link.payload_hash,
                        channel=Channel.EMAIL,
                    )
            except Refused as refused:
                # What the write path recorded before refusing (an expiry) stays.
                refusal = refused
            else:
                link.used_at = timezone.now()
                link.save(update_fields=["used_at"])
    if refusal is not None:
        raise refusal
    if link.verdict == Decision.Verdict.REJECT:
        _check_breaker(action.agent)
    return action


@dataclass
class BulkResult:
    """What a bulk decision did: the actions decided as asked and those refused, each
    with the refusal's sentence."""

    verdict: str
    done: list[Action]
    refused: list[tuple[int, str]]


def bulk_decide(
    *,
    action_ids: list[int],
    user: Any,
    verdict: str,
    seen_hashes: dict[int, str],
    comment: str = "",
    step_up: StepUpCheck | None = None,
) -> BulkResult:
    """Approve or reject several low-risk pending actions of one tool with one confirmation
    (``rules.bulk_refusal`` refuses the whole request otherwise). Each action then goes
    through ``approve`` or ``reject`` — its own transaction, row lock, quorum, separation
    of duties, step-up and audit — with the payload hash the person saw and channel
    ``bulk``; a risk only ever changes with the payload, so an action edited since is
    refused (``payload_changed``), never approved at a risk the person did not see. One
    refused action does not stop the others."""
    ids = sorted(set(action_ids))
    found = list(reviewable_actions(user).filter(pk__in=ids).order_by("pk"))
    refusal = rules.bulk_refusal(
        found, requested=len(ids), hashes_given=all(seen_hashes.get(pk) for pk in ids)
    )
    if refusal is not None:
        raise ActionRefused(refusal.code, refusal.detail, refusal.status)
    result = BulkResult(verdict, [], [])
    for action in found:
        try:
            if verdict == Decision.Verdict.APPROVE:
                decided = approve(
                    action_id=action.pk,
                    user=user,
                    comment=comment,
                    seen_hash=seen_hashes[action.pk],
                    channel=Channel.BULK,
                    step_up=step_up,
                )
            else:
                decided = reject(
                    action_id=action.pk,
                    user=user,
                    comment=comment,
                    seen_hash=seen_hashes[action.pk],
                    channel=Channel.BULK,
                )
        except ActionRefused as refused:
            if refused.code == "comment_required":
                raise
            result.refused.append((action.pk, refused.detail))
        else:
            result.done.append(decided)
    return result


def extend_expiry(*, action_id: int, user: Any, seconds: int, channel: str = Channel.API) -> Action:
    """Push a pending action's expiry ``seconds`` later, never beyond its tier's
    ``max_pending_seconds`` from its submission (``rules.extension_refusal``, asked under the
    row lock; an action already past its expiry is expired now and refused). Audits
    ``action.expiry_extended`` (before, after, seconds, channel); broadcasts on commit."""
    with transaction.atomic():
        action = _lock(action_id)
        tier = Agent.objects.select_related("tier").get(pk=action.agent_id).tier
        refusal = rules.extension_refusal(
            action,
            may_review=rollout_permissions.can_review(user, action.agent),
            seconds=seconds,
            max_pending_seconds=tier.max_pending_seconds if tier else 0,
            now=timezone.now(),
        )
        if refusal is None:
            before = action.expires_at
            action.expires_at = before + timedelta(seconds=seconds)
            action.save(update_fields=["expires_at", "updated_at"])
            _audit(
                action,
                verbs.ACTION_EXPIRY_EXTENDED,
                Actor.user(user),
                {
                    "expires_at": {
                        "before": before.isoformat(),
                        "after": action.expires_at.isoformat(),
                    },
                    "seconds": seconds,
                    "channel": channel,
                },
            )
            _on_commit_broadcast(action, "expiry_extended")
        elif refusal.code == rules.EXPIRED.code:
            _expire_locked(action, Actor.system("expiry"))
    if refusal is not None:
        raise ActionRefused(refusal.code, refusal.detail, refusal.status)
    return action


# --- the agent's side ---------------------------------------------------------------------


def withdraw(*, action_id: int, agent: Agent) -> Action:
    """The agent no longer needs a pending action: it is cancelled. Audits
    ``action.withdrawn``; broadcasts on commit."""
    with transaction.atomic():
        action = _lock(action_id)
        if action.status != Status.PENDING:
            raise ActionRefused("not_pending", f"This action is {action.status}, not pending.")
        transition(action, Status.CANCELLED)
        action.feedback = "Withdrawn by the agent."
        action.decided_at = timezone.now()
        action.save(update_fields=["status", "feedback", "decided_at", "updated_at"])
        _audit(action, verbs.ACTION_WITHDRAWN, Actor.agent(agent))
        _on_commit_broadcast(action, "withdrawn")
    return action


def heartbeat(*, action_id: int, agent: Agent) -> Action:
    """The agent is still waiting for a pending action: renew its lease by its
    ``lease_seconds``. Refused (409) when the action is no longer pending (``not_pending``),
    has no lease (``no_lease``), or its lease or time already ran out (``agent_gone`` /
    ``expired``: the lapse is recorded now, audited, and not undone). A renewal changes no
    status: not audited, not broadcast."""
    with transaction.atomic():
        action = _lock(action_id)
        refusal = None
        if action.status != Status.PENDING:
            refusal = ActionRefused("not_pending", f"This action is {action.status}, not pending.")
        elif (lapsed := _settle_overdue_locked(action)) is not None:
            refusal = ActionRefused(lapsed.code, lapsed.detail, lapsed.status)
        elif action.lease_expires_at is None:
            refusal = ActionRefused(
                "no_lease", "This action was submitted without lease_seconds: nothing to renew."
            )
        else:
            action.lease_expires_at = timezone.now() + timedelta(seconds=action.lease_seconds)
            action.save(update_fields=["lease_expires_at", "updated_at"])
    if refusal is not None:
        raise refusal
    return action


def renew_lease_while_waiting(*, action: Action, wait_seconds: float = 0) -> bool:
    """A wait by the action's own agent is a heartbeat: push the lease of a pending action
    to ``lease_seconds`` after the wait ends. One conditional UPDATE, no row lock held: a
    lease that already lapsed is not revived (the read that follows records the lapse), and
    a concurrent decision or lapse wins. Not audited, not broadcast (no status changes)."""
    if action.lease_seconds is None or action.status != Status.PENDING:
        return False
    now = timezone.now()
    until = now + timedelta(seconds=action.lease_seconds + wait_seconds)
    renewed = Action.objects.filter(
        pk=action.pk, status=Status.PENDING, lease_expires_at__gt=now
    ).update(lease_expires_at=until)
    if renewed:
        action.lease_expires_at = until
    return bool(renewed)


def report_execution(
    *,
    action_id: int,
    agent: Agent,
    outcome: str,
    reported_hash: str,
    result: Any = None,
    error: str = "",
) -> Action:
    """Accept the agent's one report of running an allowed or approved action with exactly
    the approved payload, within its grant window. Audits ``action.executed`` /
    ``action.failed`` (or revokes a grant that ran out); broadcasts."""
    refusal = None
    with transaction.atomic():
        action = _lock(action_id)
        if action.reports.filter(kind=Report.Kind.EXECUTION).exists():
            raise ActionRefused("already_reported", "This action's execution was already reported.")
        if _grant_expired(action):
            # Too late: the revocation is recorded now, in this transaction; then refused.
            _revoke_grant_locked(action)
            refusal = ActionRefused(
                "grant_expired", "The time to execute this action has passed; it was revoked."
            )
        else:
            _record_execution(action, agent, outcome, reported_hash, result, error)
    if refusal is not None:
        raise refusal
    if action.status == Status.FAILED:
        _check_breaker(action.agent)
    return action


def _record_execution(
    action: Action, agent: Agent, outcome: str, reported_hash: str, result: Any, error: str
) -> None:
    if action.status not in EXECUTABLE:
        code = {Status.REVOKED: "revoked", Status.EXPIRED: "expired"}.get(
            action.status, "not_executable"
        )
        raise ActionRefused(code, f"This action is {action.status}; it may not be executed.")
    if reported_hash != action.payload_hash:
        raise ActionRefused(
            "payload_mismatch",
            "payload_hash does not match the approved arguments; execute exactly those.",
        )
    Report.objects.create(
        action=action,
        kind=Report.Kind.EXECUTION,
        outcome=outcome,
        payload_hash=reported_hash,
        result=result,
        error=error,
    )
    succeeded = outcome == "succeeded"
    transition(action, Status.EXECUTED if succeeded else Status.FAILED)
    fields = ["status", "updated_at"]
    if succeeded and action.compensation:
        action.reversible_until = timezone.now() + timedelta(
            seconds=_reversible_window(action.compensation)
        )
        fields.append("reversible_until")
    action.save(update_fields=fields)
    _audit(
        action,
        verbs.ACTION_EXECUTED if succeeded else verbs.ACTION_FAILED,
        Actor.agent(agent),
        {"outcome": outcome, "payload_hash": reported_hash, "error": error[:2000]},
    )
    _on_commit_broadcast(action, action.status)


def _grant_expired(action: Action) -> bool:
    return (
        action.status in EXECUTABLE
        and action.grant_expires_at is not None
        and timezone.now() >= action.grant_expires_at
    )


def _revoke_grant_locked(action: Action) -> None:
    transition(action, Status.REVOKED)
    action.feedback = "Not executed within its grant window; revoked."
    action.save(update_fields=["status", "feedback", "updated_at"])
    _audit(
        action,
        verbs.ACTION_REVOKED,
        Actor.system("expiry"),
        {"grant_expires_at": action.grant_expires_at.isoformat()},
    )
    _owe_webhook(action, "action.revoked")
    _on_commit_broadcast(action, "revoked")


@dataclass(frozen=True)
class GrantCheck:
    """The online answer about a grant: ``valid`` and a stable ``code`` (``ok``; signature
    problems as ``grants.tokens.InvalidGrant``; ``wrong_tool``/``wrong_arguments``/
    ``wrong_environment``; ``revoked``, ``used``, ``expired``, ``unknown_grant``)."""

    valid: bool
    code: str
    detail: str
    action: Action | None = None


UNCHECKED: Any = object()


def check_grant(
    *,
    token: str,
    service: str,
    tool: str | None = None,
    arguments: Any = UNCHECKED,
    environment: Any = UNCHECKED,
    consume: bool = False,
) -> GrantCheck:
    """What a tool service asks before running a tool: is this grant authentic, bound to
    what it is about to run (when it says), unexpired, not revoked (kill switch, grant
    window) and — with ``consume`` — not used before? A consuming check marks the grant used
    under the action's row lock (two replicas asking at once: one ``ok``, one ``used``) and
    audits ``grant.consumed``; nothing else changes. A grant whose action already reported
    its execution counts as used."""
    try:
        claims = read_grant(token)
    except InvalidGrant as exc:
        return GrantCheck(False, exc.code, str(exc))
    if tool is not None and claims["tool"] != tool:
        return GrantCheck(False, "wrong_tool", f"The grant is for {claims['tool']!r}.")
    if arguments is not UNCHECKED and claims["payload_hash"] != payload_hash(arguments):
        return GrantCheck(False, "wrong_arguments", "The arguments differ from the granted ones.")
    if environment is not UNCHECKED and claims["env"] != environment:
        return GrantCheck(
            False, "wrong_environment", f"The grant is for environment {claims['env']!r}."
        )
    with transaction.atomic():
        action = (
            Action.objects.select_for_update(of=("self",))
            .select_related("agent")
            .filter(pk=int(claims["sub"]), grant_id=claims["jti"])
            .first()
        )
        if action is None:
            return GrantCheck(False, "unknown_grant", "No action holds this grant any more.")
        if action.status == Status.REVOKED:
            return GrantCheck(False, "revoked", action.feedback or "The grant was revoked.", action)
        ran = action.reports.filter(kind=Report.Kind.EXECUTION).exists()
        if action.grant_used_at is not None or ran or action.status not in EXECUTABLE:
            return GrantCheck(False, "used", "The grant was used already.", action)
        if _grant_expired(action):
            return GrantCheck(False, "expired", "The grant window has closed.", action)
        if consume:
            action.grant_used_at = timezone.now()
            action.save(update_fields=["grant_used_at", "updated_at"])
            _audit(
                action,
                verbs.GRANT_CONSUMED,
                Actor.system(f"service:{service}"),
                {"grant_id": action.grant_id, "payload_hash": action.payload_hash},
            )
        return GrantCheck(True, "ok", "The grant allows this call.", action)


def revoke_stale_grant(*, action_id: int) -> bool:
    """Revoke an approved or allowed action whose grant window passed unexecuted (no-op
    otherwise). Audits ``action.revoked``; owes a webhook; broadcasts."""
    with transaction.atomic():
        action = _lock(action_id)
        if (
            not _grant_expired(action)
            or action.grant_used_at is not None  # a tool service ran it: not "unexecuted"
            or action.reports.filter(kind=Report.Kind.EXECUTION).exists()
        ):
            return False
        _revoke_grant_locked(action)
        return True


def escalation_due_at(action: Action) -> Any:
    """When an undecided action escalates: at ``ESCALATION_FRACTION`` of its time to expiry."""
    if action.expires_at is None:
        return None
    return (
        action.created_at + (action.expires_at - action.created_at) * settings.ESCALATION_FRACTION
    )


def escalate(*, action_id: int) -> bool:
    """Mark a pending action escalated once its escalation time came, and tell the
    escalation people (no-op otherwise, so running twice changes nothing more). Audits
    ``action.escalated``; broadcasts."""
    with transaction.atomic():
        action = _lock(action_id)
        due = escalation_due_at(action)
        if (
            action.status != Status.PENDING
            or action.escalated_at
            or due is None
            or timezone.now() < due
        ):
            return False
        action.escalated_at = timezone.now()
        action.save(update_fields=["escalated_at", "updated_at"])
        _audit(
            action,
            verbs.ACTION_ESCALATED,
            Actor.system("escalation"),
            {"expires_at": action.expires_at.isoformat()},
        )
        notifications.owe_escalation(action)
        _on_commit_broadcast(action, "escalated")
        return True


def _reversible_window(compensation: Any) -> int:
    if isinstance(compensation, dict):
        value = compensation.get("window_seconds")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return DEFAULT_REVERSIBLE_WINDOW_SECONDS


def request_rollback(*, action_id: int, user: Any, comment: str = "") -> Action:
    """Ask the agent to undo an executed action that declared a compensating action,
    within its reversible window. Audits ``action.rollback_requested``; owes a webhook."""
    with transaction.atomic():
        action = _lock(action_id)
        refusal = rules.rollback_refusal(
            action,
            may_review=rollout_permissions.can_review(user, action.agent),
            now=timezone.now(),
        )
        if refusal is not None:
            raise ActionRefused(refusal.code, refusal.detail, refusal.status)
        transition(action, Status.ROLLBACK_REQUESTED)
        action.feedback = comment or "Rollback requested."
        action.save(update_fields=["status", "feedback", "updated_at"])
        _audit(action, verbs.ACTION_ROLLBACK_REQUESTED, Actor.user(user), {"comment": comment})
        _owe_webhook(action, "action.rollback_requested")
        _on_commit_broadcast(action, "rollback_requested")
    return action


def report_rollback(*, action_id: int, agent: Agent, outcome: str, result: Any = None) -> Action:
    """The agent's one report of a requested rollback. Audits ``action.rolled_back`` or
    ``action.rollback_failed``; broadcasts."""
    with transaction.atomic():
        action = _lock(action_id)
        if action.status != Status.ROLLBACK_REQUESTED:
            raise ActionRefused(
                "rollback_not_requested",
                f"This action is {action.status}; no rollback was requested.",
            )
        Report.objects.create(
            action=action, kind=Report.Kind.ROLLBACK, outcome=outcome, result=result
        )
        rolled_back = outcome == "rolled_back"
        transition(action, Status.ROLLED_BACK if rolled_back else Status.ROLLBACK_FAILED)
        action.save(update_fields=["status", "updated_at"])
        _audit(
            action,
            verbs.ACTION_ROLLED_BACK if rolled_back else verbs.ACTION_ROLLBACK_FAILED,
            Actor.agent(agent),
            {"outcome": outcome},
        )
        _on_commit_broadcast(action, action.status)
    return action


# --- time and incidents -------------------------------------------------------------------


def expire(*, action_id: int) -> bool:
    """Expire one pending action whose time is up (no-op otherwise, so running twice changes
    nothing more). Audits ``action.expired``; owes a webhook; broadcasts."""
    with transaction.atomic():
        action = _lock(action_id)
        if action.status != Status.PENDING or not _is_expired(action):
            return False
        _expire_locked(action, Actor.system("expiry"))
        return True


def settle_overdue(*, action_id: int) -> bool:
    """End one pending action whose deadline passed: expire it, or — when the agent's lease
    lapsed first — cancel it as ``agent_gone`` (no-op otherwise, so running twice changes
    nothing more). Audits ``action.expired`` or ``action.cancelled`` (reason
    ``agent_gone``); owes a webhook; broadcasts. Readers and the sweep call it; decisions
    and heartbeats do the same inside their own transaction."""
    with transaction.atomic():
        return _settle_overdue_locked(_lock(action_id)) is not None


# The feedback a kill switch's sweep gives each action it stops (pages say what stopped it).
KILL_SWITCH_FEEDBACK = "Stopped by kill switch: "


def stop_actions_in_scope(*, switch: KillSwitch, actor: Actor) -> dict[str, int]:
    """The kill switch's sweep, inside its transaction: pending → cancelled, approved or
    allowed and not yet reported → revoked, and every standing approval in scope ended
    (when the switch has an environment: that environment's and unbound tokens').
    Locks rows in id order. Audits each; owes webhooks; broadcasts on commit."""
    scope = Q(status__in=[Status.PENDING, *EXECUTABLE])
    if switch.scope == KillSwitch.Scope.AGENT:
        scope &= Q(agent__slug=switch.target)
    elif switch.scope == KillSwitch.Scope.TOOL:
        scope &= Q(tool=switch.target)
    if switch.environment:
        # Its environment's actions and those of unbound tokens, which the gate stops too
        # (``rollout.policy._switch_applies``): where they run is only their word.
        scope &= Q(environment__in=[switch.environment, ""])
    counts = {"cancelled": 0, "revoked": 0}
    # Evaluated in full first, so every row in scope is locked (in id order) before anything
    # is audited; only the action rows, not the joined agents.
    in_scope = list(
        Action.objects.select_for_update(of=("self",))
        .select_related("agent")
        .filter(scope)
        .order_by("id")
    )
    for action in in_scope:
        if action.status == Status.PENDING:
            transition(action, Status.CANCELLED)
            verb, event, key = verbs.ACTION_CANCELLED, "action.cancelled", "cancelled"
        else:
            transition(action, Status.REVOKED)
            verb, event, key = verbs.ACTION_REVOKED, "action.revoked", "revoked"
        action.feedback = f"{KILL_SWITCH_FEEDBACK}{switch.reason}"
        action.decided_at = action.decided_at or timezone.now()
        action.save(update_fields=["status", "feedback", "decided_at", "updated_at"])
        _audit(action, verb, actor, {"kill_switch": switch.pk})
        _owe_webhook(action, event)
        transaction.on_commit(
            lambda action=action, key=key: events.broadcast_action(action, key, to_dashboards=False)
        )
        counts[key] += 1
    # Standing approvals in scope end with it; releasing the switch brings none back.
    # Each is audited (``standing.ended``, reason ``kill_switch``) with the switch's id.
    standing.end_for_kill_switch(switch=switch, actor=actor)
    return counts
