"""The write path of governance: every change to an agent's tier, tool rules, rate limit,
activity, access and tokens, every change request and every shadow label passes through
here — from pages, the API, the admin and scripts alike. Registration and tokens wrap
``rollout.actions`` (the agent's own write path), adding the governor check, the policy
version and the broadcast.

Asymmetric governance (DESIGN): ``propose_change`` classifies a proposed change with
``rollout.policy_diff``. A *tightening* (it can only reduce the agent's autonomy) applies
at once as a new policy version. Anything else is a *loosening* and becomes a
``ChangeRequest`` that another governance owner of that agent must approve; its author
cannot, an edit voids earlier approvals, and the approval that meets the quorum applies
it atomically as a new policy version (exactly once, under the request's row lock).

Each action is keyword-only, checks the actor's right inside its transaction (through
``rollout.permissions``), locks what it changes (change request, then agent — always in
that order), writes its audit events in the same transaction and queues its websocket
broadcast with ``transaction.on_commit``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals.models import Action
from approvals.standing import end_for_policy_change as end_standing_for_policy_change
from approvals.states import Status as ActionStatus
from audit import verbs
from audit.chain import Actor, append_event
from core.errors import Refused
from core.people import is_active_person
from governance import access as agent_access
from governance import events
from governance.models import ChangeApproval, ChangeRequest, ShadowLabel
from rollout import permissions as agent_perms
from rollout.actions import (
    issue_agent_token,
    record_policy_version,
    register_agent,
    revoke_agent_token,
)
from rollout.actions import (
    rotate_webhook_secret as rotate_agent_webhook_secret,
)
from rollout.environments import UnknownEnvironment, known_environment
from rollout.models import (
    Agent,
    AgentToken,
    Effect,
    EnvironmentOverride,
    PolicyVersion,
    RuleKind,
    Tier,
    ToolRule,
)
from rollout.policy import validate_limit, validate_radius_mapping
from rollout.policy_diff import (
    LOOSENING,
    NO_CHANGE,
    PIECE_KEYS,
    RULE_FIELDS,
    TIGHTENING,
    Change,
    changes_between,
    classify,
    piece_of_snapshot,
    same_value,
    touched_piece,
    with_rule_defaults,
)
from rollout.snapshots import build_snapshot
from rollout.standing import normalize_bounds

TOOL_NAME = re.compile(r"^[A-Za-z0-9_.:/\-]{1,120}$")
AGENT_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")
MAX_LIMITS_PER_TOOL = 50
MAX_TOOLS_PER_CHANGE = 200
MAX_RATE_PER_MINUTE = 1_000_000
MAX_REQUIRED_APPROVALS = 3
REASON_MAX = 300


class GovernanceRefused(Refused):
    """A governance request the rules refuse; ``fields`` are field-level problems of an
    invalid proposal."""


@dataclass
class Proposal:
    """A validated proposed change, compared with the agent's live policy."""

    before: dict  # the live values of the parts the change touches
    after: dict  # the values it sets
    changes: list[Change] = field(default_factory=list)

    @property
    def classification(self) -> str:
        return classify(self.changes)

    @property
    def mixed(self) -> bool:
        """A loosening with parts that only tighten: those could apply at once."""
        return self.classification == LOOSENING and bool(self.tightening_part)

    @property
    def tightening_part(self) -> dict:
        return split_tightening(self.before, self.after)[0]

    @property
    def tightening_changes(self) -> list[Change]:
        part = self.tightening_part
        return changes_between(touched_piece(self.before, part), part) if part else []


@dataclass
class ProposalResult:
    """What ``propose_change`` did: applied a tightening at once (``policy_version``) or
    opened a change request (``change_request``)."""

    classification: str
    changes: list[Change]
    policy_version: PolicyVersion | None = None
    change_request: ChangeRequest | None = None
    applied_changes: list[Change] = field(default_factory=list)  # the split's applied part

    @property
    def applied(self) -> bool:
        """The whole change applied at once (no change request)."""
        return self.policy_version is not None and self.change_request is None


# --- validation -----------------------------------------------------------------------------


def _normalize_rule(
    tool: str,
    value: Any,
    existing: dict | None,
    errors: dict[str, list[str]],
    prefix: str | None = None,
) -> dict | None:
    """A full tool rule from ``value`` (a partial rule completes the existing one); field
    errors are keyed under ``prefix`` (``tools.<tool>`` unless given)."""
    prefix = prefix or f"tools.{tool}"
    if not isinstance(value, dict):
        errors[prefix] = ["A tool rule is an object, or null to remove the rule."]
        return None
    unknown = sorted(set(value) - set(RULE_FIELDS))
    for name in unknown:
        errors[f"{prefix}.{name}"] = ["Unknown field."]
    base = dict(existing) if existing else {"base_risk": "low", "argument_limits": []}
    base.setdefault("rate_limit_per_minute", None)
    base.setdefault("min_confidence", None)
    base.setdefault("blast_radius_from_arguments", {})
    base.setdefault("standing", {})
    rule = {**base, **{k: v for k, v in value.items() if k in RULE_FIELDS}}
    if rule.get("effect") not in Effect.values:
        errors[f"{prefix}.effect"] = [f"Choose one of {', '.join(Effect.values)}."]
    if rule.get("rule") not in RuleKind.values:
        errors[f"{prefix}.rule"] = [f"Choose one of {', '.join(RuleKind.values)}."]
    if rule.get("base_risk") not in ("low", "medium", "high", "critical"):
        errors[f"{prefix}.base_risk"] = ["Choose one of low, medium, high, critical."]
    limits = rule.get("argument_limits")
    if limits is None:
        limits = rule["argument_limits"] = []
    if not isinstance(limits, list):
        errors[f"{prefix}.argument_limits"] = ["A list of {field, op, value} objects."]
    elif len(limits) > MAX_LIMITS_PER_TOOL:
        errors[f"{prefix}.argument_limits"] = [f"At most {MAX_LIMITS_PER_TOOL} limits."]
    else:
        problems = []
        for index, limit in enumerate(limits, start=1):
            problem = validate_limit(limit)
            if problem is None and (set(limit) - {"field", "op", "value"}):
                problem = "a limit has only field, op and value"
            if problem:
                problems.append(f"limit {index}: {problem}")
        if problems:
            errors[f"{prefix}.argument_limits"] = problems
    if rule.get("blast_radius_from_arguments") is None:
        rule["blast_radius_from_arguments"] = {}
    problems = validate_radius_mapping(rule["blast_radius_from_arguments"])
    if problems:
        errors[f"{prefix}.blast_radius_from_arguments"] = problems
    rule["standing"] = normalize_bounds(
        rule.get("standing"), errors, f"{prefix}.standing", (existing or {}).get("standing")
    )
    rate = rule.get("rate_limit_per_minute")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int) or not 0 <= rate <= MAX_RATE_PER_MINUTE
    ):
        errors[f"{prefix}.rate_limit_per_minute"] = [
            f"A whole number from 0 to {MAX_RATE_PER_MINUTE}, or null for no limit."
        ]
    minimum = rule.get("min_confidence")
    if minimum is not None:
        if (
            isinstance(minimum, bool)
            or not isinstance(minimum, int | float)
            or not math.isfinite(minimum)
            or not 0 <= minimum <= 1
        ):
            errors[f"{prefix}.min_confidence"] = [
                "A number from 0 to 1 (e.g. 0.8), or null for no minimum confidence."
            ]
        else:
            rule["min_confidence"] = float(minimum)
    return {name: rule.get(name) for name in RULE_FIELDS}


