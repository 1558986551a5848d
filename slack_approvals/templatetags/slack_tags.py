"""The profile's Slack section (``{% slack_section %}`` in ``accounts/profile.html``): the
link state, a signed link's confirmation, the unlink button and the risk threshold. A tag,
so that accounts — below this app — needs no import of it."""

from __future__ import annotations

from typing import Any

from django import template

from core.errors import Refused
from rollout.models import Risk
from slack_approvals import actions

register = template.Library()


@register.inclusion_tag("slack_approvals/_profile_section.html", takes_context=True)
def slack_section(context: Any) -> dict:
    request = context.get("request")
    user = request.user
    token = request.POST.get("token", "") if request.method == "POST" else ""
    token = token or request.GET.get("slack_link", "")
    # A refused confirmation (a wrong password, say) shows its error above the same
    # confirmation, asked again while the link is still good.
    to_confirm, link_error = None, context.get("slack_error", "")
    if token:
        try:
            to_confirm = actions.read_link_token(token)
        except Refused as refusal:
            link_error = link_error or refusal.detail
    account = actions.account_of(user)
    return {
        "request": request,
        "configured": actions.slack_configured(),
        "account": account,
        "linked": account is not None and account.is_linked,
        "min_risk": account.min_risk if account else Risk.LOW,
        "risks": Risk.choices,
        "to_confirm": to_confirm,
        "token": token if to_confirm else "",
        "error": link_error,
        "taken_by_self": (
            to_confirm is not None
            and account is not None
            and account.team_id == to_confirm.team_id
            and account.slack_user_id == to_confirm.user_id
        ),
    }
