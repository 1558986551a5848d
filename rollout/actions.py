"""Every change to agents, their policy and tokens (kill switches are engaged and released by
``incidents.actions``).

Each action runs in one transaction, writes its audit event there, and queues broadcasts
with ``transaction.on_commit``."""

from __future__ import annotations

import functools
import secrets
from typing import Any

from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from audit import verbs
from audit.chain import Actor, append_event
from core.digests import token_digest
from rollout.environments import known_environment
from rollout.models import Agent, AgentToken, KillSwitch, PolicyVersion, Release, Tier, ToolRule
from rollout.snapshots import build_snapshot
from rollout.tokens import new_token

# Gate transactions hold this lock shared (the first statement of
# approvals.actions._read_gate_inputs); engaging a switch holds it exclusively
# (incidents.actions.engage_kill_switch), so a gate call either finished before the engage
# (and its action is swept by it) or starts after it (and sees the switch). SQLite
# serialises writers anyway.
KILL_SWITCH_LOCK_KEY = 0x41495231  # "AIR1"


def record_policy_version(*, agent: Agent, actor: Actor, reason: str) -> PolicyVersion:
    """Snapshot ``agent``'s tier and rules as a new immutable policy version and make it
    current. Audits ``policy.version_created``. Call inside the change's transaction."""
    # Only the agent row, and no-key: gate inserts of this agent's actions (which key-share
    # lock it) and other agents at the same tier are not held up.
    agent = (
        Agent.objects.select_for_update(of=("self",), no_key=True)
        .select_related("tier")
        .get(pk=agent.pk)
    )
    last = agent.policy_versions.aggregate(n=Max("number"))["n"] or 0
    version = PolicyVersion.objects.create(
        agent=agent,
        number=last + 1,
        snapshot=build_snapshot(agent),
        reason=reason,
        created_by=str(actor),
    )
    Agent.objects.filter(pk=agent.pk).update(current_policy=version)
    append_event(
        verb=verbs.POLICY_VERSION_CREATED,
        actor=actor,
        target_type="policy_version",
        target_id=version.pk,
        agent_slug=agent.slug,
        data={"number": version.number, "reason": reason},
    )
    return version


@transaction.atomic
def register_agent(
    *,
    actor: Actor,
    slug: str,
    name: str,
    tier: str,
    description: str = "",
    owner: Any = None,
    rules: list[dict] | None = None,
    rate_limit_per_minute: int = 600,
) -> Agent:
    """Create an agent with its tool rules and first policy version, and a webhook secret.
    Audits ``agent.registered`` and ``policy.version_created``."""
    agent = Agent.objects.create(
        slug=slug,
        name=name,
        description=description,
        owner=owner,
        tier=Tier.objects.get(name=tier),
        rate_limit_per_minute=rate_limit_per_minute,
        webhook_secret="whsec_" + secrets.token_urlsafe(32),
    )
    for rule in rules or []:
        ToolRule.objects.create(agent=agent, **rule)
    append_event(
        verb=verbs.AGENT_REGISTERED,
        actor=actor,
        target_type="agent",
        target_id=agent.pk,
        agent_slug=agent.slug,
        data={"name": name, "tier": tier, "tools": sorted(r["tool"] for r in rules or [])},
    )
    record_policy_version(agent=agent, actor=actor, reason="agent registered")
    return agent


@transaction.atomic
def issue_agent_token(
    *, agent: Agent, actor: Actor, name: str = "default", environment: str = ""
) -> str:
    """Create a bearer token for ``agent``, bound to ``environment`` ("" = unbound), and
    return it; only its digest is kept. Raises ``UnknownEnvironment`` for a name the
    installation does not configure (nothing is written). Audits ``agent.token_issued``
    (name, prefix, environment)."""
    environment = known_environment(environment)
    token = new_token()
    record = AgentToken.objects.create(
        agent=agent,
        name=name,
        prefix=token[:10],
        token_hash=token_digest(token),
        created_by=str(actor),
        environment=environment,
    )
    append_event(
        verb=verbs.AGENT_TOKEN_ISSUED,
        actor=actor,
        target_type="agent_token",
        target_id=record.pk,
        agent_slug=agent.slug,
        data={"name": name, "prefix": record.prefix, "environment": environment},
    )
    return token


@transaction.atomic
def revoke_agent_token(*, token_id: int, actor: Actor) -> AgentToken:
    """Revoke a token at once. Audits ``agent.token_revoked``."""
    record = AgentToken.objects.select_for_update().select_related("agent").get(pk=token_id)
    if record.revoked_at is None:
        record.revoked_at = timezone.now()
        record.save(update_fields=["revoked_at"])
        append_event(
            verb=verbs.AGENT_TOKEN_REVOKED,
            actor=actor,
            target_type="agent_token",
            target_id=record.pk,
            agent_slug=record.agent.slug,
            data={"name": record.name, "prefix": record.prefix},
        )
    return record