def normalize_changes(changes: Any, current: dict) -> dict:
    """Validate a proposed change against the agent's live policy ``current`` (a piece) and
    return what it sets, as a piece. Raises ``GovernanceRefused("invalid", …)`` with
    field-level messages.

    ``changes`` may set ``tier`` (a tier name), ``active`` (bool),
    ``rate_limit_per_minute`` (int), ``tools`` ({tool: rule or null}), ``access``
    (``governance.access.normalize_access``) and ``environments`` ({environment: {"tier":
    name or null, "tools": {tool: rule or null}}}: per-environment overrides, null clears
    one); a tool rule given in part completes the tool's existing rule (an override's,
    else the agent's own)."""
    if not isinstance(changes, dict) or not changes:
        raise GovernanceRefused(
            "invalid",
            "Propose at least one of: tier, active, rate_limit_per_minute, tools, access, "
            "environments.",
            400,
        )
    errors: dict[str, list[str]] = {}
    for name in sorted(set(changes) - set(PIECE_KEYS)):
        errors[name] = ["Unknown field."]
    after: dict[str, Any] = {}
    if "tier" in changes:
        name = changes["tier"]
        tier = Tier.objects.filter(name=name).first() if isinstance(name, str) else None
        if tier is None:
            errors["tier"] = [f"No tier {name!r}."]
        else:
            after["tier"] = tier.as_policy()
    if "active" in changes:
        if not isinstance(changes["active"], bool):
            errors["active"] = ["true or false."]
        else:
            after["active"] = changes["active"]
    if "rate_limit_per_minute" in changes:
        rate = changes["rate_limit_per_minute"]
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int)
            or not 0 <= rate <= MAX_RATE_PER_MINUTE
        ):
            errors["rate_limit_per_minute"] = [f"A whole number from 0 to {MAX_RATE_PER_MINUTE}."]
        else:
            after["rate_limit_per_minute"] = rate
    if "tools" in changes:
        tools = changes["tools"]
        if not isinstance(tools, dict) or not tools:
            errors["tools"] = ["An object {tool: rule or null}."]
        elif len(tools) > MAX_TOOLS_PER_CHANGE:
            errors["tools"] = [f"At most {MAX_TOOLS_PER_CHANGE} tools per change."]
        else:
            after["tools"] = {}
            for tool, value in tools.items():
                if not isinstance(tool, str) or not TOOL_NAME.match(tool):
                    errors[f"tools.{tool}"] = ["Tool names use letters, digits and _.:/- only."]
                    continue
                if value is None:
                    after["tools"][tool] = None
                    continue
                existing = (current.get("tools") or {}).get(tool)
                after["tools"][tool] = _normalize_rule(tool, value, existing, errors)
    if "access" in changes:
        access = agent_access.normalize_access(
            changes["access"], current.get("access") or {}, errors
        )
        if access:
            after["access"] = access
    if "environments" in changes:
        environments = _normalize_environments(changes["environments"], current, errors)
        if environments:
            after["environments"] = environments
    if errors:
        raise GovernanceRefused("invalid", "The proposed change is not valid.", 400, errors)
    return after


def _normalize_environments(value: Any, current: dict, errors: dict[str, list[str]]) -> dict:
    """Per-environment overrides from ``value`` ({environment: {"tier": name or null,
    "tools": {tool: rule or null}}}), with errors keyed ``environments.<name>[.…]``."""
    if not isinstance(value, dict) or not value:
        errors["environments"] = ['An object {environment: {"tier": …, "tools": {…}}}.']
        return {}
    result: dict[str, dict] = {}
    live = current.get("environments") or {}
    for name, entry in value.items():
        key = f"environments.{name}"
        try:
            environment = known_environment(name)
        except UnknownEnvironment as exc:
            errors[key] = [str(exc)]
            continue
        if not environment:
            errors[key] = ["Name an environment."]
            continue
        key = f"environments.{environment}"
        if not isinstance(entry, dict) or not entry:
            errors[key] = ['An object with "tier" and/or "tools".']
            continue
        for unknown in sorted(set(entry) - {"tier", "tools"}):
            errors[f"{key}.{unknown}"] = ["Unknown field."]
        part: dict[str, Any] = {}
        if "tier" in entry:
            tier_name = entry["tier"]
            if tier_name is None:
                part["tier"] = None
            else:
                tier = (
                    Tier.objects.filter(name=tier_name).first()
                    if isinstance(tier_name, str)
                    else None
                )
                if tier is None:
                    errors[f"{key}.tier"] = [f"No tier {tier_name!r} (null clears the override)."]
                else:
                    part["tier"] = tier.as_policy()
        if "tools" in entry:
            tools = entry["tools"]
            if not isinstance(tools, dict) or not tools:
                errors[f"{key}.tools"] = ["An object {tool: rule or null}."]
            elif len(tools) > MAX_TOOLS_PER_CHANGE:
                errors[f"{key}.tools"] = [f"At most {MAX_TOOLS_PER_CHANGE} tools per change."]
            else:
                part["tools"] = {}
                overrides = (live.get(environment) or {}).get("tools") or {}
                for tool, rule in tools.items():
                    prefix = f"{key}.tools.{tool}"
                    if not isinstance(tool, str) or not TOOL_NAME.match(tool):
                        errors[prefix] = ["Tool names use letters, digits and _.:/- only."]
                        continue
                    if rule is None:
                        part["tools"][tool] = None
                        continue
                    existing = overrides.get(tool) or (current.get("tools") or {}).get(tool)
                    part["tools"][tool] = _normalize_rule(tool, rule, existing, errors, prefix)
        if part:
            result[environment] = part
    return result


