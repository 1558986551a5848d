"""The gate's decision, as a pure function.

``evaluate(snapshot, request, switches, counters)`` decides one tool call from data only:
the agent's policy snapshot (``rollout.snapshots.build_snapshot``), the engaged kill
switches in scope, and the recent call counters. No database, no clock, no I/O — so it is
testable on its own, replayable against any policy version, and fast.

Order of evaluation (first match wins), each with its reason code:
kill_switch → environment_mismatch → agent_inactive → tool_forbidden → tool_unknown →
argument_limit → rate_limited → the rule and tier table → low_confidence.

``low_confidence`` only ever turns the table's ``allowed`` (``allowed`` or
``auto_approved``) into ``pending``: when the tool's rule sets ``min_confidence`` and the
call's confidence (``rationale.confidence``; missing counts as 0) is below it, a person
decides, with the approval matrix's bar for the risk like any pending call. Denials,
shadowing and what the table already holds for people are unchanged: a tier that only
shadows still runs nothing.

A call is judged by ``effective_snapshot(snapshot, call environment)``: the agent's policy
with the override of the environment the call acts in laid over it (its tier replaces the
agent's, each of its tool rules replaces that tool's rule). Every replay of a stored call
(backtest, trace replay, regression cases) and the standing-approval bounds read the
policy through the same function.

``assess_edit`` runs the same steps from ``tool_forbidden`` onward for a reviewer's edit of
a pending action (no kill switch, activity or rate limit: the action already passed them).

Risk is the tool's base risk raised by the blast radius: the higher of what the agent
declares and what the tool rule derives from the arguments (``derived_blast_radius``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

RISKS = ("low", "medium", "high", "critical")
# The drill probe's tool name. It is special only for a call the write path recognised as a
# running drill's probe (``GateRequest.drill_probe``: the drill's own one-time token, no
# arguments); for anyone else it is an unknown tool like any other (default deny).
PROBE_TOOL = "airlock.probe"
# What a recognised drill probe is judged by: a read at low risk, no arguments.
PROBE_RULE: dict[str, Any] = {
    "effect": "read",
    "rule": "allowed",
    "base_risk": "low",
    "argument_limits": [],
}

DEFAULT_RISK_RULES: dict[str, Any] = {
    "production_environments": ["production", "prod"],
    "production_min": "medium",
    "irreversible_min": "high",
    "high_amount": 1000,
    "high_count": 100,
    "critical_amount": 10000,
    "critical_count": 10000,
}

DEFAULT_APPROVAL_MATRIX: dict[str, dict[str, Any]] = {
    "low": {"approvals": 1, "critical_approver": False},
    "medium": {"approvals": 1, "critical_approver": False},
    "high": {"approvals": 2, "critical_approver": False},
    "critical": {"approvals": 2, "critical_approver": True},
}

DEFAULT_PENDING_TTL_SECONDS = {"low": 86400, "medium": 28800, "high": 14400, "critical": 3600}

LIMIT_OPERATORS = ("<=", "<", ">=", ">", "==", "!=", "in", "not_in", "max_length", "matches")

# The blast-radius dimensions a tool rule may read from the arguments
# (``blast_radius_from_arguments = {"amount": "amount", "records_affected": "rows"}``).
RADIUS_DIMENSIONS = ("amount", "records_affected", "users_affected")
RADIUS_PATH_MAX = 200


@dataclass(frozen=True)
class GateRequest:
    """One tool call. ``drill_probe`` is a fact the write path established before asking
    (``incidents.drills.probe_call``): the call came with a running drill's own probe token,
    names ``PROBE_TOOL`` and carries no arguments. Only then does ``PROBE_TOOL`` have a rule
    (``PROBE_RULE``) and only then does a drill switch apply; the engine stays pure."""

    tool: str
    arguments: dict
    blast_radius: dict = field(default_factory=dict)
    drill_probe: bool = False
    # The environment of the agent's token ("" = unbound). A bound call is in that
    # environment whatever it declares (a different declaration is denied,
    # ``environment_mismatch``); an unbound call's declaration only raises risk.
    environment: str = ""
    # The agent's own confidence in the call (``rationale.confidence``, 0..1); None when
    # it gave none, which a rule's ``min_confidence`` counts as 0.
    confidence: float | None = None

    @property
    def declared_environment(self) -> str:
        radius = self.blast_radius if isinstance(self.blast_radius, dict) else {}
        return str(radius.get("environment") or "").strip().lower()

    # Only the token vouches for an environment. An unbound call's declaration is the
    # agent's word: it may raise risk (production's floor), never choose a policy
    # (``effective_snapshot``) or step out of an environment's kill switch
    # (``_switch_applies``): an agent that could would pick the loosest environment.

    @property
    def assessed_blast_radius(self) -> dict:
        """The blast radius risk is assessed from: the declared one, in the token's
        environment when the token is bound (so that environment's risk floor applies
        whatever the call declares)."""
        radius = self.blast_radius if isinstance(self.blast_radius, dict) else {}
        if self.environment:
            return {**radius, "environment": self.environment}
        return radius

    @property
    def recorded_blast_radius(self) -> dict:
        """The blast radius as the action records it: as declared, with the token's
        environment filled in when the call declares none."""
        if self.declared_environment:
            return self.blast_radius
        return self.assessed_blast_radius


LOW_CONFIDENCE = "low_confidence"


def confidence_of(rationale: Any) -> float | None:
    """The confidence a call's ``rationale`` states (``{"confidence": 0.8}``), or None when
    it states none usable (missing, not a number, a bool, NaN or infinite; a rationale the
    retention sweep redacted). The write path and every replay of a stored action read it
    here, so a replay weighs the same number the gate did."""
    if not isinstance(rationale, dict):
        return None
    number = _number(rationale.get("confidence"))
    return None if number is None else float(number)


def _confidence_text(value: Any) -> str:
    number = _number(value)
    return repr(value) if number is None else format(number.normalize(), "f")


@dataclass(frozen=True)
class SwitchState:
    id: int
    scope: str  # global | agent | tool
    target: str
    is_drill: bool = False
    environment: str = ""  # only calls in this environment; "" = every environment


@dataclass(frozen=True)
class Counters:
    """Gate calls made in the last minute, before this one."""

    agent_last_minute: int = 0
    tool_last_minute: int = 0


@dataclass(frozen=True)
class GateDecision:
    outcome: str  # allowed | denied | shadowed | pending
    reason_code: str
    reasons: list[str]
    risk: str
    effect: str = ""
    required_approvals: int = 0
    needs_critical_approver: bool = False
    ttl_seconds: int | None = None
    switch_id: int | None = None


def risk_at_least(current: str, floor: str) -> str:
    return RISKS[max(RISKS.index(current), RISKS.index(floor))]


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _declared_sizes(radius: dict) -> dict[str, Decimal]:
    """The sizes a declared blast radius gives (amount as a number or {value, currency})."""
    amount = radius.get("amount")
    sizes = {
        "amount": _number(amount.get("value")) if isinstance(amount, dict) else _number(amount),
        "records_affected": _number(radius.get("records_affected")),
        "users_affected": _number(radius.get("users_affected")),
    }
    return {name: value for name, value in sizes.items() if value is not None}


def _thresholds(rules: dict) -> list[tuple[str, Decimal, Decimal]]:
    """(level, amount threshold, count threshold), highest level first."""
    return [
        (level, Decimal(str(rules[f"{level}_amount"])), Decimal(str(rules[f"{level}_count"])))
        for level in ("critical", "high")
    ]


def _size_level(
    sizes: dict[str, Decimal], thresholds: list[tuple[str, Decimal, Decimal]]
) -> tuple[str | None, list[str]]:
    """The level (``critical``, ``high`` or None) the largest of ``sizes`` reaches, and the
    dimensions that reach it."""
    if not sizes:
        return None, []
    for level, amount_at, count_at in thresholds:
        hits = [
            name
            for name, value in sizes.items()
            if value >= (amount_at if name == "amount" else count_at)
        ]
        if hits:
            return level, hits
    return None, []


def assess_risk(
    base_risk: str,
    blast_radius: dict,
    rules: dict | None = None,
    derived_radius: dict | None = None,
) -> tuple[str, list[str]]:
    """The tool's base risk, raised (never lowered) by the declared blast radius and by
    ``derived_radius``, the sizes the tool rule reads from the arguments
    (``derived_blast_radius``). The result is the higher of the two assessments: nothing
    either side holds (missing, odd or small values) can lower what the other reached."""
    rules = {**DEFAULT_RISK_RULES, **(rules or {})}
    risk = base_risk if base_risk in RISKS else "high"
    why: list[str] = []
    radius = blast_radius if isinstance(blast_radius, dict) else {}

    environment = str(radius.get("environment") or "").strip().lower()
    if environment in {e.lower() for e in rules["production_environments"]}:
        raised = risk_at_least(risk, rules["production_min"])
        if raised != risk:
            why.append(f"production environment raises risk to {raised}")
        risk = raised
    if radius.get("reversible") is False:
        raised = risk_at_least(risk, rules["irreversible_min"])
        if raised != risk:
            why.append(f"irreversible action raises risk to {raised}")
        risk = raised

    thresholds = _thresholds(rules)
    level, _ = _size_level(_declared_sizes(radius), thresholds)
    if level is not None:
        raised = risk_at_least(risk, level)
        if raised != risk:
            why.append(
                f"declared blast radius (amount or records/users affected) raises risk to {raised}"
            )
        risk = raised

    if not derived_radius or not isinstance(derived_radius, dict):
        return risk, why
    read = {name: _size_of(derived_radius.get(name)) for name in RADIUS_DIMENSIONS}
    # A size is how much moves: a negative amount still moves money, so its magnitude counts.
    sizes = {name: abs(value) for name, value in read.items() if value is not None}
    level, hits = _size_level(sizes, thresholds)
    if level is not None:
        raised = risk_at_least(risk, level)
        if raised != risk:
            shown = ", ".join(f"{name} {_shown(read[name])}" for name in hits)
            why.append(f"arguments ({shown}) raise risk to {raised}")
        risk = raised
    return risk, why


def _size_of(value: Any) -> Decimal | None:
    """A number read from the arguments for the blast radius: numbers and strings that
    parse as numbers (``"10000"``, ``" 1e4 "``), infinity included; NaN, bools and anything
    else are not sizes."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):  # ValueError: an int too long to print
        return None
    return None if number.is_nan() else number


