"""Formatting helpers of the audit templates. Every value stays auto-escaped."""

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def pretty_json(value: Any) -> str:
    """Indented, key-sorted JSON as plain text (escaped by the template like any text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


@register.filter
def short_hash(value: str) -> str:
    return (value or "")[:12]
