"""Comparing two policies, as pure functions: what changed (``diff_policies``,
``changes_between``) and which way the change moves the agent's autonomy
(``classify_change``). No database, no clock.

A *piece* is the part of a policy that governance changes::

    {"tier": {"name", "rank", "outcomes", "auto_approve_max_risk", "pending_ttl_seconds"},
     "active": bool,
     "rate_limit_per_minute": int | None,        # None: no limit
     "tools": {tool: rule | None},               # None: no rule (default deny)
     "access": {right: {"user:<name>" | "group:<name>": True | None}},  # governance.access
     "environments": {environment: {"tier": tier | None, "tools": {tool: rule | None}}}}

``environments`` holds the per-environment overrides: a tier or tool rule there replaces
the agent's own in that environment (``rollout.policy.effective_snapshot``); None clears the
override, so the agent's own applies again. Overrides are compared by what they change in
their environment: the *effective* tier and rule before and after, so an override stricter
than what the environment gets now tightens and a looser one (or clearing a stricter one)
loosens. The "before" of a change (``touched_piece``) keeps the agent's own values it was
judged against under each environment's ``base`` key, so a stored change request stays
readable on its own.

Every key is optional: a piece says nothing about what it leaves out, so a change request
stores only the parts it touches. A full policy snapshot (``rollout.snapshots``) is
turned into a piece by ``piece_of_snapshot``; the functions here accept either.

Direction, per DESIGN "Asymmetric governance": a change *tightens* when it can only
reduce what the agent may do without a human (demote, deactivate, forbid or remove a
tool, allowed → requires_approval, add or tighten an argument limit, lower a rate limit,
raise a base risk, read a further blast-radius dimension from the arguments, add or raise
a tool's minimum confidence, move a tool's effect toward ``write``, remove someone's right
on the agent); anything else *loosens* — lowering or removing a minimum confidence too —
granting a right on the agent included, since it gives a person more power over it, and
dropping a dimension read from the arguments or pointing it at another argument (which may
hold a smaller number). A change with parts going both ways is a loosening. When in doubt
(two limits whose relation cannot be proven) the answer is loosening, which only ever asks
for one more human.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from rollout.policy import RADIUS_DIMENSIONS, RISKS, radius_mapping_text
from rollout.standing import bound_changes, bounds_text, is_allowed

TIGHTENING = "tightening"
LOOSENING = "loosening"
NO_CHANGE = "no_change"

# How much each value lets the agent do on its own; higher is more autonomy.
RULE_AUTONOMY = {"forbidden": 0, "requires_approval": 1, "allowed": 2}
# Every tier of the default ladder treats read at least as well as draft, draft at least
# as well as write; a tool moving toward ``write`` can only lose autonomy.
EFFECT_AUTONOMY = {"write": 0, "draft": 1, "read": 2}
OUTCOME_AUTONOMY = {"deny": 0, "shadow": 1, "pending": 2, "auto": 3, "allow": 4}

PIECE_KEYS = ("tier", "active", "rate_limit_per_minute", "tools", "access", "environments")
RULE_FIELDS = (
    "effect",
    "rule",
    "base_risk",
    "argument_limits",
    "blast_radius_from_arguments",
    "rate_limit_per_minute",
    "min_confidence",
    "standing",
)
# What a rule field means when a stored rule (a policy version or change request written
# before the field existed) does not have it.
RULE_FIELD_DEFAULTS: dict[str, Any] = {
    "blast_radius_from_arguments": {},
    "min_confidence": None,
    "standing": {},
}
UPPER_BOUNDS = {"<=", "<"}
LOWER_BOUNDS = {">=", ">"}


@dataclass(frozen=True)
class Change:
    """One elementary difference between two pieces, with the way it moves autonomy."""

    path: str  # "tier", "active", "rate_limit_per_minute", "tools.<tool>[.<field>]",
    # "access.<right>.<holder>"
    direction: str  # tightening | loosening
    text: str  # readable, e.g. "send_email: rule requires_approval → allowed"

    def as_dict(self) -> dict:
        return asdict(self)


def piece_of_snapshot(snapshot: dict) -> dict:
    """The governable part of a full policy snapshot, plus the settings governance does not
    change here (risk rules, approval matrix), kept so that version diffs show them."""
    agent = snapshot.get("agent") or {}
    piece: dict[str, Any] = {
        "tier": snapshot.get("tier") or {},
        "active": agent.get("active", True),
        "rate_limit_per_minute": agent.get("rate_limit_per_minute"),
        "tools": dict(snapshot.get("tools") or {}),
    }
    if "access" in snapshot:
        piece["access"] = {right: dict(holders) for right, holders in snapshot["access"].items()}
    piece["environments"] = merge_environments(snapshot.get("environments") or {}, {})
    for extra in ("risk_rules", "approval_matrix"):
        if extra in snapshot:
            piece[extra] = snapshot[extra]
    return piece


def as_piece(policy: dict) -> dict:
    """``policy`` as a piece, whether it is a full snapshot or already a piece."""
    if "agent" in policy:
        return piece_of_snapshot(policy)
    return policy


def merge_environments(current: dict, change: dict) -> dict:
    """Per-environment overrides ``current`` with ``change`` laid over them: a tier or a
    tool rule set to None is cleared, an environment left with nothing is dropped. Reads
    only ``tier`` and ``tools`` (a change's ``before`` also holds ``base``). Pure."""
    result: dict[str, dict] = {}
    for environment, entry in (current or {}).items():
        kept = {key: entry[key] for key in ("tier", "tools") if entry.get(key)}
        if "tools" in kept:
            kept["tools"] = dict(kept["tools"])
        if kept:
            result[environment] = kept
    for environment, entry in (change or {}).items():
        target = result.setdefault(environment, {})
        if "tier" in entry:
            if entry["tier"] is None:
                target.pop("tier", None)
            else:
                target["tier"] = entry["tier"]
        for tool, rule in (entry.get("tools") or {}).items():
            tools = target.setdefault("tools", {})
            if rule is None:
                tools.pop(tool, None)
            else:
                tools[tool] = rule
        if "tools" in target and not target["tools"]:
            del target["tools"]
        if not target:
            del result[environment]
    return result


def apply_piece(base: dict, change: dict) -> dict:
    """``base`` with the parts ``change`` sets replaced (a tool or an access holder set to
    None is removed; an environment's tier or tool set to None is cleared)."""
    base = as_piece(base)
    result = {
        key: value for key, value in base.items() if key not in ("tools", "access", "environments")
    }
    tools = dict(base.get("tools") or {})
    access = {right: dict(holders) for right, holders in (base.get("access") or {}).items()}
    for key, value in change.items():
        if key == "tools":
            for tool, rule in value.items():
                if rule is None:
                    tools.pop(tool, None)
                else:
                    tools[tool] = rule
        elif key == "access":
            for right, holders in value.items():
                for holder, granted in holders.items():
                    if granted:
                        access.setdefault(right, {})[holder] = True
                    else:
                        access.setdefault(right, {}).pop(holder, None)
        elif key != "environments":
            result[key] = value
    if "environments" in base or "environments" in change:
        result["environments"] = merge_environments(
            base.get("environments") or {}, change.get("environments") or {}
        )
    if "access" in base or "access" in change:
        result["access"] = access
    if "tools" in base or "tools" in change:
        result["tools"] = tools
    return result


def touched_piece(full: dict, change: dict) -> dict:
    """The values ``full`` holds for exactly the parts ``change`` touches (a tool without a
    rule as None): the "before" of a change request."""
    full = as_piece(full)
    before: dict[str, Any] = {}
    for key in change:
        if key == "tools":
            before["tools"] = {tool: full.get("tools", {}).get(tool) for tool in change["tools"]}
        elif key == "access":
            held = full.get("access") or {}
            before["access"] = {
                right: {
                    holder: (True if (held.get(right) or {}).get(holder) else None)
                    for holder in holders
                }
                for right, holders in change["access"].items()
            }
        elif key == "environments":
            before["environments"] = {
                environment: _touched_environment(full, environment, entry)
                for environment, entry in change["environments"].items()
            }
        else:
            before[key] = full.get(key)
    return before


def _touched_environment(full: dict, environment: str, entry: dict) -> dict:
    """What ``full`` holds for the parts of one environment's override ``entry`` touches,
    with the agent's own values for them under ``base`` (from ``full``'s ``base`` when
    ``full`` is itself a change's before)."""
    current = (full.get("environments") or {}).get(environment) or {}
    stored_base = current.get("base")
    base_tier = stored_base.get("tier") if stored_base is not None else full.get("tier")
    base_tools = (stored_base if stored_base is not None else full).get("tools") or {}
    part: dict[str, Any] = {}
    base: dict[str, Any] = {}
    if "tier" in entry:
        part["tier"] = current.get("tier")
        base["tier"] = base_tier
    if "tools" in entry:
        part["tools"] = {tool: (current.get("tools") or {}).get(tool) for tool in entry["tools"]}
        base["tools"] = {tool: base_tools.get(tool) for tool in entry["tools"]}
    part["base"] = base
    return part


# --- comparing ------------------------------------------------------------------------------


def same_value(a: Any, b: Any) -> bool:
    """Equal as JSON (so 1 and True, or 1 and 1.0, are different values)."""
    return _json(a) == _json(b)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _number(value: Any) -> Decimal | None:
    """The number the gate would read from ``value`` (bools and non-finite values are not
    numbers), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _rate(value: Any) -> float:
    return math.inf if value is None else float(value)


def _rate_text(value: Any) -> str:
    return "no limit" if value is None else f"{value}/min"


# How a limit's operator reads to a person ("amount ≤ 10,000").
OPERATOR_TEXT = {
    "<=": "≤",
    "<": "<",
    ">=": "≥",
    ">": ">",
    "==": "=",
    "!=": "≠",
    "in": "in",
    "not_in": "not in",
    "max_length": "length ≤",
    "matches": "matches",
}


def value_text(value: Any) -> str:
    """A limit's value as a person reads it: numbers with thousands separators
    (``10,000``, ``12,500.5``), text quoted, lists as ``"a", "b"``."""
    if isinstance(value, bool):
        return _json(value)
    if isinstance(value, int | float | Decimal):
        number = _number(value)
        if number is None:
            return _json(value)
        whole = number == number.to_integral_value()
        return f"{int(number):,}" if whole else f"{number:,f}"
    if isinstance(value, list):
        return ", ".join(value_text(item) for item in value)
    return _json(value)


def _bound_text(limit: dict) -> str:
    """``≤ 10,000``: the operator and value of a limit, without its field."""
    op = limit.get("op")
    return f"{OPERATOR_TEXT.get(op, op)} {value_text(limit.get('value'))}"


def _limit_text(limit: Any) -> str:
    if not isinstance(limit, dict):
        return _json(limit)
    return f"{limit.get('field')} {_bound_text(limit)}"


def _same_bound(a: Any, b: Any) -> bool:
    """Two different limits on the same field with the same operator: one replaces the
    other (``amount ≤ 10,000 → ≤ 20,000``)."""
    return (
        isinstance(a, dict)
        and isinstance(b, dict)
        and a.get("field") == b.get("field")
        and a.get("op") == b.get("op")
        and not same_value(a, b)
    )


def limit_implies(stricter: Any, looser: Any) -> bool:
    """True only when every argument that passes ``stricter`` provably passes ``looser``
    under the gate's own checks (``rollout.policy.check_argument_limits``). False when
    that cannot be shown, which makes a classification err toward loosening."""
    if same_value(stricter, looser):
        return True
    if not (isinstance(stricter, dict) and isinstance(looser, dict)):
        return False
    if stricter.get("field") != looser.get("field"):
        return False
    a_op, a_value = stricter.get("op"), stricter.get("value")
    b_op, b_value = looser.get("op"), looser.get("value")
    if a_op == "in" and a_value == []:
        return True  # nothing passes
    a_number, b_number = _number(a_value), _number(b_value)
    if b_op in UPPER_BOUNDS | LOWER_BOUNDS:
        same_side = UPPER_BOUNDS if b_op in UPPER_BOUNDS else LOWER_BOUNDS
        if a_op not in same_side or a_number is None or b_number is None:
            return False
        if a_number == b_number:
            return a_op == b_op or a_op in {"<", ">"}
        return a_number < b_number if b_op in UPPER_BOUNDS else a_number > b_number
    if b_op == "max_length":
        return (
            a_op == "max_length"
            and a_number is not None
            and b_number is not None
            and a_number <= b_number
        )
    a_list = a_value if isinstance(a_value, list) else None
    b_list = b_value if isinstance(b_value, list) else None
    # Membership uses the gate's own equality (``true`` is not ``1``), which is transitive,
    # so "x equals v and v equals w" proves "x equals w".
    if b_op == "in" and b_list is not None:
        if a_op == "in" and a_list is not None:
            return all(_member(value, b_list) for value in a_list)
        return a_op == "==" and _member(a_value, b_list)
    if b_op == "not_in" and b_list is not None:
        if a_op == "not_in" and a_list is not None:
            return all(_member(value, a_list) for value in b_list)
        if a_op == "in" and a_list is not None:
            return not any(_member(value, b_list) for value in a_list)
        return a_op == "==" and not _member(a_value, b_list)
    if b_op == "==":
        if a_op == "in" and a_list is not None:
            return all(_equal(value, b_value) for value in a_list)
        return False
    if b_op == "!=":
        if a_op == "not_in" and a_list is not None:
            return _member(b_value, a_list)
        if a_op == "in" and a_list is not None:
            return not _member(b_value, a_list)
        return a_op == "==" and not _equal(a_value, b_value)
    return False


def _equal(a: Any, b: Any) -> bool:
    """The gate's equality for argument limits: Python's, except that a bool only equals a
    bool (``rollout.policy.check_argument_limits``)."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _member(value: Any, values: list) -> bool:
    return any(_equal(value, item) for item in values)


def _limit_changes(tool: str, before: list, after: list) -> list[Change]:
    """A limit no new limit implies was dropped or loosened; a new limit no old one implies
    was added or tightened. When such a limit has a counterpart on the same field with the
    same operator, the change reads as one move (``limit amount ≤ 10,000 → ≤ 20,000``)."""
    path = f"tools.{tool}.argument_limits"
    changes: list[Change] = []
    described: set[int] = set()  # counterparts already named in a move
    for old in before:
        if not any(limit_implies(new, old) for new in after):
            partner = next((new for new in after if _same_bound(old, new)), None)
            if partner is None:
                changes.append(
                    Change(path, LOOSENING, f"{tool}: drop or loosen limit {_limit_text(old)}")
                )
                continue
            described.add(id(partner))
            changes.append(Change(path, LOOSENING, _move_text(tool, old, partner)))
    for new in after:
        if id(new) in described or any(limit_implies(old, new) for old in before):
            continue
        partner = next((old for old in before if _same_bound(old, new)), None)
        if partner is None:
            text = f"{tool}: add or tighten limit {_limit_text(new)}"
        else:
            text = _move_text(tool, partner, new)
        changes.append(Change(path, TIGHTENING, text))
    return changes


def _move_text(tool: str, old: dict, new: dict) -> str:
    return f"{tool}: limit {old.get('field')} {_bound_text(old)} → {_bound_text(new)}"


def _ranked(path: str, label: str, before: Any, after: Any, scale: dict) -> list[Change]:
    if same_value(before, after):
        return []
    old, new = scale.get(before, -1), scale.get(after, math.inf)
    direction = TIGHTENING if new < old else LOOSENING
    return [Change(path, direction, f"{label} {before} → {after}")]


def with_rule_defaults(rule: Any) -> Any:
    """``rule`` with the fields it predates filled in, so that an old stored rule compares
    equal to the same rule today (None, no rule, stays None)."""
    if not isinstance(rule, dict):
        return rule
    missing = {k: v for k, v in RULE_FIELD_DEFAULTS.items() if k not in rule or rule[k] is None}
    return {**rule, **missing} if missing else rule


def _radius_changes(tool: str, before: Any, after: Any) -> list[Change]:
    """Risk read from the arguments: a new dimension only ever raises risk (tightening);
    dropping one, or pointing it at another argument (which may hold a smaller number), may
    lower it (loosening)."""
    old = before if isinstance(before, dict) else {}
    new = after if isinstance(after, dict) else {}
    changes = []
    order = [*RADIUS_DIMENSIONS, *sorted((set(old) | set(new)) - set(RADIUS_DIMENSIONS))]
    for dimension in order:
        was, now = old.get(dimension), new.get(dimension)
        if same_value(was, now):
            continue
        path = f"tools.{tool}.blast_radius_from_arguments.{dimension}"
        if was is None:
            text = f"{tool}: risk from arguments, add {radius_mapping_text({dimension: now})}"
            changes.append(Change(path, TIGHTENING, text))
        elif now is None:
            text = f"{tool}: risk from arguments, drop {radius_mapping_text({dimension: was})}"
            changes.append(Change(path, LOOSENING, text))
        else:
            text = f"{tool}: risk from arguments, {dimension} ← arguments.{was} → arguments.{now}"
            changes.append(Change(path, LOOSENING, text))
    return changes


def _confidence_text(value: Any) -> str:
    number = _number(value)
    return _json(value) if number is None else format(number.normalize(), "f")


def _confidence_changes(tool: str, before: Any, after: Any) -> list[Change]:
    """A minimum confidence holds low-confidence calls for a person: adding or raising one
    tightens; lowering or removing one loosens (as does anything unreadable: when in
    doubt, one more human)."""
    if same_value(before, after):
        return []
    path = f"tools.{tool}.min_confidence"
    old, new = _number(before), _number(after)
    if before is None and new is not None:
        text = f"{tool}: add minimum confidence {_confidence_text(after)}"
        return [Change(path, TIGHTENING, text)]
    if after is None:
        text = f"{tool}: remove minimum confidence {_confidence_text(before)}"
        return [Change(path, LOOSENING, text)]
    shown = f"{_confidence_text(before)} → {_confidence_text(after)}"
    if old is not None and new is not None and new > old:
        return [Change(path, TIGHTENING, f"{tool}: raise minimum confidence {shown}")]
    if old is not None and new is not None and new == old:
        return []  # the same number written differently (0.5 and 0.50)
    return [Change(path, LOOSENING, f"{tool}: lower minimum confidence {shown}")]


def _rule_description(rule: dict) -> str:
    parts = [rule.get("effect", "?"), rule.get("rule", "?"), f"base risk {rule.get('base_risk')}"]
    limits = rule.get("argument_limits") or []
    if limits:
        parts.append("limits " + "; ".join(_limit_text(limit) for limit in limits))
    mapping = radius_mapping_text(rule.get("blast_radius_from_arguments"))
    if mapping:
        parts.append(f"risk from {mapping}")
    if rule.get("rate_limit_per_minute") is not None:
        parts.append(_rate_text(rule["rate_limit_per_minute"]))
    if rule.get("min_confidence") is not None:
        parts.append(f"minimum confidence {_confidence_text(rule['min_confidence'])}")
    if is_allowed(rule.get("standing")):
        parts.append(f"standing approvals {bounds_text(rule['standing'])}")
    return ", ".join(parts)


def _tool_changes(tool: str, before: dict | None, after: dict | None) -> list[Change]:
    path = f"tools.{tool}"
    if before is None and after is None:
        return []
    before, after = with_rule_defaults(before), with_rule_defaults(after)
    if before is None:
        assert after is not None
        if after.get("rule") == "forbidden":
            return [Change(path, TIGHTENING, f"forbid {tool} ({_rule_description(after)})")]
        return [Change(path, LOOSENING, f"add {tool} ({_rule_description(after)})")]
    if after is None:
        return [Change(path, TIGHTENING, f"remove {tool} (default deny)")]
    changes = _ranked(
        f"{path}.rule", f"{tool}: rule", before.get("rule"), after.get("rule"), RULE_AUTONOMY
    )
    changes += _ranked(
        f"{path}.effect",
        f"{tool}: effect",
        before.get("effect"),
        after.get("effect"),
        EFFECT_AUTONOMY,
    )
    # A higher base risk means more approvals and less auto-approval: tighter.
    risk_autonomy = {risk: len(RISKS) - index for index, risk in enumerate(RISKS)}
    changes += _ranked(
        f"{path}.base_risk",
        f"{tool}: base risk",
        before.get("base_risk"),
        after.get("base_risk"),
        risk_autonomy,
    )
    changes += _limit_changes(
        tool, list(before.get("argument_limits") or []), list(after.get("argument_limits") or [])
    )
    changes += _radius_changes(
        tool, before.get("blast_radius_from_arguments"), after.get("blast_radius_from_arguments")
    )
    old_rate, new_rate = before.get("rate_limit_per_minute"), after.get("rate_limit_per_minute")
    if not same_value(old_rate, new_rate):
        direction = TIGHTENING if _rate(new_rate) < _rate(old_rate) else LOOSENING
        verb = "lower" if direction == TIGHTENING else "raise"
        changes.append(
            Change(
                f"{path}.rate_limit_per_minute",
                direction,
                f"{tool}: {verb} rate limit {_rate_text(old_rate)} → {_rate_text(new_rate)}",
            )
        )
    changes += _confidence_changes(tool, before.get("min_confidence"), after.get("min_confidence"))
    # Standing approvals let later calls through without a person: on or wider loosens.
    for field, loosens, text in bound_changes(before.get("standing"), after.get("standing")):
        direction = LOOSENING if loosens else TIGHTENING
        changes.append(Change(f"{path}.{field}", direction, f"{tool}: {text}"))
    known = set(RULE_FIELDS)
    for field in sorted((set(before) | set(after)) - known):
        if not same_value(before.get(field), after.get(field)):
            changes.append(
                Change(
                    f"{path}.{field}",
                    LOOSENING,
                    f"{tool}: {field} {_json(before.get(field))} → {_json(after.get(field))}",
                )
            )
    return changes


def _tier_changes(before: dict, after: dict) -> list[Change]:
    if same_value(before, after):
        return []
    old_name, new_name = before.get("name"), after.get("name")
    if old_name != new_name:
        old_rank, new_rank = before.get("rank"), after.get("rank")
        if old_rank is not None and new_rank is not None and old_rank != new_rank:
            if new_rank < old_rank:
                return [Change("tier", TIGHTENING, f"demote {old_name} → {new_name}")]
            return [Change("tier", LOOSENING, f"promote {old_name} → {new_name}")]
    # Same tier whose definition was edited (or ranks unknown): compare what it grants.
    changes: list[Change] = []
    old_outcomes, new_outcomes = before.get("outcomes") or {}, after.get("outcomes") or {}
    for effect in sorted(set(old_outcomes) | set(new_outcomes)):
        changes += _ranked(
            f"tier.outcomes.{effect}",
            f"tier {new_name}: {effect} tools",
            old_outcomes.get(effect),
            new_outcomes.get(effect),
            OUTCOME_AUTONOMY,
        )
    risk_scale = {"": -1, **{risk: index for index, risk in enumerate(RISKS)}}
    changes += _ranked(
        "tier.auto_approve_max_risk",
        f"tier {new_name}: auto-approve limit",
        before.get("auto_approve_max_risk") or "",
        after.get("auto_approve_max_risk") or "",
        risk_scale,
    )
    if old_name != new_name:
        changes.insert(0, Change("tier", LOOSENING, f"tier {old_name} → {new_name}"))
    elif not changes:
        # Only pending timeouts changed: longer waits give humans more time, not the agent
        # more power, but the approver should still see it.
        changes.append(Change("tier.pending_ttl_seconds", LOOSENING, "tier: pending timeouts"))
    return changes


def changes_between(before: dict, after: dict) -> list[Change]:
    """Every elementary difference from ``before`` to ``after`` (pieces or snapshots), in
    a stable order. Only the parts both sides speak about are compared."""
    before, after = as_piece(before), as_piece(after)
    changes: list[Change] = []
    if "tier" in before and "tier" in after:
        changes += _tier_changes(before["tier"] or {}, after["tier"] or {})
    if "active" in before and "active" in after and before["active"] != after["active"]:
        if after["active"]:
            changes.append(Change("active", LOOSENING, "activate the agent"))
        else:
            changes.append(Change("active", TIGHTENING, "deactivate the agent"))
    if "rate_limit_per_minute" in before and "rate_limit_per_minute" in after:
        old, new = before["rate_limit_per_minute"], after["rate_limit_per_minute"]
        if not same_value(old, new):
            direction = TIGHTENING if _rate(new) < _rate(old) else LOOSENING
            verb = "lower" if direction == TIGHTENING else "raise"
            changes.append(
                Change(
                    "rate_limit_per_minute",
                    direction,
                    f"{verb} the agent's rate limit {_rate_text(old)} → {_rate_text(new)}",
                )
            )
    if "tools" in before and "tools" in after:
        old_tools, new_tools = before["tools"] or {}, after["tools"] or {}
        for tool in sorted(set(old_tools) | set(new_tools)):
            changes += _tool_changes(tool, old_tools.get(tool), new_tools.get(tool))
    if "access" in before and "access" in after:
        changes += _access_changes(before["access"] or {}, after["access"] or {})
    if "environments" in before and "environments" in after:
        changes += _environment_changes(before, after)
    for extra in ("risk_rules", "approval_matrix"):
        if extra in before and extra in after and not same_value(before[extra], after[extra]):
            changes.append(Change(extra, LOOSENING, f"{extra.replace('_', ' ')} changed"))
    return changes


def _environment_changes(before: dict, after: dict) -> list[Change]:
    """What each environment's overrides change in that environment: its effective tier
    and tool rules (the override where there is one, else the agent's own) before and
    after, compared as the agent's own are. Only tiers and tools that have an override on
    either side are compared here: the agent's own changes are compared once, above."""
    old_envs, new_envs = before.get("environments") or {}, after.get("environments") or {}
    changes: list[Change] = []
    for environment in sorted(set(old_envs) | set(new_envs)):
        old, new = old_envs.get(environment) or {}, new_envs.get(environment) or {}
        stored_base = old.get("base")
        if stored_base is not None:
            # A change's before: the agent's own values it was judged against, and what the
            # same change does to them (a part it does not touch stays as it was).
            old_tier = stored_base.get("tier")
            new_tier = after.get("tier", old_tier)
            old_tools = stored_base.get("tools") or {}
            changed_tools = after.get("tools") or {}
            new_tools = {tool: changed_tools.get(tool, rule) for tool, rule in old_tools.items()}
        else:  # two whole policies
            old_tier, new_tier = before.get("tier"), after.get("tier")
            old_tools, new_tools = before.get("tools") or {}, after.get("tools") or {}
        found: list[Change] = []
        if old.get("tier") is not None or new.get("tier") is not None:
            found += _tier_changes(
                old.get("tier") or old_tier or {}, new.get("tier") or new_tier or {}
            )
        old_overrides, new_overrides = old.get("tools") or {}, new.get("tools") or {}
        for tool in sorted(set(old_overrides) | set(new_overrides)):
            was, now = old_overrides.get(tool), new_overrides.get(tool)
            if was is None and now is None:
                continue
            found += _tool_changes(
                tool,
                was if was is not None else old_tools.get(tool),
                now if now is not None else new_tools.get(tool),
            )
        changes += [
            Change(
                f"environments.{environment}.{change.path}",
                change.direction,
                f"{environment}: {change.text}",
            )
            for change in found
        ]
    return changes


def access_moves(before: dict, after: dict) -> list[tuple[str, str, bool]]:
    """(right, holder, granted) for every holder whose right differs between two access
    sections, in a stable order."""
    moves = []
    for right in sorted(set(before) | set(after)):
        old, new = before.get(right) or {}, after.get(right) or {}
        for holder in sorted(set(old) | set(new)):
            had, has = bool(old.get(holder)), bool(new.get(holder))
            if had != has:
                moves.append((right, holder, has))
    return moves


def _access_changes(before: dict, after: dict) -> list[Change]:
    # A grant gives someone more power over the agent: never applied without a second owner.
    return [
        Change(
            f"access.{right}.{holder}",
            LOOSENING if granted else TIGHTENING,
            f"grant {right} to {holder}" if granted else f"remove {right} from {holder}",
        )
        for right, holder, granted in access_moves(before, after)
    ]


def classify(changes: list[Change]) -> str:
    if not changes:
        return NO_CHANGE
    if all(change.direction == TIGHTENING for change in changes):
        return TIGHTENING
    return LOOSENING


def classify_change(before: dict, after: dict) -> str:
    """``"tightening"`` when going from ``before`` to ``after`` can only reduce the agent's
    autonomy (apply at once), ``"loosening"`` when any part of it may increase it (needs a
    second governance owner), ``"no_change"`` when nothing differs. Pure."""
    return classify(changes_between(before, after))


# --- readable diffs -------------------------------------------------------------------------


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key in sorted(value):
            flat.update(_flat(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _field_diff(before: Any, after: Any) -> dict[str, dict[str, Any]]:
    old, new = _flat(before or {}), _flat(after or {})
    return {
        key: {"before": old.get(key), "after": new.get(key)}
        for key in sorted(set(old) | set(new))
        if not same_value(old.get(key), new.get(key))
    }


def diff_policies(before: dict, after: dict) -> dict:
    """A structured, readable diff between two policies (pieces or snapshots)::

    {"tier": {"before": "supervised", "after": "autonomous", "fields": {...}} | None,
     "agent": {"active": {"before": True, "after": False}, ...},
     "tools": {"added": {tool: rule}, "removed": {tool: rule},
               "changed": {tool: {field: {"before": …, "after": …}}}},
     "other": {"risk_rules.high_amount": {"before": …, "after": …}},
     "access": {"granted": [{"right", "holder"}], "removed": [{"right", "holder"}]},
     "environments": {environment: {"tier": {"before": name, "after": name} | None,
                                    "tools": {tool: {"before": rule, "after": rule}}}},
     "changes": [{"path", "direction", "text"}, …],
     "classification": "tightening" | "loosening" | "no_change",
     "empty": bool}
    """
    before, after = as_piece(before), as_piece(after)
    diff: dict[str, Any] = {
        "tier": None,
        "agent": {},
        "tools": {"added": {}, "removed": {}, "changed": {}},
        "other": {},
        "access": {"granted": [], "removed": []},
        "environments": {},
    }
    if "environments" in before and "environments" in after:
        diff["environments"] = _environment_field_diff(
            before["environments"] or {}, after["environments"] or {}
        )
    if "access" in before and "access" in after:
        for right, holder, granted in access_moves(before["access"] or {}, after["access"] or {}):
            side = "granted" if granted else "removed"
            diff["access"][side].append({"right": right, "holder": holder})
    if "tier" in before and "tier" in after and not same_value(before["tier"], after["tier"]):
        diff["tier"] = {
            "before": (before["tier"] or {}).get("name"),
            "after": (after["tier"] or {}).get("name"),
            "fields": _field_diff(before["tier"], after["tier"]),
        }
    for key in ("active", "rate_limit_per_minute"):
        if key in before and key in after and not same_value(before[key], after[key]):
            diff["agent"][key] = {"before": before[key], "after": after[key]}
    if "tools" in before and "tools" in after:
        old_tools, new_tools = before["tools"] or {}, after["tools"] or {}
        for tool in sorted(set(old_tools) | set(new_tools)):
            old = with_rule_defaults(old_tools.get(tool))
            new = with_rule_defaults(new_tools.get(tool))
            if old is None and new is not None:
                diff["tools"]["added"][tool] = new
            elif new is None and old is not None:
                diff["tools"]["removed"][tool] = old
            elif old is not None and new is not None and not same_value(old, new):
                diff["tools"]["changed"][tool] = {
                    field: {"before": old.get(field), "after": new.get(field)}
                    for field in sorted(set(old) | set(new))
                    if not same_value(old.get(field), new.get(field))
                }
    for extra in ("risk_rules", "approval_matrix"):
        if extra in before and extra in after:
            for key, values in _field_diff(before[extra], after[extra]).items():
                diff["other"][f"{extra}.{key}"] = values
    changes = changes_between(before, after)
    diff["changes"] = [change.as_dict() for change in changes]
    diff["classification"] = classify(changes)
    diff["empty"] = not (
        diff["tier"]
        or diff["agent"]
        or any(diff["tools"].values())
        or diff["other"]
        or any(diff["access"].values())
        or diff["environments"]
        or diff["changes"]
    )
    return diff


def _environment_field_diff(before: dict, after: dict) -> dict:
    """Per environment, the override's tier (by name) and tool rules that differ (None:
    no override on that side)."""
    diff: dict[str, dict] = {}
    for environment in sorted(set(before) | set(after)):
        old, new = before.get(environment) or {}, after.get(environment) or {}
        old_tier, new_tier = (
            (old.get("tier") or {}).get("name"),
            (new.get("tier") or {}).get("name"),
        )
        entry: dict[str, Any] = {"tier": None, "tools": {}}
        if not same_value(old.get("tier"), new.get("tier")):
            entry["tier"] = {"before": old_tier, "after": new_tier}
        old_tools, new_tools = old.get("tools") or {}, new.get("tools") or {}
        for tool in sorted(set(old_tools) | set(new_tools)):
            was = with_rule_defaults(old_tools.get(tool))
            now = with_rule_defaults(new_tools.get(tool))
            if not same_value(was, now):
                entry["tools"][tool] = {"before": was, "after": now}
        if entry["tier"] or entry["tools"]:
            diff[environment] = entry
    return diff