def live_piece(agent: Agent) -> dict:
    """The agent's governable policy as it is in the live rows right now."""
    return piece_of_snapshot(build_snapshot(agent))


def preview_change(*, agent: Agent, changes: Any) -> Proposal:
    """Validate and compare a proposed change without writing anything (forms and the API
    use it to show what would happen)."""
    current = live_piece(agent)
    after = normalize_changes(changes, current)
    before = touched_piece(current, after)
    return Proposal(before=before, after=after, changes=changes_between(before, after))


def _units(after: dict) -> list[dict]:
    """``after`` cut into the smallest parts a change can apply on its own: the tier, each
    setting, each tool's rule, each right of each holder."""
    units: list[dict] = []
    for key, value in after.items():
        if key == "tools":
            units.extend({"tools": {tool: rule}} for tool, rule in value.items())
        elif key == "access":
            units.extend(
                {"access": {right: {holder: granted}}}
                for right, holders in value.items()
                for holder, granted in holders.items()
            )
        elif key == "environments":
            for environment, entry in value.items():
                if "tier" in entry:
                    units.append({"environments": {environment: {"tier": entry["tier"]}}})
                units.extend(
                    {"environments": {environment: {"tools": {tool: rule}}}}
                    for tool, rule in (entry.get("tools") or {}).items()
                )
        else:
            units.append({key: value})
    return units


def _merge(pieces: list[dict]) -> dict:
    merged: dict[str, Any] = {}
    for piece in pieces:
        for key, value in piece.items():
            if key == "tools":
                merged.setdefault("tools", {}).update(value)
            elif key == "access":
                for right, holders in value.items():
                    merged.setdefault("access", {}).setdefault(right, {}).update(holders)
            elif key == "environments":
                for environment, entry in value.items():
                    target = merged.setdefault("environments", {}).setdefault(environment, {})
                    if "tier" in entry:
                        target["tier"] = entry["tier"]
                    if "tools" in entry:
                        target.setdefault("tools", {}).update(entry["tools"])
            else:
                merged[key] = value
    return merged


def split_tightening(before: dict, after: dict) -> tuple[dict, dict]:
    """A mixed change cut in two: the parts (tier, a setting, one tool's rule, one right of
    one holder, one environment's tier or one tool's override there) that only tighten, which may apply at once, and the rest. A part whose own
    changes go both ways (a rule tightened in one field and loosened in another) stays in
    the rest. Either may be empty."""
    tightening, rest = [], []
    for unit in _units(after):
        found = changes_between(touched_piece(before, unit), unit)
        if not found:
            continue
        (tightening if classify(found) == TIGHTENING else rest).append(unit)
    return _merge(tightening), _merge(rest)


def changes_of(change_request: ChangeRequest) -> list[Change]:
    """The readable changes a request makes, from what it stored (stable over time)."""
    return changes_between(change_request.before, change_request.after)


def proposal_as_input(after: dict) -> dict:
    """A stored ``after`` piece in the shape ``propose_change`` accepts (tier by name)."""
    data = {key: value for key, value in after.items() if key not in ("tier", "environments")}
    if "tier" in after:
        data["tier"] = (after["tier"] or {}).get("name")
    if "environments" in after:
        data["environments"] = {
            environment: {
                **({"tools": entry["tools"]} if "tools" in entry else {}),
                **({"tier": (entry["tier"] or {}).get("name")} if "tier" in entry else {}),
            }
            for environment, entry in after["environments"].items()
        }
    return data


# --- helpers ------------------------------------------------------------------------------


def _actor(user: Any) -> Actor:
    return Actor.user(user)


def _clean_reason(reason: Any) -> str:
    reason = str(reason or "").strip()
    if not reason:
        raise GovernanceRefused(
            "reason_required", "Say why (it is kept in the policy version and the audit log).", 400
        )
    if len(reason) > REASON_MAX:
        raise GovernanceRefused(
            "invalid", f"The reason is longer than {REASON_MAX} characters.", 400
        )
    return reason


def _require_governor(user: Any, agent: Agent) -> None:
    if not agent_perms.can_govern(user, agent):
        raise GovernanceRefused("not_governor", "You may not govern this agent.", 403)


def _lock_agent(agent_id: int) -> Agent:
    return Agent.objects.select_for_update(of=("self",)).select_related("tier").get(pk=agent_id)


def _lock_change_request(change_request_id: int) -> ChangeRequest:
    try:
        return (
            ChangeRequest.objects.select_for_update(of=("self",))
            .select_related("agent", "author")
            .get(pk=change_request_id)
        )
    except ChangeRequest.DoesNotExist:
        raise GovernanceRefused("not_found", "No such change request.", 404) from None