@functools.cache
def _token_lookup() -> tuple[str, list[tuple[Any, list[Any]]]]:
    """The live-token lookup as one SELECT of the token's and its agent's columns (every
    concrete field, in model order, so ``from_db`` builds both rows), and each column's
    converters as the ORM applies them (JSON text, SQLite's datetimes). Written once per
    process: compiling the equivalent queryset on every call was the largest share of the
    gate's Python time after the view itself (issue 22's profile)."""
    quote = connection.ops.quote_name
    token_meta, agent_meta = AgentToken._meta, Agent._meta
    columns, converters = [], []
    for alias, meta in (("t", token_meta), ("a", agent_meta)):
        for field in meta.concrete_fields:
            columns.append(f"{alias}.{quote(field.column)}")
            col = field.get_col(meta.db_table)
            converters.append(
                (col, connection.ops.get_db_converters(col) + field.get_db_converters(connection))
            )
    # Identifiers from the models' metadata; the digest is a parameter.
    sql = (
        f"SELECT {', '.join(columns)} FROM {quote(token_meta.db_table)} t "  # noqa: S608
        f"JOIN {quote(agent_meta.db_table)} a "
        f"ON a.{quote(agent_meta.pk.column)} = t.{quote(token_meta.get_field('agent').column)} "
        f"WHERE t.{quote('token_hash')} = %s AND t.{quote('revoked_at')} IS NULL"
    )
    return sql, converters


def authenticate_agent_token(token: str) -> AgentToken | None:
    """The live token record for ``token`` (its ``agent`` loaded), or None. Marks it used
    (at most once a minute, to keep the gate's hot path free of a write per call)."""
    sql, converters = _token_lookup()
    with connection.cursor() as cursor:
        cursor.execute(sql, [token_digest(token)])
        row = cursor.fetchone()
    if row is None:
        return None
    values = []
    for value, (col, convert_all) in zip(row, converters, strict=True):
        for convert in convert_all:
            value = convert(value, col, connection)
        values.append(value)
    token_fields = [f.attname for f in AgentToken._meta.concrete_fields]
    agent_fields = [f.attname for f in Agent._meta.concrete_fields]
    record = AgentToken.from_db(connection.alias, token_fields, values[: len(token_fields)])
    record.agent = Agent.from_db(connection.alias, agent_fields, values[len(token_fields) :])
    now = timezone.now()
    if record.last_used_at is None or (now - record.last_used_at).total_seconds() > 60:
        AgentToken.objects.filter(pk=record.pk).update(last_used_at=now)
    return record


def release_for(agent: Agent, data: dict | None) -> Release | None:
    """The release an agent declared, recorded the first time it is seen."""
    if not data:
        return None
    from audit.canonical import canonical_json, sha256_hex

    fingerprint = sha256_hex(canonical_json(data))
    known = Release.objects.filter(agent=agent, fingerprint=fingerprint).first()
    if known:
        return known
    extra = {
        k: v for k, v in data.items() if k not in {"model", "prompt_version", "tool_schema_version"}
    }
    Release.objects.bulk_create(
        [
            Release(
                agent=agent,
                fingerprint=fingerprint,
                model=str(data.get("model", ""))[:120],
                prompt_version=str(data.get("prompt_version", ""))[:120],
                tool_schema_version=str(data.get("tool_schema_version", ""))[:120],
                extra=extra,
            )
        ],
        ignore_conflicts=True,
    )
    return Release.objects.get(agent=agent, fingerprint=fingerprint)


def engaged_switches_for(agent_slug: str, tool: str, environment: str = "") -> list[KillSwitch]:
    """The engaged switches that could stop ``tool`` for ``agent_slug`` called with a token
    bound to ``environment`` (switches of every environment, and of that one; every
    environment's for an unbound token, ``""``): one indexed query, read inside the gate's
    transaction on every call (no cache can serve a stale allow)."""
    switches = KillSwitch.objects.filter(released_at__isnull=True).filter(
        Q(scope=KillSwitch.Scope.GLOBAL)
        | Q(scope=KillSwitch.Scope.AGENT, target=agent_slug)
        | Q(scope=KillSwitch.Scope.TOOL, target=tool)
    )
    if environment:
        switches = switches.filter(Q(environment="") | Q(environment=environment))
    return list(switches)


@transaction.atomic
def rotate_webhook_secret(*, agent: Agent, actor: Actor) -> str:
    """Give ``agent`` a new webhook secret and return it (shown once). The previous one
    keeps signing, as a second signature, for ``WEBHOOK_SECRET_GRACE_SECONDS``. Audits
    ``agent.webhook_secret_rotated`` (without either secret)."""
    from datetime import timedelta

    from django.conf import settings

    agent = Agent.objects.select_for_update(of=("self",), no_key=True).get(pk=agent.pk)
    secret = "whsec_" + secrets.token_urlsafe(32)
    until = timezone.now() + timedelta(seconds=settings.WEBHOOK_SECRET_GRACE_SECONDS)
    Agent.objects.filter(pk=agent.pk).update(
        webhook_secret=secret,
        previous_webhook_secret=agent.webhook_secret,
        previous_webhook_secret_until=until,
    )
    append_event(
        verb=verbs.WEBHOOK_SECRET_ROTATED,
        actor=actor,
        target_type="agent",
        target_id=agent.pk,
        agent_slug=agent.slug,
        data={"previous_accepted_until": until.isoformat()},
    )
    return secret
