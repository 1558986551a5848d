"""Prototypes of the proposed hot-path changes, applied by monkeypatching in the benchmark
server only (``benchmarks.apps``), so they can be measured before anyone edits the real
modules. Each is a copy of the shipped function with the change; the docstrings say what
differs and why. Delete this module once the changes are in ``audit/chain.py`` and
``approvals/actions.py``.

- ``AIRLOCK_BENCH_CHAIN_STRIPES=K`` — ``audit.chain.append_event`` appends an agent's event
  to whichever of the agent's K chain stripes is not locked (partitions ``slug``,
  ``slug#1`` … ``slug#K-1``; ``SELECT … FOR UPDATE SKIP LOCKED``), and writes the event and
  the new head in one statement. Every stripe is an ordinary hash chain, so
  ``verify_rows`` and the global checkpoint (which records every partition's head) work
  unchanged; the event is still written in the transaction of the change it records.
- ``AIRLOCK_BENCH_LEAN_GATE=1`` — ``approvals.actions._decide_and_record`` with fewer round
  trips: one bounded query for both rate counters instead of two unbounded counts, no
  savepoint around the action's INSERT, and no queries to serialise the (empty) approvals
  and decisions of an action that was just created.
- ``AIRLOCK_BENCH_FAST_THROTTLE=1`` — the agent's HTTP flood limit as one pipelined Redis
  round trip (``make_fixed_window_agent_throttle``).
- ``AIRLOCK_BENCH_LEAN_GATE=2`` — the gate's transaction in three statements (plus BEGIN
  and COMMIT) instead of fourteen, with the striped chain: (1) take the kill-switch lock
  shared and read the policy, an earlier action with the same idempotency key and both
  rate counters; (2) read the engaged switches (a new statement, so its snapshot is taken
  after the lock), lock a free chain stripe and draw the action's id; (3) insert the
  action and its audit event and move the chain head. The decision is the same function
  of the same inputs, and the event still commits with the action or not at all.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

STRIPE_SEPARATOR = "#"  # cannot occur in an agent slug


# --- audit/chain.py: striped per-agent chains -------------------------------------------------


def make_striped_append_event(stripes: int):
    from audit import chain
    from audit.models import AuditEvent
    from audit.redaction import redact
    from audit.verbs import VERBS

    shipped = chain.append_event
    data_field = AuditEvent._meta.get_field("data")
    known_stripes: set[str] = set()

    def stripe_names(slug: str) -> list[str]:
        return [slug] + [f"{slug}{STRIPE_SEPARATOR}{i}" for i in range(1, stripes)]

    def lock_free_stripe(slug: str) -> tuple[str, int, str]:
        names = stripe_names(slug)
        with connection.cursor() as cursor:
            if slug not in known_stripes:
                cursor.execute(
                    "INSERT INTO audit_auditchainhead (partition, last_seq, last_hash) "
                    "SELECT name, 0, '' FROM unnest(%s::varchar[]) AS name "
                    "ON CONFLICT (partition) DO NOTHING",
                    [names],
                )
                known_stripes.add(slug)
            # Any stripe nobody holds; rows another transaction holds are skipped.
            cursor.execute(
                "SELECT partition, last_seq, last_hash FROM audit_auditchainhead "
                "WHERE partition = ANY(%s) ORDER BY partition LIMIT 1 FOR UPDATE SKIP LOCKED",
                [names],
            )
            row = cursor.fetchone()
            if row is None:  # all K held: wait for one, like the shipped code always does
                cursor.execute(
                    "SELECT partition, last_seq, last_hash FROM audit_auditchainhead "
                    "WHERE partition = %s FOR UPDATE",
                    [random.choice(names)],
                )
                row = cursor.fetchone()
        return row

    def append_event(
        *,
        verb,
        actor,
        target_type="",
        target_id="",
        agent_slug="",
        correlation_id="",
        data=None,
    ):
        """Shipped behaviour for the global partition; agents' events go to a free stripe."""
        if not agent_slug or connection.vendor != "postgresql":
            return shipped(
                verb=verb,
                actor=actor,
                target_type=target_type,
                target_id=target_id,
                agent_slug=agent_slug,
                correlation_id=correlation_id,
                data=data,
            )
        if verb not in VERBS:
            raise ValueError(f"unregistered audit verb {verb!r}")
        if not connection.in_atomic_block:
            raise RuntimeError(
                "append_event must run inside the transaction of the change it records"
            )
        partition, last_seq, last_hash = lock_free_stripe(agent_slug)
        created_at = timezone.now()
        seq = last_seq + 1
        fields = {
            "partition": partition,
            "chain_seq": seq,
            "actor_type": str(actor.type),
            "actor": actor.name,
            "verb": verb,
            "target_type": target_type,
            "target_id": str(target_id),
            "agent_slug": agent_slug,
            "correlation_id": correlation_id,
            "data": redact(data or {}),
            "prev_hash": last_hash,
        }
        digest = chain.event_digest(created_at=created_at.isoformat(), **fields)
        # The event and the new head in one round trip (the head row is already locked).
        with connection.cursor() as cursor:
            cursor.execute(
                "WITH event AS ("
                " INSERT INTO audit_auditevent (partition, chain_seq, created_at, actor_type,"
                " actor, verb, target_type, target_id, agent_slug, correlation_id, data,"
                " prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " RETURNING id) "
                "UPDATE audit_auditchainhead SET last_seq = %s, last_hash = %s "
                "WHERE partition = %s RETURNING (SELECT id FROM event)",
                [
                    partition,
                    seq,
                    created_at,
                    fields["actor_type"],
                    fields["actor"],
                    verb,
                    fields["target_type"],
                    fields["target_id"],
                    agent_slug,
                    correlation_id,
                    data_field.get_db_prep_save(fields["data"], connection),
                    last_hash,
                    digest,
                    seq,
                    digest,
                    partition,
                ],
            )
            (event_id,) = cursor.fetchone()
        return AuditEvent(id=event_id, created_at=created_at, hash=digest, **fields)

    return append_event


