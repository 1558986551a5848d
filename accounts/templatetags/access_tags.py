"""Template tags of access pages: the inline step-up ask.

``{% step_up_field risk=card.action.risk field_id=card.pk %}`` inside a form renders a code
input when that form's action needs a fresh second factor (``accounts.stepup``): step-up is
on, the risk (if given) is high or critical, and the person entered no code recently.
``prefix`` tells two such fields of one page apart.

``{% reauth_field field_id="token" %}`` renders a password input when the form's action
needs the password typed again (``accounts.reauth``) and this session has not recently."""

from __future__ import annotations

from typing import Any

from django import template

from accounts import reauth, stepup, twofactor

register = template.Library()


@register.inclusion_tag("accounts/_step_up_field.html", takes_context=True)
def step_up_field(
    context: Any, risk: str | None = None, field_id: Any = "", prefix: str = ""
) -> dict:
    request = context.get("request")
    show = request is not None and stepup.step_up_pending(request, risk)
    return {
        "show": show,
        "field_id": f"{prefix}{field_id}",
        "enrolled": show and twofactor.has_second_factor(request.user),
    }


@register.inclusion_tag("accounts/_reauth_field.html", takes_context=True)
def reauth_field(context: Any, field_id: Any = "") -> dict:
    request = context.get("request")
    return {
        "show": request is not None and reauth.reauth_pending(request),
        "field_id": field_id,
    }