def _for_audit(piece: dict) -> dict:
    """A piece with its tools as a list: tool names are data, and a key such as
    ``reset_password`` would otherwise be masked by the audit log's secret redaction."""
    data = {
        key: value for key, value in piece.items() if key not in ("tools", "access", "environments")
    }
    if "tier" in piece:
        data["tier"] = (piece["tier"] or {}).get("name")
    if "environments" in piece:
        # Only the overrides themselves (a change's before also keeps the agent's own
        # values it was judged against: those are in the policy version).
        data["environments"] = [
            {
                "environment": environment,
                **({"tier": (entry["tier"] or {}).get("name")} if "tier" in entry else {}),
                "tools": [
                    {"tool": tool, "rule": rule}
                    for tool, rule in (entry.get("tools") or {}).items()
                ],
            }
            for environment, entry in piece["environments"].items()
        ]
    if "tools" in piece:
        data["tools"] = [{"tool": tool, "rule": rule} for tool, rule in piece["tools"].items()]
    if "access" in piece:
        # Holders are user and group names: keys an audit redaction could mask, so a list.
        data["access"] = [
            {"right": right, "holder": holder, "granted": bool(granted)}
            for right, holders in piece["access"].items()
            for holder, granted in holders.items()
        ]
    return data


def _apply_to_live_rows(
    agent: Agent, after: dict, *, actor: Actor, change_request_id: int | None = None
) -> None:
    """Write ``after`` into the agent's live rows (the caller holds the agent's lock).
    Access changes are audited one by one (``access.granted`` / ``access.removed``).
    Standing approvals end (audited) where the change touches what they were granted
    under: all of the agent's for a new tier or activity, a tool's for any change of its
    rule (its standing bounds included)."""
    _end_standing_approvals(agent, after, actor)
    fields = []
    if "tier" in after:
        agent.tier = Tier.objects.get(name=after["tier"]["name"])
        fields.append("tier")
    for name in ("active", "rate_limit_per_minute"):
        if name in after:
            setattr(agent, name, after[name])
            fields.append(name)
    if fields:
        agent.save(update_fields=fields)
    for tool, rule in (after.get("tools") or {}).items():
        if rule is None:
            ToolRule.objects.filter(agent=agent, tool=tool).delete()
        else:
            # A rule stored before a field existed leaves that field as it is live.
            ToolRule.objects.update_or_create(
                agent=agent,
                tool=tool,
                defaults={name: rule[name] for name in RULE_FIELDS if name in rule},
            )
    if after.get("access"):
        agent_access.apply_access(
            agent, after["access"], actor=actor, change_request_id=change_request_id
        )
    for environment, entry in (after.get("environments") or {}).items():
        _apply_environment_override(agent, environment, entry)


def _apply_environment_override(agent: Agent, environment: str, entry: dict) -> None:
    """Write one environment's override change into its row (the row goes when it is left
    with neither a tier nor a tool rule)."""
    override, _ = EnvironmentOverride.objects.select_for_update().get_or_create(
        agent=agent, environment=environment
    )
    if "tier" in entry:
        override.tier = (
            Tier.objects.get(name=entry["tier"]["name"]) if entry["tier"] is not None else None
        )
    tools = dict(override.tools or {})
    for tool, rule in (entry.get("tools") or {}).items():
        if rule is None:
            tools.pop(tool, None)
        else:
            tools[tool] = {name: rule.get(name) for name in RULE_FIELDS}
    override.tools = tools
    if override.tier_id is None and not override.tools:
        override.delete()
    else:
        override.save()


def _end_standing_approvals(agent: Agent, after: dict, actor: Actor) -> None:
    live = live_piece(agent)
    if any(
        key in after and not same_value(live.get(key), after[key]) for key in ("tier", "active")
    ):
        end_standing_for_policy_change(agent=agent, tools=None, actor=actor)
        return
    environments = after.get("environments") or {}
    if any("tier" in entry for entry in environments.values()):
        # An environment's tier changes what every standing approval there was granted
        # under: end the agent's, as a tier change does.
        end_standing_for_policy_change(agent=agent, tools=None, actor=actor)
        return
    changed = {
        tool
        for tool, rule in (after.get("tools") or {}).items()
        if not same_value(
            with_rule_defaults((live.get("tools") or {}).get(tool)), with_rule_defaults(rule)
        )
    }
    # A tool whose override changes in some environment: its standing approvals end.
    changed |= {tool for entry in environments.values() for tool in entry.get("tools") or {}}
    end_standing_for_policy_change(agent=agent, tools=changed, actor=actor)


def _version_reason(text: str) -> str:
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 1] + "…"


def _broadcast_version_on_commit(version: PolicyVersion, change: str) -> None:
    transaction.on_commit(lambda: events.broadcast_policy_version(version, change))


def _broadcast_request_on_commit(change_request: ChangeRequest, change: str) -> None:
    transaction.on_commit(lambda: events.broadcast_change_request(change_request, change))


# --- proposing ------------------------------------------------------------------------------


def propose_change(
    *,
    agent: Agent,
    user: Any,
    changes: Any,
    reason: str,
    required_approvals: int = 1,
    apply_tightening_now: bool = False,
) -> ProposalResult:
    """Propose a change to ``agent``'s policy.

    A tightening is applied at once: the live rows change and a new policy version becomes
    current; audits ``governance.change_applied`` (+ ``policy.version_created``) and
    broadcasts the version. A loosening (or a mixed change) opens a change request needing
    ``required_approvals`` approvals of other governance owners; audits
    ``change_request.created`` and broadcasts it. A change that changes nothing is refused
    (``no_change``).

    With ``apply_tightening_now``, a mixed change is split (``split_tightening``): its
    tightening parts apply at once as their own policy version, and the rest becomes the
    change request (written against the policy that version made current)."""
    reason = _clean_reason(reason)
    if not isinstance(required_approvals, int) or not (
        1 <= required_approvals <= MAX_REQUIRED_APPROVALS
    ):
        raise GovernanceRefused(
            "invalid",
            f"required_approvals is from 1 to {MAX_REQUIRED_APPROVALS}.",
            400,
            {"required_approvals": [f"From 1 to {MAX_REQUIRED_APPROVALS}."]},
        )
    with transaction.atomic():
        agent = _lock_agent(agent.pk)
        _require_governor(user, agent)
        current = live_piece(agent)
        after = normalize_changes(changes, current)
        before = touched_piece(current, after)
        found = changes_between(before, after)
        classification = classify(found)
        if classification == NO_CHANGE:
            raise GovernanceRefused("no_change", "This changes nothing in the current policy.", 400)
        actor = _actor(user)
        if classification == TIGHTENING:
            version = _apply_tightening(agent, before, after, found, actor=actor, reason=reason)
            return ProposalResult(classification, found, policy_version=version)
        split_version = None
        applied: list[Change] = []
        if apply_tightening_now:
            tightening, rest = split_tightening(before, after)
            if tightening and rest:
                tight_before = touched_piece(before, tightening)
                applied = changes_between(tight_before, tightening)
                split_version = _apply_tightening(
                    agent, tight_before, tightening, applied, actor=actor, reason=reason
                )
                current = live_piece(agent)
                after = rest
                before = touched_piece(current, after)
                found = changes_between(before, after)
                classification = classify(found)
        change_request = ChangeRequest.objects.create(
            agent=agent,
            author=user,
            classification=classification,
            reason=reason,
            before=before,
            after=after,
            required_approvals=required_approvals,
            base_version=agent.current_policy,
        )
        append_event(
            verb=verbs.CHANGE_REQUEST_CREATED,
            actor=actor,
            target_type="change_request",
            target_id=change_request.pk,
            agent_slug=agent.slug,
            data={
                "classification": classification,
                "reason": reason,
                "changes": [change.text for change in found],
                "before": _for_audit(before),
                "after": _for_audit(after),
                "required_approvals": required_approvals,
            },
        )
        _broadcast_request_on_commit(change_request, "created")
        return ProposalResult(
            classification,
            found,
            policy_version=split_version,
            change_request=change_request,
            applied_changes=applied,
        )


