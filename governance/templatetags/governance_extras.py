"""Template helpers of the governance pages."""

from __future__ import annotations

import json
from typing import Any

from django import template

from rollout.policy import RADIUS_DIMENSIONS
from rollout.policy_diff import OPERATOR_TEXT, value_text
from rollout.standing import bounds_text

register = template.Library()


@register.filter
def as_json(value: Any) -> str:
    """``value`` as compact JSON text (auto-escaped by the template like any string)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


@register.filter
def limit_text(limit: Any) -> str:
    """An argument limit as ``field op value``."""
    if not isinstance(limit, dict):
        return as_json(limit)
    return f"{limit.get('field')} {limit.get('op')} {as_json(limit.get('value'))}"


@register.filter
def radius_lines(mapping: Any) -> list[str]:
    """A ``blast_radius_from_arguments`` mapping as lines ``amount ← arguments.amount``."""
    if not isinstance(mapping, dict):
        return [as_json(mapping)] if mapping else []
    known = [d for d in RADIUS_DIMENSIONS if d in mapping]
    return [
        f"{dimension} ← arguments.{mapping[dimension]}"
        for dimension in known + sorted(set(mapping) - set(known), key=str)
    ]


@register.filter
def standing_bounds(bounds: Any) -> str:
    """A tool's standing-approval bounds as people read them ("up to 60 min, 10 uses, risk
    ≤ medium" or "off")."""
    return bounds_text(bounds)


@register.filter
def per_minute(value: Any) -> str:
    return "no limit" if value is None else f"{value}/min"


@register.filter
def lookup(mapping: Any, key: Any) -> Any:
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def readable_limit(limit: Any) -> str:
    """An argument limit as a person reads it: ``amount ≤ 10,000``."""
    if not isinstance(limit, dict):
        return as_json(limit)
    op = limit.get("op")
    return f"{limit.get('field')} {OPERATOR_TEXT.get(op, op)} {value_text(limit.get('value'))}"