def _shown(number: Decimal) -> str:
    if number.is_infinite():
        return "-infinity" if number < 0 else "infinity"
    return format(number, "f") if abs(number) < Decimal("1e21") else str(number)


def validate_radius_mapping(mapping: Any) -> list[str]:
    """Why ``mapping`` is not a usable ``blast_radius_from_arguments`` (empty when it is):
    an object whose keys are among ``RADIUS_DIMENSIONS`` and whose values are dotted paths
    into the arguments (as argument limits name fields) with no empty part."""
    if not isinstance(mapping, dict):
        return ["an object {dimension: argument path}"]
    problems = []
    for dimension, path in mapping.items():
        if dimension not in RADIUS_DIMENSIONS:
            problems.append(f"unknown dimension {dimension!r}; use {', '.join(RADIUS_DIMENSIONS)}")
        elif not isinstance(path, str) or not path.strip():
            problems.append(f"{dimension}: an argument path such as 'amount' or 'order.total'")
        elif len(path) > RADIUS_PATH_MAX:
            problems.append(f"{dimension}: a path of at most {RADIUS_PATH_MAX} characters")
        elif path != path.strip() or any(part == "" for part in path.split(".")):
            problems.append(f"{dimension}: {path!r} has an empty part or surrounding spaces")
    return problems


