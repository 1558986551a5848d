"""Small formatting helpers for the dashboard templates. They return plain strings, so
Django's autoescaping still applies to everything they touch."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from django import template
from django.http import QueryDict

register = template.Library()


@register.filter
def time_left(seconds: int | None) -> str:
    """``5400`` → ``"1 h 30 min"``; ``0`` → ``"expired"``; ``None`` → ``"no expiry"``."""
    if seconds is None:
        return "no expiry"
    if seconds <= 0:
        return "expired"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 24:
        return f"{hours // 24} d {hours % 24} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


@register.filter
def urgency(seconds: int | None) -> str:
    """A CSS modifier for the time left: ``urgent`` under 10 minutes, ``soon`` under an
    hour, else empty."""
    if seconds is None:
        return ""
    if seconds < 600:
        return "urgent"
    if seconds < 3600:
        return "soon"
    return ""


@register.filter
def label(value: Any) -> str:
    """``"rollback_requested"`` → ``"rollback requested"``."""
    return str(value).replace("_", " ")


@register.simple_tag
def page_url(return_to: str, page_number: int) -> str:
    """``return_to`` (a list URL with its filters) pointing at another page."""
    parts = urlsplit(return_to)
    query = QueryDict(parts.query, mutable=True)
    query["page"] = str(page_number)
    return f"{parts.path}?{urlencode(sorted(query.items()))}"