# --- approvals/actions.py: the gate's transaction with fewer round trips ------------------


RECENT_COUNTS = """
SELECT count(*), count(*) FILTER (WHERE tool = %s) FROM (
    SELECT tool FROM approvals_action
    WHERE agent_id = %s AND created_at >= %s
    ORDER BY created_at DESC
    LIMIT %s
) AS recent
"""


def recent_counts(agent_id: int, tool: str, since, agent_limit: int | None):
    """Both counters in one query, reading at most ``agent_limit + 1`` rows: once the agent
    is over its limit the gate denies on that alone, so more rows change no decision, and
    below it every row is read, so the tool's count is exact."""
    from rollout.policy import Counters

    limit = None if agent_limit is None else agent_limit + 1
    with connection.cursor() as cursor:
        cursor.execute(RECENT_COUNTS, [tool, agent_id, since, limit])
        agent_count, tool_count = cursor.fetchone()
    return Counters(agent_last_minute=agent_count, tool_last_minute=tool_count)


def make_lean_decide_and_record():
    from approvals import actions
    from approvals.models import Action, Decision
    from approvals.states import Status
    from audit import verbs
    from audit.canonical import payload_hash
    from audit.chain import Actor
    from rollout.actions import engaged_switches_for, hold_gate_lock_shared, release_for
    from rollout.models import Agent
    from rollout.policy import GateRequest, SwitchState, evaluate

    @transaction.atomic
    def _decide_and_record(agent, key, fingerprint, body):
        """As shipped, except: (1) ``recent_counts`` instead of two ``count()`` queries;
        (2) no savepoint around ``action.save()`` — a duplicate key aborts this whole
        transaction, and ``submit_action`` already answers it as a replay; (3) the new
        action's decisions are known to be empty, so serialising it costs no query."""
        hold_gate_lock_shared()
        agent = Agent.objects.select_related("current_policy").get(pk=agent.pk)
        policy = agent.current_policy
        tool = body["tool"]
        arguments = body["arguments"]
        blast_radius = body.get("blast_radius") or {}
        now = timezone.now()
        counters = recent_counts(
            agent.pk,
            tool,
            now - timedelta(seconds=60),
            (policy.snapshot.get("agent") or {}).get("rate_limit_per_minute"),
        )
        switches = [
            SwitchState(s.pk, s.scope, s.target, s.is_drill)
            for s in engaged_switches_for(agent.slug, tool)
        ]
        decision = evaluate(
            policy.snapshot, GateRequest(tool, arguments, blast_radius), switches, counters
        )
        action = Action(
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
            request_hash=fingerprint,
            correlation_id=str(body.get("correlation_id") or ""),
            expires_at=now + timedelta(seconds=decision.ttl_seconds)
            if decision.ttl_seconds
            else None,
        )
        if decision.outcome == Status.DENIED and decision.reason_code == "kill_switch":
            action.feedback = "; ".join(decision.reasons)
        action.save()
        actions.append_event(
            verb=verbs.ACTION_SUBMITTED,
            actor=Actor.agent(agent),
            target_type="action",
            target_id=action.pk,
            agent_slug=agent.slug,
            correlation_id=action.correlation_id,
            data={
                "tool": tool,
                "outcome": decision.outcome,
                "reason_code": decision.reason_code,
                "reasons": decision.reasons,
                "risk": decision.risk,
                "policy_version": policy.number,
                "payload_hash": action.payload_hash,
                "switch_id": decision.switch_id,
            },
        )
        # A new action has no decisions: ActionSerializer's approvals/decisions read this.
        action._prefetched_objects_cache = {"decisions": Decision.objects.none()}
        if action.status == Status.PENDING:
            actions._on_commit_broadcast(action, "submitted")
        return actions.Submission(action, created=True)

    return _decide_and_record