def radius_mapping_text(mapping: Any) -> str:
    """A mapping as people read it: ``amount ← arguments.amount; users_affected ←
    arguments.recipients.count`` (empty when there is none)."""
    if not isinstance(mapping, dict):
        return ""
    return "; ".join(
        f"{dimension} ← arguments.{mapping[dimension]}"
        for dimension in sorted(mapping, key=_dimension_order)
    )


def _dimension_order(dimension: Any) -> tuple[int, str]:
    known = RADIUS_DIMENSIONS.index(dimension) if dimension in RADIUS_DIMENSIONS else 99
    return known, str(dimension)


def _mapped_values(rule: dict | None, arguments: Any) -> list[tuple[str, str, Any]]:
    """(dimension, path, value) for every mapped argument that is present."""
    mapping = (rule or {}).get("blast_radius_from_arguments") or {}
    if not isinstance(mapping, dict) or not isinstance(arguments, dict):
        return []
    found = []
    for dimension in RADIUS_DIMENSIONS:
        path = mapping.get(dimension)
        if not isinstance(path, str) or not path:
            continue
        present, value = _lookup(arguments, path)
        if present:
            if isinstance(value, dict) and "value" in value:
                value = value["value"]  # the declared radius's {value, currency} shape
            found.append((dimension, path, value))
    return found


