"""Standing approvals as policy, in pure functions: the bounds a governance owner sets per
tool (``normalize_bounds``), which way a change of them moves autonomy
(``bound_changes``), whether terms a reviewer asks for fit them (``terms_problems``), and
whether a later call matches an approved one (``match_problem``). No database, no clock.

A tool rule's ``standing`` is ``{}`` (the default: no standing approvals) or::

    {"allowed": True,
     "max_minutes": 60,        # the longest a standing approval may last (1..1440)
     "max_uses": 10,           # the most calls it may answer (1..1000)
     "max_risk": "medium",     # the highest assessed risk it may cover (never critical)
     "at_most": ["amount"]}    # top-level argument fields that may be ≤ the approved value;
                               # every other field must be equal

Turning standing approvals on, or widening any bound, loosens (a change request and a
second governance owner); narrowing or turning them off tightens (applies at once)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from rollout.policy import LOW_CONFIDENCE

RISKS = ("low", "medium", "high", "critical")
# Where no bound is given when standing approvals are turned on.
DEFAULT_BOUNDS: dict[str, Any] = {
    "allowed": True,
    "max_minutes": 60,
    "max_uses": 10,
    "max_risk": "medium",
    "at_most": [],
}
MAX_MINUTES = 24 * 60
MAX_USES = 1000
MAX_AT_MOST_FIELDS = 50
BOUND_FIELDS = ("allowed", "max_minutes", "max_uses", "max_risk", "at_most")
# Risks a standing approval may ever cover: critical actions are always decided one by one.
STANDING_RISKS = ("low", "medium", "high")
# Gate holds a standing approval never answers: the rule asks a person to look at this
# very call (below the tool's minimum confidence), which an approval of an earlier call
# cannot do.
HOLDS_FOR_EACH_CALL = frozenset({LOW_CONFIDENCE})


def covers_hold(reason_code: str) -> bool:
    """Whether a standing approval may answer a call the gate held with ``reason_code``."""
    return reason_code not in HOLDS_FOR_EACH_CALL


def normalize_bounds(
    value: Any, errors: dict[str, list[str]], prefix: str, existing: Any = None
) -> dict:
    """The stored form of a rule's ``standing`` (``{}`` when off), with field-level
    problems added to ``errors`` under ``<prefix>.<field>``. Bounds given in part complete
    the ``existing`` ones (or the defaults); ``allowed`` left out keeps what it was. Pure."""
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        errors[prefix] = ["An object {allowed, max_minutes, max_uses, max_risk, at_most}."]
        return {}
    for name in sorted(set(value) - set(BOUND_FIELDS)):
        errors[f"{prefix}.{name}"] = ["Unknown field."]
    allowed = value.get("allowed", is_allowed(existing))
    if not isinstance(allowed, bool):
        errors[f"{prefix}.allowed"] = ["true or false."]
        return {}
    if not allowed:
        return {}
    base = {**DEFAULT_BOUNDS, **existing} if is_allowed(existing) else DEFAULT_BOUNDS
    bounds = {**base, **{k: v for k, v in value.items() if k in BOUND_FIELDS}}
    for name, ceiling in (("max_minutes", MAX_MINUTES), ("max_uses", MAX_USES)):
        number = bounds[name]
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= ceiling:
            errors[f"{prefix}.{name}"] = [f"A whole number from 1 to {ceiling}."]
    if bounds["max_risk"] == "critical":
        errors[f"{prefix}.max_risk"] = [
            "Critical actions are never approved standing; choose low, medium or high."
        ]
    elif bounds["max_risk"] not in STANDING_RISKS:
        errors[f"{prefix}.max_risk"] = ["Choose one of low, medium, high."]
    fields = bounds["at_most"]
    if not isinstance(fields, list) or not all(
        isinstance(name, str) and name.strip() and len(name) <= 120 for name in fields
    ):
        errors[f"{prefix}.at_most"] = ["A list of top-level argument field names."]
    elif len(fields) > MAX_AT_MOST_FIELDS:
        errors[f"{prefix}.at_most"] = [f"At most {MAX_AT_MOST_FIELDS} fields."]
    else:
        bounds["at_most"] = sorted(set(fields))
    return bounds


def is_allowed(bounds: Any) -> bool:
    return isinstance(bounds, dict) and bounds.get("allowed") is True


def bounds_text(bounds: Any) -> str:
    """``up to 60 min, 10 uses, risk ≤ medium, amount may be lower`` (``off`` when off)."""
    if not is_allowed(bounds):
        return "off"
    text = (
        f"up to {bounds.get('max_minutes')} min, {bounds.get('max_uses')} uses, "
        f"risk ≤ {bounds.get('max_risk')}"
    )
    if bounds.get("at_most"):
        text += f", {', '.join(bounds['at_most'])} may be lower"
    return text


def bound_changes(before: Any, after: Any) -> list[tuple[str, bool, str]]:
    """(field, loosens, text) for every difference between two ``standing`` values. Pure;
    the caller (``rollout.policy_diff``) prefixes the tool and turns them into changes."""
    was_on, is_on = is_allowed(before), is_allowed(after)
    if not was_on and not is_on:
        return []
    if not was_on:
        return [("standing", True, f"allow standing approvals ({bounds_text(after)})")]
    if not is_on:
        return [("standing", False, "no standing approvals (ends the active ones)")]
    changes: list[tuple[str, bool, str]] = []
    for name, label, unit in (
        ("max_minutes", "longest", " min"),
        ("max_uses", "most uses", ""),
    ):
        old, new = before.get(name), after.get(name)
        if old != new:
            loosens = not (isinstance(old, int) and isinstance(new, int) and new < old)
            changes.append(
                (
                    f"standing.{name}",
                    loosens,
                    f"standing approvals {label} {old}{unit} → {new}{unit}",
                )
            )
    old_risk, new_risk = before.get("max_risk"), after.get("max_risk")
    if old_risk != new_risk:
        loosens = not (
            old_risk in RISKS
            and new_risk in RISKS
            and RISKS.index(new_risk) < RISKS.index(old_risk)
        )
        changes.append(
            ("standing.max_risk", loosens, f"standing approvals risk ≤ {old_risk} → {new_risk}")
        )
    old_fields, new_fields = set(before.get("at_most") or []), set(after.get("at_most") or [])
    for name in sorted(new_fields - old_fields):
        changes.append(("standing.at_most", True, f"standing approvals: {name} may be lower"))
    for name in sorted(old_fields - new_fields):
        changes.append(("standing.at_most", False, f"standing approvals: {name} must be equal"))
    return changes


def terms_problems(bounds: Any, minutes: Any, uses: Any, risk: str) -> dict[str, str]:
    """Why a reviewer's terms (``minutes``, ``uses``) for an action of ``risk`` do not fit
    the tool's ``bounds``, per field (``standing_minutes``, ``standing_uses``,
    ``standing``); empty when they fit. Pure."""
    if not is_allowed(bounds):
        return {"standing": "This tool's policy does not allow standing approvals."}
    problems: dict[str, str] = {}
    for field, value, ceiling in (
        ("standing_minutes", minutes, bounds.get("max_minutes")),
        ("standing_uses", uses, bounds.get("max_uses")),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ceiling:
            problems[field] = f"A whole number from 1 to {ceiling} (the tool's bound)."
    ceiling_risk = bounds.get("max_risk")
    if (
        risk not in STANDING_RISKS
        or ceiling_risk not in STANDING_RISKS
        or RISKS.index(risk) > RISKS.index(ceiling_risk)
    ):
        problems["standing"] = (
            f"A {risk}-risk action may not be approved standing (the tool's bound is "
            f"risk ≤ {ceiling_risk})."
        )
    return problems


def _number(value: Any) -> Decimal | None:
    """A JSON number (never a bool or a string): standing matches compare numbers only."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values, where ``true`` is not ``1`` and ``1`` is not ``"1"``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def match_problem(
    approved: dict,
    at_most: list[str],
    risk_ceiling: str,
    arguments: Any,
    risk: str,
) -> str | None:
    """Why a call with ``arguments`` assessed at ``risk`` is not covered by a standing
    approval of ``approved`` arguments; None when it is. The same keys, none extra or
    missing; every field equal, except ``at_most`` fields, numbers ≤ the approved number;
    the risk no higher than ``risk_ceiling``. Pure."""
    if not isinstance(arguments, dict) or set(arguments) != set(approved):
        return "the arguments have other fields"
    for name, value in approved.items():
        offered = arguments[name]
        if name in at_most:
            limit, number = _number(value), _number(offered)
            if limit is None or number is None:
                return f"{name} is not a number"
            if number > limit:
                return f"{name} is above the approved value"
        elif not _json_equal(value, offered):
            return f"{name} differs"
    if risk not in RISKS or risk_ceiling not in RISKS:
        return "unknown risk"
    if RISKS.index(risk) > RISKS.index(risk_ceiling):
        return f"risk {risk} is above the approved {risk_ceiling}"
    return None