def _apply_tightening(
    agent: Agent, before: dict, after: dict, found: list[Change], *, actor: Actor, reason: str
) -> PolicyVersion:
    """Apply a tightening to the live rows as a new policy version (the caller holds the
    agent's lock); audits ``governance.change_applied`` and broadcasts the version."""
    _apply_to_live_rows(agent, after, actor=actor)
    version = record_policy_version(
        agent=agent, actor=actor, reason=_version_reason(f"tightened: {reason}")
    )
    append_event(
        verb=verbs.GOVERNANCE_CHANGE_APPLIED,
        actor=actor,
        target_type="agent",
        target_id=agent.pk,
        agent_slug=agent.slug,
        data={
            "classification": TIGHTENING,
            "reason": reason,
            "changes": [change.text for change in found],
            "before": _for_audit(before),
            "after": _for_audit(after),
            "policy_version": version.number,
        },
    )
    _broadcast_version_on_commit(version, "tightened")
    return version


# --- reverting to a policy version ---------------------------------------------------------


def _version_or_refuse(agent: Agent, number: Any) -> PolicyVersion:
    version = (
        agent.policy_versions.filter(number=number).first()
        if isinstance(number, int) and not isinstance(number, bool)
        else None
    )
    if version is None:
        raise GovernanceRefused("not_found", "No such policy version.", 404)
    return version


def revert_reason(version: PolicyVersion) -> str:
    """The reason a revert proposes when its author gives none."""
    return f"Revert to version {version.number}"


def revert_changes(agent: Agent, version: PolicyVersion) -> dict:
    """The proposed change (in ``propose_change``'s input shape) that brings ``agent``'s
    live policy back to ``version`` in tier, tool rules, per-environment overrides, rate
    limit and activity — never in access. A tool ruled now but not in the version is removed; every rule field the
    version stored comes back (one it predates takes the field's default). Only the parts
    that differ from the live policy are proposed, so the change request stays stale-proof
    for the tools it does not touch; ``{}`` means there is nothing to revert. Writes
    nothing."""
    target = piece_of_snapshot(version.snapshot)
    current = live_piece(agent)
    # Never ``access``: restoring it would re-grant people removed since the version.
    wanted: dict[str, Any] = {
        "tier": (target.get("tier") or {}).get("name"),
        "active": target.get("active"),
        "rate_limit_per_minute": target.get("rate_limit_per_minute"),
    }
    tools: dict[str, Any] = {
        tool: None for tool in (current.get("tools") or {}) if tool not in target["tools"]
    }
    for tool, rule in target["tools"].items():
        rule = with_rule_defaults(rule) or {}
        tools[tool] = {name: rule[name] for name in RULE_FIELDS if name in rule}
    if tools:
        wanted["tools"] = tools
    # Overrides come back too: each environment's tier and tool rules as the version had
    # them (null clears one the version did not have).
    live_overrides = current.get("environments") or {}
    target_overrides = target.get("environments") or {}
    environments: dict[str, Any] = {}
    for environment in sorted(set(live_overrides) | set(target_overrides)):
        live_entry = live_overrides.get(environment) or {}
        old_entry = target_overrides.get(environment) or {}
        entry: dict[str, Any] = {}
        if live_entry.get("tier") or old_entry.get("tier"):
            entry["tier"] = (old_entry.get("tier") or {}).get("name")
        override_tools = {
            tool: None
            for tool in (live_entry.get("tools") or {})
            if tool not in (old_entry.get("tools") or {})
        }
        for tool, rule in (old_entry.get("tools") or {}).items():
            rule = with_rule_defaults(rule) or {}
            override_tools[tool] = {name: rule[name] for name in RULE_FIELDS if name in rule}
        if override_tools:
            entry["tools"] = override_tools
        if entry:
            environments[environment] = entry
    if environments:
        wanted["environments"] = environments
    # Through the change form's own validation, so the version's values are read as a
    # proposal would be (a rule's missing fields complete from the live rule).
    after = normalize_changes(wanted, current)
    differing = [
        unit for unit in _units(after) if changes_between(touched_piece(current, unit), unit)
    ]
    return proposal_as_input(_merge(differing)) if differing else {}


def _nothing_to_revert(version: PolicyVersion) -> GovernanceRefused:
    return GovernanceRefused(
        "nothing_to_revert",
        f"Version {version.number} has the live policy's tier, tool rules, per-environment "
        "overrides, rate limit and activity: nothing to revert.",
        409,
    )