def derived_blast_radius(rule: dict, arguments: dict) -> dict:
    """The blast radius a tool rule reads from the call's arguments, through its
    ``blast_radius_from_arguments`` mapping: ``{"amount": 10000}`` for a rule mapping
    ``amount ← arguments.amount`` and arguments ``{"amount": "10000"}``. Pure.

    Only numbers count (strings that parse as numbers included; an object
    ``{"value": …}`` is read like the declared radius's amount); a mapped field that is
    missing or not a number (``"10000 USD"``, a list, a bool) derives nothing. That can
    never lower risk — the declared radius still applies and the higher one wins — and it
    is not raised to the top either: the gate cannot know what size "10000 USD" or a list
    stands for, and turning every malformed payload into a critical one would bury the
    reviewers in alarms a typo can raise. Shape is what argument limits are for: a
    numeric limit (``amount <= 10000``) denies a non-number outright (fail closed), and
    the seeded refund and payment rules pair their mapping with one. Values are returned
    as read (sign kept; infinity as ``float("inf")``); ``assess_risk`` weighs their
    magnitude."""
    derived: dict[str, Any] = {}
    for dimension, _path, value in _mapped_values(rule, arguments):
        number = _size_of(value)
        if number is None:
            continue
        exact = number.is_finite() and abs(number) < 10**18 and number == number.to_integral()
        # Beyond 10**18 a float is exact enough (every threshold is far below) and stays
        # JSON-sized; past float range it is infinity, still above every threshold.
        derived[dimension] = int(number) if exact else float(number)
    return derived


def unread_radius_fields(rule: dict | None, arguments: dict) -> list[str]:
    """Readable notes for mapped arguments present but not numbers (they derive nothing),
    so a reviewer sees that the argument was not weighed."""
    return [
        f"argument {path!r} is not a number: {dimension} not derived from it"
        for dimension, path, value in _mapped_values(rule, arguments)
        if _size_of(value) is None
    ]


def _lookup(arguments: dict, path: str) -> tuple[bool, Any]:
    current: Any = arguments
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        else:
            return False, None
    return True, current


def validate_limit(limit: Any) -> str | None:
    """Why ``limit`` is not a usable argument limit, or None when it is."""
    if not isinstance(limit, dict):
        return "an argument limit must be an object {field, op, value}"
    if not isinstance(limit.get("field"), str) or not limit["field"].strip():
        return "an argument limit needs a field name"
    op = limit.get("op")
    if op not in LIMIT_OPERATORS:
        return f"unknown operator {op!r}; use one of {', '.join(LIMIT_OPERATORS)}"
    value = limit.get("value")
    if op in {"<=", "<", ">=", ">", "max_length"} and _number(value) is None:
        return f"{op} needs a number"
    if op in {"in", "not_in"} and not isinstance(value, list):
        return f"{op} needs a list of values"
    if op == "matches":
        try:
            re.compile(str(value))
        except re.error as exc:
            return f"invalid pattern: {exc}"
    return None