MERGED_READ = """
SELECT pg_advisory_xact_lock_shared(%s),
       pv.id, pv.number, pv.snapshot,
       (SELECT id FROM approvals_action WHERE agent_id = a.id AND idempotency_key = %s),
       recent.agent_count, recent.tool_count
FROM rollout_agent a
JOIN rollout_policyversion pv ON pv.id = a.current_policy_id
CROSS JOIN LATERAL (
    SELECT count(*) AS agent_count, count(*) FILTER (WHERE tool = %s) AS tool_count
    FROM approvals_action WHERE agent_id = a.id AND created_at >= %s
) AS recent
WHERE a.id = %s
"""

MERGED_SWITCHES_AND_STRIPE = """
WITH switches AS (
    SELECT coalesce(json_agg(json_build_array(id, scope, target, is_drill)), '[]') AS list
    FROM rollout_killswitch
    WHERE released_at IS NULL
      AND (scope = 'global' OR (scope = 'agent' AND target = %s) OR (scope = 'tool' AND target = %s))
), stripe AS (
    SELECT partition, last_seq, last_hash FROM audit_auditchainhead
    WHERE partition = ANY(%s) ORDER BY partition LIMIT 1 FOR UPDATE SKIP LOCKED
)
SELECT switches.list, stripe.partition, stripe.last_seq, stripe.last_hash,
       nextval(pg_get_serial_sequence('approvals_action', 'id'))
FROM switches LEFT JOIN stripe ON true
"""