def preview_revert(*, agent: Agent, number: Any) -> tuple[PolicyVersion, dict, Proposal]:
    """What reverting ``agent`` to version ``number`` would propose: the version, the
    proposed change and its preview (as ``preview_change``). Refuses ``not_found`` and
    ``nothing_to_revert``. Writes nothing."""
    version = _version_or_refuse(agent, number)
    changes = revert_changes(agent, version)
    if not changes:
        raise _nothing_to_revert(version)
    return version, changes, preview_change(agent=agent, changes=changes)


def revert_to_version(
    *,
    agent: Agent,
    number: Any,
    user: Any,
    reason: str | None = None,
    required_approvals: int = 1,
    apply_tightening_now: bool = False,
) -> ProposalResult:
    """Propose bringing ``agent`` back to its policy version ``number`` (``revert_changes``,
    computed under the agent's lock) as an ordinary change through ``propose_change``: a
    tightening applies at once, anything else opens a change request (with
    ``apply_tightening_now``, a mixed one applies its tightening parts first). Audits and
    broadcasts exactly as ``propose_change``. The reason defaults to "Revert to version
    N". Refuses ``not_governor``, ``not_found`` and ``nothing_to_revert``."""
    with transaction.atomic():
        agent = _lock_agent(agent.pk)
        _require_governor(user, agent)
        version = _version_or_refuse(agent, number)
        changes = revert_changes(agent, version)
        if not changes:
            raise _nothing_to_revert(version)
        if reason is None or not str(reason).strip():
            reason = revert_reason(version)
        return propose_change(
            agent=agent,
            user=user,
            changes=changes,
            reason=reason,
            required_approvals=required_approvals,
            apply_tightening_now=apply_tightening_now,
        )


# --- change requests ----------------------------------------------------------------------


def current_approvals(change_request: ChangeRequest) -> list[ChangeApproval]:
    """Approvals that count: given on the request's current revision, not voided."""
    return [
        approval
        for approval in change_request.approvals.all()
        if approval.revision == change_request.revision and not approval.voided
    ]


def is_stale(change_request: ChangeRequest, agent: Agent | None = None) -> bool:
    """True when the agent's live policy no longer matches what the request was written
    against, so its diff would not be what approvers saw."""
    if agent is None:
        agent = Agent.objects.select_related("tier").get(pk=change_request.agent_id)
    current = touched_piece(live_piece(agent), change_request.after)
    return not same_value(current, change_request.before)


def approval_refusal(change_request: ChangeRequest, user: Any) -> tuple[str, str, int] | None:
    """Why ``user`` may not approve ``change_request`` now, as (code, detail, status), or
    None. Pages offer only what this allows; ``approve_change_request`` asks again under
    the lock."""
    if not agent_perms.can_govern(user, change_request.agent):
        return ("not_governor", "You may not govern this agent.", 403)
    if change_request.status != ChangeRequest.Status.OPEN:
        return ("not_open", f"This change request is {change_request.status}.", 409)
    if change_request.author_id == user.pk:
        return (
            "own_change_request",
            "You wrote this change request; another governance owner must approve it.",
            403,
        )
    if any(a.approver_id == user.pk for a in current_approvals(change_request)):
        return ("already_approved", "You already approved this revision.", 409)
    return None


def approve_change_request(
    *, change_request_id: int, user: Any, revision: int | None = None, comment: str = ""
) -> ChangeRequest:
    """Record ``user``'s approval of the request's current revision (``revision``, when
    given, must be the one the approver saw). The approval that meets the quorum applies
    the change to the live rows as a new policy version, exactly once: approvals of one
    request are serialised by its row lock. Refuses a stale request (the live policy
    changed under it; the author must edit it). Audits
    ``change_request.approval_recorded`` and, on application, ``change_request.applied``
    (+ ``policy.version_created``); broadcasts the request (and the version)."""
    with transaction.atomic():
        change_request = _lock_change_request(change_request_id)
        refusal = approval_refusal(change_request, user)
        if refusal:
            raise GovernanceRefused(*refusal)
        if revision is not None and revision != change_request.revision:
            raise GovernanceRefused(
                "revision_changed",
                f"The change request was edited (now revision {change_request.revision}); "
                "review it again.",
                409,
            )
        agent = _lock_agent(change_request.agent_id)
        if is_stale(change_request, agent):
            raise GovernanceRefused(
                "stale",
                "The agent's policy changed since this request was written; its author must "
                "edit it before it can be approved.",
                409,
            )
        try:
            with transaction.atomic():
                ChangeApproval.objects.create(
                    change_request=change_request,
                    approver=user,
                    revision=change_request.revision,
                    comment=str(comment or "")[:4000],
                )
        except IntegrityError:
            raise GovernanceRefused(
                "already_approved", "You already approved this revision.", 409
            ) from None
        approvals = current_approvals(change_request)
        actor = _actor(user)
        append_event(
            verb=verbs.CHANGE_REQUEST_APPROVAL_RECORDED,
            actor=actor,
            target_type="change_request",
            target_id=change_request.pk,
            agent_slug=agent.slug,
            data={
                "revision": change_request.revision,
                "comment": comment,
                "approvals": len(approvals),
                "required": change_request.required_approvals,
            },
        )
        if len(approvals) < change_request.required_approvals:
            _broadcast_request_on_commit(change_request, "approval_recorded")
            return change_request
        _apply_change_request(change_request, agent, user, approvals)
    return change_request


def _apply_change_request(
    change_request: ChangeRequest, agent: Agent, user: Any, approvals: list[ChangeApproval]
) -> None:
    actor = _actor(user)
    _apply_to_live_rows(
        agent, change_request.after, actor=actor, change_request_id=change_request.pk
    )
    version = record_policy_version(
        agent=agent,
        actor=actor,
        reason=_version_reason(f"change request #{change_request.pk}: {change_request.reason}"),
    )
    change_request.status = ChangeRequest.Status.APPLIED
    change_request.applied_version = version
    change_request.closed_at = timezone.now()
    change_request.closed_by = user
    change_request.save(
        update_fields=["status", "applied_version", "closed_at", "closed_by", "updated_at"]
    )
    append_event(
        verb=verbs.CHANGE_REQUEST_APPLIED,
        actor=actor,
        target_type="change_request",
        target_id=change_request.pk,
        agent_slug=agent.slug,
        data={
            "author": change_request.author.get_username(),
            "approvers": [a.approver.get_username() for a in approvals],
            "revision": change_request.revision,
            "changes": [change.text for change in changes_of(change_request)],
            "policy_version": version.number,
        },
    )
    _broadcast_request_on_commit(change_request, "applied")
    _broadcast_version_on_commit(version, "change_request_applied")