def check_argument_limits(arguments: dict, limits: list[dict]) -> list[str]:
    """Every limit the arguments break, as readable reasons. A limited field that is
    missing, or of the wrong type, breaks its limit (fail closed)."""
    broken: list[str] = []
    for limit in limits or []:
        problem = validate_limit(limit)
        if problem:
            broken.append(f"unusable argument limit ({problem})")
            continue
        name, op, bound = limit["field"], limit["op"], limit["value"]
        present, value = _lookup(arguments, name)
        if not present:
            broken.append(f"argument {name!r} is required by its limit {op} {bound!r}")
            continue
        ok: bool
        if op in {"<=", "<", ">=", ">"}:
            number, limit_number = _number(value), _number(bound)
            if number is None:
                broken.append(f"argument {name!r} must be a number")
                continue
            ok = {
                "<=": number <= limit_number,
                "<": number < limit_number,
                ">=": number >= limit_number,
                ">": number > limit_number,
            }[op]
        elif op == "==":
            ok = _same(value, bound)
        elif op == "!=":
            ok = not _same(value, bound)
        elif op == "in":
            ok = any(_same(value, item) for item in bound)
        elif op == "not_in":
            ok = not any(_same(value, item) for item in bound)
        elif op == "max_length":
            ok = isinstance(value, str | list | dict) and len(value) <= int(_number(bound))
        else:  # matches
            ok = isinstance(value, str) and re.fullmatch(str(bound), value) is not None
        if not ok:
            broken.append(f"argument {name!r} must satisfy {op} {bound!r}")
    return broken