EVENT_INSERT = (
    "INSERT INTO audit_auditevent (partition, chain_seq, created_at, actor_type, actor, verb,"
    " target_type, target_id, agent_slug, correlation_id, data, prev_hash, hash)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


class _Replay(Exception):
    """The idempotency key is taken: answer from the stored action, outside this
    transaction."""


def make_merged_gate(stripes: int):
    from django.db.models.sql import InsertQuery

    from approvals import actions
    from approvals.models import Action, Decision
    from approvals.states import Status
    from audit import chain, verbs
    from audit.canonical import payload_hash
    from audit.chain import Actor
    from audit.models import AuditEvent
    from audit.redaction import redact
    from rollout.actions import KILL_SWITCH_LOCK_KEY, release_for
    from rollout.models import PolicyVersion
    from rollout.policy import Counters, GateRequest, SwitchState, evaluate

    data_field = AuditEvent._meta.get_field("data")
    known: set[str] = set()

    @transaction.atomic
    def decide_and_record(agent, key, fingerprint, body):
        tool = body["tool"]
        arguments = body["arguments"]
        blast_radius = body.get("blast_radius") or {}
        now = timezone.now()
        names = [agent.slug] + [f"{agent.slug}{STRIPE_SEPARATOR}{i}" for i in range(1, stripes)]
        with connection.cursor() as cursor:
            if agent.slug not in known:
                cursor.execute(
                    "INSERT INTO audit_auditchainhead (partition, last_seq, last_hash) "
                    "SELECT name, 0, '' FROM unnest(%s::varchar[]) AS name "
                    "ON CONFLICT (partition) DO NOTHING",
                    [names],
                )
                known.add(agent.slug)
            # (1) lock shared, policy, idempotency key, counters
            cursor.execute(
                MERGED_READ,
                [KILL_SWITCH_LOCK_KEY, key, tool, now - timedelta(seconds=60), agent.pk],
            )
            _, policy_id, policy_number, snapshot, existing, n_agent, n_tool = cursor.fetchone()
            if existing is not None:
                raise _Replay
            if isinstance(snapshot, str):
                snapshot = json.loads(snapshot)
            # (2) switches (snapshot after the lock), a free stripe, the action's id
            cursor.execute(MERGED_SWITCHES_AND_STRIPE, [agent.slug, tool, names])
            switch_rows, partition, last_seq, last_hash, action_id = cursor.fetchone()
            if partition is None:  # every stripe held: wait for one
                cursor.execute(
                    "SELECT partition, last_seq, last_hash FROM audit_auditchainhead "
                    "WHERE partition = %s FOR UPDATE",
                    [random.choice(names)],
                )
                partition, last_seq, last_hash = cursor.fetchone()
        if isinstance(switch_rows, str):
            switch_rows = json.loads(switch_rows)
        switches = [SwitchState(i, sc, t, d) for i, sc, t, d in switch_rows]
        decision = evaluate(
            snapshot,
            GateRequest(tool, arguments, blast_radius),
            switches,
            Counters(agent_last_minute=n_agent, tool_last_minute=n_tool),
        )
        policy = PolicyVersion(id=policy_id, number=policy_number, agent_id=agent.pk)
        policy.snapshot = snapshot
        policy._state.adding = False
        policy._state.db = connection.alias
        action = Action(
            id=action_id,
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
            request_hash=fingerprint,
            correlation_id=str(body.get("correlation_id") or ""),
            expires_at=now + timedelta(seconds=decision.ttl_seconds)
            if decision.ttl_seconds
            else None,
        )
        if decision.outcome == Status.DENIED and decision.reason_code == "kill_switch":
            action.feedback = "; ".join(decision.reasons)
        query = InsertQuery(Action)
        query.insert_values(list(Action._meta.concrete_fields), [action])
        ((insert_sql, insert_params),) = query.get_compiler(connection=connection).as_sql()

        actor = Actor.agent(agent)
        created_at = timezone.now()
        seq = last_seq + 1
        fields = {
            "partition": partition,
            "chain_seq": seq,
            "actor_type": str(actor.type),
            "actor": actor.name,
            "verb": verbs.ACTION_SUBMITTED,
            "target_type": "action",
            "target_id": str(action_id),
            "agent_slug": agent.slug,
            "correlation_id": action.correlation_id,
            "data": redact(
                {
                    "tool": tool,
                    "outcome": decision.outcome,
                    "reason_code": decision.reason_code,
                    "reasons": decision.reasons,
                    "risk": decision.risk,
                    "policy_version": policy_number,
                    "payload_hash": action.payload_hash,
                    "switch_id": decision.switch_id,
                }
            ),
            "prev_hash": last_hash,
        }
        digest = chain.event_digest(created_at=created_at.isoformat(), **fields)
        event_params = [
            fields["partition"],
            seq,
            created_at,
            fields["actor_type"],
            fields["actor"],
            fields["verb"],
            "action",
            fields["target_id"],
            agent.slug,
            fields["correlation_id"],
            data_field.get_db_prep_save(fields["data"], connection),
            last_hash,
            digest,
        ]
        # (3) the action, its audit event and the new chain head, in one statement
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH action AS ({insert_sql} RETURNING id), event AS ({EVENT_INSERT}) "
                "UPDATE audit_auditchainhead SET last_seq = %s, last_hash = %s "
                "WHERE partition = %s",
                [*insert_params, *event_params, seq, digest, partition],
            )
        action._state.adding = False
        action._state.db = connection.alias
        action._prefetched_objects_cache = {"decisions": Decision.objects.none()}
        action._airlock_new = True  # FreshActionSerializer: no decisions to read
        if action.status == Status.PENDING:
            actions._on_commit_broadcast(action, "submitted")
        return actions.Submission(action, created=True)

    def submit_action(*, agent, idempotency_key, body):
        """As shipped, without the read before the transaction: the key is looked up
        inside it (statement 1); a replay or a lost race is answered from the stored
        action exactly as before."""
        fingerprint = actions.request_fingerprint(body)
        try:
            return decide_and_record(agent, idempotency_key, fingerprint, body)
        except (actions.IntegrityError, _Replay):
            replay = actions._existing_submission(agent, idempotency_key, fingerprint)
            if replay:
                return replay
            raise

    return submit_action