def reject_change_request(*, change_request_id: int, user: Any, comment: str) -> ChangeRequest:
    """Close an open request without applying it. Another governance owner of the agent
    rejects (with a comment); the author withdraws instead. Audits
    ``change_request.rejected``; broadcasts."""
    comment = str(comment or "").strip()
    if not comment:
        raise GovernanceRefused("comment_required", "A rejection needs a reason.", 400)
    with transaction.atomic():
        change_request = _lock_change_request(change_request_id)
        _require_governor(user, change_request.agent)
        if change_request.status != ChangeRequest.Status.OPEN:
            raise GovernanceRefused("not_open", f"This change request is {change_request.status}.")
        if change_request.author_id == user.pk:
            raise GovernanceRefused(
                "own_change_request", "You wrote this change request; withdraw it instead.", 403
            )
        _close(change_request, ChangeRequest.Status.REJECTED, user, comment)
        append_event(
            verb=verbs.CHANGE_REQUEST_REJECTED,
            actor=_actor(user),
            target_type="change_request",
            target_id=change_request.pk,
            agent_slug=change_request.agent.slug,
            data={"comment": comment, "revision": change_request.revision},
        )
        _broadcast_request_on_commit(change_request, "rejected")
    return change_request


def withdraw_change_request(
    *, change_request_id: int, user: Any, comment: str = ""
) -> ChangeRequest:
    """The author takes back an open request. Audits ``change_request.withdrawn``;
    broadcasts."""
    with transaction.atomic():
        change_request = _lock_change_request(change_request_id)
        if change_request.author_id != user.pk:
            raise GovernanceRefused("not_author", "Only the author may withdraw it.", 403)
        if change_request.status != ChangeRequest.Status.OPEN:
            raise GovernanceRefused("not_open", f"This change request is {change_request.status}.")
        comment = str(comment or "").strip()
        _close(change_request, ChangeRequest.Status.WITHDRAWN, user, comment)
        append_event(
            verb=verbs.CHANGE_REQUEST_WITHDRAWN,
            actor=_actor(user),
            target_type="change_request",
            target_id=change_request.pk,
            agent_slug=change_request.agent.slug,
            data={"comment": comment, "revision": change_request.revision},
        )
        _broadcast_request_on_commit(change_request, "withdrawn")
    return change_request


def _close(change_request: ChangeRequest, status: str, user: Any, comment: str) -> None:
    change_request.status = status
    change_request.closed_at = timezone.now()
    change_request.closed_by = user
    change_request.close_comment = comment
    change_request.save(
        update_fields=["status", "closed_at", "closed_by", "close_comment", "updated_at"]
    )


def edit_change_request(
    *,
    change_request_id: int,
    user: Any,
    changes: Any,
    reason: str | None = None,
    required_approvals: int | None = None,
) -> ChangeRequest:
    """The author replaces an open request's proposed change (and optionally its reason or
    quorum). The request is re-based on the agent's live policy, its revision goes up and
    every earlier approval is voided. Audits ``change_request.edited``; broadcasts."""
    with transaction.atomic():
        change_request = _lock_change_request(change_request_id)
        if change_request.author_id != user.pk:
            raise GovernanceRefused("not_author", "Only the author may edit it.", 403)
        _require_governor(user, change_request.agent)
        if change_request.status != ChangeRequest.Status.OPEN:
            raise GovernanceRefused("not_open", f"This change request is {change_request.status}.")
        if reason is not None:
            change_request.reason = _clean_reason(reason)
        if required_approvals is not None:
            if not isinstance(required_approvals, int) or not (
                1 <= required_approvals <= MAX_REQUIRED_APPROVALS
            ):
                raise GovernanceRefused(
                    "invalid",
                    f"required_approvals is from 1 to {MAX_REQUIRED_APPROVALS}.",
                    400,
                    {"required_approvals": [f"From 1 to {MAX_REQUIRED_APPROVALS}."]},
                )
            change_request.required_approvals = required_approvals
        agent = _lock_agent(change_request.agent_id)
        current = live_piece(agent)
        after = normalize_changes(changes, current)
        before = touched_piece(current, after)
        found = changes_between(before, after)
        if classify(found) == NO_CHANGE:
            raise GovernanceRefused("no_change", "This changes nothing in the current policy.", 400)
        # A change edited into a pure tightening still waits for its approval: more review
        # is never less safe, and the approver sees the request they are asked about.
        change_request.before = before
        change_request.after = after
        change_request.classification = classify(found)
        change_request.revision += 1
        change_request.base_version = agent.current_policy
        change_request.save()
        voided = change_request.approvals.filter(voided=False).update(voided=True)
        append_event(
            verb=verbs.CHANGE_REQUEST_EDITED,
            actor=_actor(user),
            target_type="change_request",
            target_id=change_request.pk,
            agent_slug=agent.slug,
            data={
                "revision": change_request.revision,
                "approvals_voided": voided,
                "reason": change_request.reason,
                "changes": [change.text for change in found],
                "before": _for_audit(before),
                "after": _for_audit(after),
            },
        )
        _broadcast_request_on_commit(change_request, "edited")
    return change_request


# --- registration and tokens ------------------------------------------------------------------


def can_register_agents(user: Any) -> bool:
    """Registering needs the govern right over all agents (there is no agent yet to hold it
    on)."""
    return is_active_person(user) and user.has_perm(agent_perms.GOVERN)


