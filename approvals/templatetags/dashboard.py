"""Small formatting helpers for the dashboard templates. They return plain strings, so
Django's autoescaping still applies to everything they touch — except ``show_invisible``,
which escapes its input itself and returns safe markup."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from django import template
from django.http import QueryDict
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

from approvals.actions import KILL_SWITCH_FEEDBACK
from approvals.states import Status
from core.identity import INVISIBLE

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


@register.filter(is_safe=True)
def show_invisible(value: Any) -> SafeString:
    """Agent-supplied text, escaped, with every invisible character made visible: each
    default-ignorable code point (zero-width characters, soft hyphen, bidirectional marks,
    variation selectors, tags — ``core.identity.INVISIBLE``) becomes a marker
    ``<span class="invisible-char">⟨U+200B⟩</span>``, so a reviewer sees that two strings
    which look alike are not the same, and no hidden text rides along unseen."""
    if value is None:
        return mark_safe("")
    text = str(value)
    parts: list[str] = []
    last = 0
    for match in INVISIBLE.finditer(text):
        parts.append(conditional_escape(text[last : match.start()]))
        parts.append(
            f'<span class="invisible-char" title="invisible character">'
            f"\u27e8U+{ord(match.group()):04X}\u27e9</span>"
        )
        last = match.end()
    parts.append(conditional_escape(text[last:]))
    return mark_safe("".join(parts))  # noqa: S308 - every piece of the input is escaped above


@register.filter
def stopped_by(action: Any) -> str:
    """What ended ``action`` when no reviewer's decision did (a kill switch, expiry, the
    agent), for lists that say who decided; "" when people decided it."""
    feedback = action.feedback or ""
    if action.status in (Status.CANCELLED, Status.REVOKED) and feedback.startswith(
        KILL_SWITCH_FEEDBACK
    ):
        return "kill switch: " + feedback[len(KILL_SWITCH_FEEDBACK) :]
    if action.status == Status.EXPIRED:
        return "expiry"
    if action.status == Status.CANCELLED:
        return "the agent" if "agent" in feedback.lower() else "cancelled"
    return ""