def _same(a: Any, b: Any) -> bool:
    """Equality for limits, where ``true`` is not ``1``."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _switch_applies(switch: SwitchState, slug: str, request: GateRequest) -> bool:
    tool, drill_probe = request.tool, request.drill_probe
    # A switch limited to an environment stops the calls bound to it, and every call of an
    # unbound token: Airlock cannot tell where those run, so it stops them (fail closed).
    if switch.environment and request.environment and switch.environment != request.environment:
        return False
    if switch.is_drill:
        return drill_probe and switch.scope == "agent" and switch.target == slug
    if switch.scope == "global":
        return True
    if switch.scope == "agent":
        return switch.target == slug
    return switch.scope == "tool" and switch.target == tool


@dataclass(frozen=True)
class _Call:
    """One call being decided, with what every step needs: its rule, effect and risk."""

    snapshot: dict
    tool: str
    arguments: dict
    rule: dict | None
    effect: str
    risk: str
    risk_reasons: list[str]

    def answer(self, outcome: str, code: str, reasons: list[str], **extra: Any) -> GateDecision:
        return GateDecision(outcome, code, reasons, self.risk, self.effect, **extra)

    def pending(self, code: str, reasons: list[str]) -> GateDecision:
        """Held for people: as many approvals as the approval matrix asks for the risk."""
        matrix = {**DEFAULT_APPROVAL_MATRIX, **(self.snapshot.get("approval_matrix") or {})}
        tier = self.snapshot["tier"]
        ttls = {**DEFAULT_PENDING_TTL_SECONDS, **(tier.get("pending_ttl_seconds") or {})}
        need = matrix[self.risk]
        return self.answer(
            "pending",
            code,
            reasons + self.risk_reasons,
            required_approvals=int(need["approvals"]),
            needs_critical_approver=bool(need["critical_approver"]),
            ttl_seconds=int(ttls[self.risk]),
        )


def _call(snapshot: dict, request: GateRequest) -> _Call:
    """The rule of the call's tool and the call's risk: base risk raised by the higher of
    the declared and the argument-derived blast radius."""
    tool = request.tool
    arguments = request.arguments if isinstance(request.arguments, dict) else {}
    if request.drill_probe and tool == PROBE_TOOL and not arguments:
        rule = PROBE_RULE
    else:
        rule = (snapshot.get("tools") or {}).get(tool)
    mapped = bool(rule and rule.get("blast_radius_from_arguments"))
    risk, risk_reasons = assess_risk(
        rule["base_risk"] if rule else "low",
        request.assessed_blast_radius,
        snapshot.get("risk_rules"),
        derived_blast_radius(rule, arguments) if mapped else None,
    )
    if mapped:
        risk_reasons = risk_reasons + unread_radius_fields(rule, arguments)
    return _Call(
        snapshot=snapshot,
        tool=tool,
        arguments=arguments,
        rule=rule,
        effect=rule["effect"] if rule else "",
        risk=risk,
        risk_reasons=risk_reasons,
    )


def _rule_step(call: _Call) -> GateDecision | None:
    """tool_forbidden → tool_unknown → argument_limit."""
    slug, tool, rule = call.snapshot["agent"]["slug"], call.tool, call.rule
    if rule and rule["rule"] == "forbidden":
        return call.answer("denied", "tool_forbidden", [f"tool {tool} is forbidden for {slug}"])
    if rule is None:
        return call.answer(
            "denied", "tool_unknown", [f"tool {tool} has no rule for {slug} (default deny)"]
        )
    broken = check_argument_limits(call.arguments, rule.get("argument_limits") or [])
    if broken:
        return call.answer("denied", "argument_limit", broken)
    return None


def _table_step(call: _Call) -> GateDecision:
    """The rule and tier table (the call has a rule)."""
    tool, rule = call.tool, call.rule
    assert rule is not None
    tier = call.snapshot["tier"]
    outcomes = tier["outcomes"]
    tier_name = tier["name"]
    risk, effect = call.risk, call.effect
    if rule["rule"] not in ("allowed", "requires_approval"):
        # A rule kind this engine does not know is not permission: fail closed.
        return call.answer(
            "denied", "tool_forbidden", [f"tool {tool} has an unrecognised rule {rule['rule']!r}"]
        )
    if rule["rule"] == "requires_approval":
        # Never auto-approved: the tier only decides whether a human sees it at all.
        write_outcome = outcomes["write"]
        if write_outcome == "shadow":
            return call.answer(
                "shadowed",
                "tier_shadow",
                [f"{tool} requires approval; tier {tier_name} only shadows"],
            )
        if write_outcome == "deny":
            return call.answer(
                "denied", "tier_denies", [f"{tool} requires approval; tier {tier_name} denies it"]
            )
        return call.pending("requires_approval", [f"{tool} always requires human approval"])

    outcome = outcomes.get(effect, "deny")
    if outcome == "allow":
        return call.answer("allowed", "allowed", [f"tier {tier_name} allows {effect} tools"])
    if outcome == "shadow":
        return call.answer("shadowed", "tier_shadow", [f"tier {tier_name} shadows {effect} tools"])
    if outcome == "pending":
        return call.pending(
            "tier_requires_approval", [f"tier {tier_name} requires approval for {effect} tools"]
        )
    if outcome == "auto":
        limit = tier.get("auto_approve_max_risk") or "low"
        if limit in RISKS and RISKS.index(risk) <= RISKS.index(limit):
            return call.answer(
                "allowed",
                "auto_approved",
                [
                    f"risk {risk} is within tier {tier_name}'s auto-approve limit ({limit})",
                    *call.risk_reasons,
                ],
            )
        return call.pending(
            "risk_above_auto_limit",
            [f"risk {risk} is above tier {tier_name}'s auto-approve limit ({limit})"],
        )
    return call.answer("denied", "tier_denies", [f"tier {tier_name} denies {effect} tools"])


def effective_snapshot(snapshot: dict, environment: str) -> dict:
    """The policy a call acting in ``environment`` is judged by: ``snapshot`` with that
    environment's override (``snapshot["environments"][environment]``) laid over it — its
    tier replaces the agent's tier, each tool rule it holds replaces the agent's rule for
    that tool (or rules a tool the agent has no rule for). ``snapshot`` itself when the
    call has no environment or the environment no override. Pure; never mutates."""
    name = str(environment or "").strip().lower()
    override = (snapshot.get("environments") or {}).get(name) if name else None
    if not override:
        return snapshot
    effective = dict(snapshot)
    if override.get("tier"):
        effective["tier"] = override["tier"]
    if override.get("tools"):
        effective["tools"] = {**(snapshot.get("tools") or {}), **override["tools"]}
    return effective


def evaluate(
    snapshot: dict,
    request: GateRequest,
    switches: list[SwitchState] | tuple[SwitchState, ...] = (),
    counters: Counters = Counters(),
) -> GateDecision:
    """Decide one tool call, under the policy of its token's environment
    (``effective_snapshot``). See the module docstring for the order."""
    snapshot = effective_snapshot(snapshot, request.environment)
    agent = snapshot["agent"]
    slug = agent["slug"]
    tool = request.tool
    call = _call(snapshot, request)

    for switch in switches:
        if _switch_applies(switch, slug, request):
            where = "everything" if switch.scope == "global" else f"{switch.scope} {switch.target}"
            if switch.environment:
                where += f" in {switch.environment}"
            return call.answer(
                "denied", "kill_switch", [f"kill switch engaged on {where}"], switch_id=switch.id
            )
    declared = request.declared_environment
    if request.environment and declared and declared != request.environment:
        return call.answer(
            "denied",
            "environment_mismatch",
            [
                f"this token acts in {request.environment}; the call declares "
                f"environment {declared[:60]!r}"
            ],
        )
    if not agent.get("active", True):
        return call.answer("denied", "agent_inactive", [f"agent {slug} is inactive"])
    refused = _rule_step(call)
    if refused is not None:
        return refused
    assert call.rule is not None
    agent_limit = agent.get("rate_limit_per_minute")
    if agent_limit is not None and counters.agent_last_minute >= agent_limit:
        return call.answer(
            "denied", "rate_limited", [f"{slug} is over {agent_limit} calls per minute"]
        )
    tool_limit = call.rule.get("rate_limit_per_minute")
    if tool_limit is not None and counters.tool_last_minute >= tool_limit:
        return call.answer(
            "denied", "rate_limited", [f"{tool} is over {tool_limit} calls per minute"]
        )
    return _confidence_step(call, _table_step(call), request.confidence)


def _confidence_step(call: _Call, decision: GateDecision, confidence: float | None) -> GateDecision:
    """Hold for a person a call the table would let run (``allowed`` / ``auto_approved``)
    when its rule's ``min_confidence`` is above the call's confidence (missing: 0). Every
    other answer stands. A minimum that is not a number (a damaged snapshot) holds too:
    the gate fails closed."""
    minimum = (call.rule or {}).get("min_confidence")
    if decision.outcome != "allowed" or minimum is None:
        return decision
    bar = _number(minimum)
    given = _number(confidence) if confidence is not None else None
    if bar is not None and (given if given is not None else Decimal(0)) >= bar:
        return decision
    shown_bar = _confidence_text(minimum)
    if given is None:
        why = (
            f"no confidence given (counts as 0); {call.tool} needs at least {shown_bar} "
            "to run without a person"
        )
    else:
        why = (
            f"confidence {_confidence_text(confidence)} is below {call.tool}'s minimum "
            f"{shown_bar} to run without a person"
        )
    return call.pending(LOW_CONFIDENCE, [why, decision.reasons[0]])


EDIT_REQUIRES_APPROVAL = "edit_requires_approval"


def assess_edit(
    snapshot: dict, tool: str, arguments: dict, blast_radius: dict, environment: str = ""
) -> GateDecision:
    """Re-assess a reviewer's edit of a pending action as the gate would assess a new call,
    under the policy of the action's ``environment`` (its token's; else the one its blast
    radius declares), from ``tool_forbidden`` onward: tool_forbidden → tool_unknown → argument_limit → the
    rule and tier table, with risk from the declared ``blast_radius`` and the edited
    ``arguments``. No kill switch, activity or rate-limit step: the action passed them,
    and an edit is not a new call. Pure, like ``evaluate``.

    Reading the answer:

    - ``outcome == "pending"``: the edit may stand; ``risk``, ``required_approvals``,
      ``needs_critical_approver`` and ``ttl_seconds`` are the bar for the edited payload
      (at least the approval matrix's for its risk). Where the table alone would have let
      the call run (``allowed`` / ``auto_approved``) the answer is still ``pending``, with
      ``reason_code == "edit_requires_approval"``: a person is deciding it anyway.
      Otherwise ``reason_code`` is the table's (``requires_approval``,
      ``tier_requires_approval``, ``risk_above_auto_limit``).
    - ``outcome == "denied"`` (``tool_forbidden``, ``tool_unknown``, ``argument_limit``,
      ``tier_denies``): the policy does not let this payload be approved; ``reasons`` say
      why. The caller refuses the edit.
    - A tier that now only shadows is not a denial: the action is already in front of
      people (a plain approval of it stands), so its edit is judged by the matrix for its
      risk, as ``pending`` with ``edit_requires_approval``.
    """
    request = GateRequest(tool, arguments, blast_radius or {}, environment=environment)
    call = _call(effective_snapshot(snapshot, request.environment), request)
    refused = _rule_step(call)
    if refused is not None:
        return refused
    decision = _table_step(call)
    if decision.outcome in ("allowed", "shadowed"):
        return call.pending(
            EDIT_REQUIRES_APPROVAL,
            [decision.reasons[0], "an edited payload is decided by people, never auto-approved"],
        )
    return decision