def register(*, user: Any, slug: str, name: str, description: str = "") -> Agent:
    """Register an agent at the bottom of the tier ladder with no tool rules: it can do
    nothing until a promotion and its tools pass change requests. Audits
    ``agent.registered`` and ``policy.version_created``; broadcasts the version."""
    if not can_register_agents(user):
        raise GovernanceRefused("not_governor", "You may not register agents.", 403)
    slug = str(slug or "").strip()
    name = str(name or "").strip()
    errors = {}
    if not AGENT_SLUG.match(slug):
        errors["slug"] = ["Lower-case letters, digits and dashes (at most 80)."]
    if not name or len(name) > 120:
        errors["name"] = ["A name of 1 to 120 characters."]
    if errors:
        raise GovernanceRefused("invalid", "The agent is not valid.", 400, errors)
    lowest = Tier.objects.order_by("rank").first()
    if lowest is None:
        raise GovernanceRefused("no_tiers", "No tiers are defined.", 409)
    with transaction.atomic():
        if Agent.objects.filter(slug=slug).exists():
            raise GovernanceRefused(
                "slug_taken", f"An agent {slug!r} exists.", 409, {"slug": ["Already taken."]}
            )
        try:
            with transaction.atomic():
                agent = register_agent(
                    actor=_actor(user),
                    slug=slug,
                    name=name,
                    tier=lowest.name,
                    description=str(description or "")[:2000],
                    owner=user,
                    rules=[],
                )
        except IntegrityError:
            raise GovernanceRefused(
                "slug_taken", f"An agent {slug!r} exists.", 409, {"slug": ["Already taken."]}
            ) from None
        agent.refresh_from_db()
        version = agent.current_policy
        if version is not None:
            _broadcast_version_on_commit(version, "registered")
    return agent


def issue_token(*, agent: Agent, user: Any, name: str = "default", environment: str = "") -> str:
    """Issue a bearer token for ``agent``, bound to ``environment`` ("" = unbound), and
    return it (shown once; only its digest is kept). A change of access, so it makes a new
    policy version. Audits ``agent.token_issued`` and ``policy.version_created``;
    broadcasts the version. An unknown environment is refused (400
    ``invalid_environment``) before anything is written."""
    name = str(name or "").strip() or "default"
    if len(name) > 80:
        raise GovernanceRefused("invalid", "A token name has at most 80 characters.", 400)
    try:
        environment = known_environment(environment)
    except UnknownEnvironment as exc:
        raise GovernanceRefused(
            "invalid_environment", str(exc), 400, {"environment": [str(exc)]}
        ) from exc
    with transaction.atomic():
        agent = _lock_agent(agent.pk)
        _require_governor(user, agent)
        token = issue_agent_token(
            agent=agent, actor=_actor(user), name=name, environment=environment
        )
        version = record_policy_version(
            agent=agent, actor=_actor(user), reason=_version_reason(f"token {token[:10]}… issued")
        )
        _broadcast_version_on_commit(version, "token_issued")
    return token


def rotate_webhook_secret(*, agent: Agent, user: Any) -> str:
    """Give ``agent`` a new webhook secret and return it (shown once; the previous one keeps
    signing for ``WEBHOOK_SECRET_GRACE_SECONDS``). Only a governor of the agent may. Audits
    ``agent.webhook_secret_rotated`` (who and which agent, never a secret)."""
    with transaction.atomic():
        agent = _lock_agent(agent.pk)
        _require_governor(user, agent)
        return rotate_agent_webhook_secret(agent=agent, actor=_actor(user))


def revoke_token(*, agent: Agent, token_id: int, user: Any) -> AgentToken:
    """Revoke one of ``agent``'s tokens at once (a tightening: no approval needed) and make
    a new policy version. Audits ``agent.token_revoked`` and ``policy.version_created``;
    broadcasts the version. Revoking a revoked token changes nothing."""
    with transaction.atomic():
        agent = _lock_agent(agent.pk)
        _require_governor(user, agent)
        record = AgentToken.objects.select_for_update().filter(pk=token_id, agent=agent).first()
        if record is None:
            raise GovernanceRefused("not_found", "No such token for this agent.", 404)
        if record.revoked_at is not None:
            return record
        record = revoke_agent_token(token_id=record.pk, actor=_actor(user))
        version = record_policy_version(
            agent=agent,
            actor=_actor(user),
            reason=_version_reason(f"token {record.prefix}… revoked"),
        )
        _broadcast_version_on_commit(version, "token_revoked")
    return record


# --- shadow labels ------------------------------------------------------------------------


def label_shadow_action(*, action_id: int, user: Any, label: str) -> ShadowLabel:
    """Record (or change) ``user``'s judgement of a shadowed action: would they have
    approved it? Only reviewers of the agent label. Audits ``action.shadow_labelled``."""
    if label not in ShadowLabel.Label.values:
        raise GovernanceRefused(
            "invalid",
            "The label is would_approve or would_reject.",
            400,
            {"label": ["would_approve or would_reject."]},
        )
    with transaction.atomic():
        action = (
            Action.objects.select_for_update(of=("self",))
            .select_related("agent")
            .filter(pk=action_id)
            .first()
        )
        if action is None:
            raise GovernanceRefused("not_found", "No such action.", 404)
        if not agent_perms.can_review(user, action.agent):
            raise GovernanceRefused("not_reviewer", "You may not review this agent.", 403)
        if action.status != ActionStatus.SHADOWED:
            raise GovernanceRefused(
                "not_shadowed", f"This action is {action.status}; only shadow actions are labelled."
            )
        shadow_label, created = ShadowLabel.objects.update_or_create(
            action=action, reviewer=user, defaults={"label": label}
        )
        append_event(
            verb=verbs.ACTION_SHADOW_LABELLED,
            actor=_actor(user),
            target_type="action",
            target_id=action.pk,
            agent_slug=action.agent.slug,
            correlation_id=action.correlation_id,
            data={"label": label, "changed": not created},
        )
    return shadow_label


__all__ = [
    "LOOSENING",
    "NO_CHANGE",
    "TIGHTENING",
    "GovernanceRefused",
    "Proposal",
    "ProposalResult",
    "approve_change_request",
    "edit_change_request",
    "issue_token",
    "label_shadow_action",
    "propose_change",
    "register",
    "reject_change_request",
    "revert_to_version",
    "revoke_token",
    "rotate_webhook_secret",
    "withdraw_change_request",
]