def make_fresh_action_serializer():
    """``ActionSerializer`` that answers ``approvals: 0, decisions: []`` for an action the
    gate has just created, without building (even empty) decision querysets: compiling
    those two queries is most of the serializer's cost."""
    from approvals.serializers import ActionSerializer

    class FreshActionSerializer(ActionSerializer):
        def get_approvals(self, action):
            return 0 if getattr(action, "_airlock_new", False) else super().get_approvals(action)

        def get_decisions(self, action):
            return [] if getattr(action, "_airlock_new", False) else super().get_decisions(action)

    return FreshActionSerializer


def make_fixed_window_agent_throttle():
    """The agent's HTTP flood limit as one pipelined ``INCR`` + ``EXPIRE`` on a fixed window,
    through one process-wide Redis client: one round trip, no per-command client object
    (Django's Redis cache builds a ``redis.Redis`` per command) and no pickled history of
    every request in the window (DRF's ``SimpleRateThrottle`` reads and rewrites it). A
    fixed window lets up to twice the rate through across a boundary, which is fine for
    flood protection; the gate's own rate limit is the policy rule. Fails open like
    ``ResilientThrottle``."""
    import threading
    import time

    import redis
    from django.conf import settings
    from rest_framework.throttling import BaseThrottle

    from approvals.api import logger
    from rollout.authentication import is_agent

    clients: dict[str, redis.Redis] = {}
    lock = threading.Lock()

    def client() -> redis.Redis:
        with lock:
            if "c" not in clients:
                clients["c"] = redis.Redis.from_url(
                    settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
                )
            return clients["c"]

    class FixedWindowAgentThrottle(BaseThrottle):
        scope = "agent"

        def allow_request(self, request, view):
            if not is_agent(request.user):
                return True
            rate = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][self.scope]
            num, period = rate.split("/")
            limit = int(num)
            duration = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[0]]
            window = int(time.time() // duration)
            key = f"throttle_agent_{request.user.agent.pk}_{window}"
            try:
                pipe = client().pipeline(transaction=False)
                pipe.incr(key)
                pipe.expire(key, duration + 1)
                count, _ = pipe.execute()
            except Exception:
                logger.warning("throttle cache unavailable; not throttling", exc_info=True)
                return True
            self._wait = (window + 1) * duration - time.time()
            return count <= limit

        def wait(self):
            return self._wait

    return FixedWindowAgentThrottle


def apply(stripes: int, lean_gate: bool | int, fast_throttle: bool = False) -> list[str]:
    """Patch the running process; returns what was applied."""
    applied = []
    if stripes > 1:
        from approvals import actions
        from audit import chain

        striped = make_striped_append_event(stripes)
        chain.append_event = striped
        actions.append_event = striped
        applied.append(f"audit chain: {stripes} stripes per agent")
    if lean_gate == 2:
        from approvals import actions, api

        actions.submit_action = make_merged_gate(max(stripes, 1))
        api.ActionSerializer = make_fresh_action_serializer()
        applied.append("gate transaction in three statements")
    elif lean_gate:
        from approvals import actions

        actions._decide_and_record = make_lean_decide_and_record()
        applied.append("lean gate transaction")
    if fast_throttle:
        from approvals import api

        api.AirlockAPIView.throttle_classes = [
            make_fixed_window_agent_throttle(),
            api.PersonRateThrottle,
        ]
        applied.append("fixed-window agent throttle")
    return applied
