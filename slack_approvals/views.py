"""Slack's requests (interactivity, the ``/airlock`` command) and the profile's Slack forms.

Requests claiming to come from Slack are untrusted input: each must carry Slack's signature
of its exact body and a timestamp less than five minutes old (``slack_sdk.signature``), or
it is answered ``401`` (logged) and nothing happens. A signed request is then mapped to the
Airlock person its Slack user is linked to; decisions go through ``slack_approvals.actions``
(the approvals write path), synchronously — it is fast — and everything said back to Slack
after a decision is owed as an outbox row and sent by a task, so Slack gets its answer
within its three seconds."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from slack_sdk.signature import SignatureVerifier

from accounts import reauth, stepup
from accounts.views import _profile_context
from approvals.models import Action
from approvals.states import Status
from core.errors import Refused, answering_refusals, refusal_body
from slack_approvals import actions, blocks
from slack_approvals.actions import SlackIdentity, SlackRefused
from slack_approvals.tasks import slack_client

logger = logging.getLogger(__name__)


def _answer(refusal: Refused) -> JsonResponse:
    return JsonResponse(refusal_body(refusal), status=refusal.status)


def _verified(request: HttpRequest) -> Refused | None:
    """None when ``request`` carries a good Slack signature and a fresh timestamp."""
    if not actions.slack_configured():
        return actions.NOT_CONFIGURED
    verifier = SignatureVerifier(settings.SLACK_SIGNING_SECRET)
    headers = {
        "x-slack-request-timestamp": request.headers.get("X-Slack-Request-Timestamp", ""),
        "x-slack-signature": request.headers.get("X-Slack-Signature", ""),
    }
    try:
        valid = bool(headers["x-slack-signature"]) and verifier.is_valid_request(
            request.body, headers
        )
    except (ValueError, TypeError):  # a timestamp that is not a number
        valid = False
    if valid:
        return None
    logger.warning(
        "refused a Slack request to %s: bad or missing signature, or a timestamp older than "
        "five minutes (from %s)",
        request.path,
        request.META.get("REMOTE_ADDR", "?"),
    )
    return SlackRefused(
        "bad_slack_signature",
        "This request does not carry a valid Slack signature and a fresh timestamp.",
        401,
    )


def _payload(request: HttpRequest) -> dict:
    try:
        payload = json.loads(request.POST.get("payload", ""))
    except ValueError as exc:
        raise SlackRefused("invalid_payload", "The payload is not JSON.", 400) from exc
    if not isinstance(payload, dict):
        raise SlackRefused("invalid_payload", "The payload is not a JSON object.", 400)
    return payload


def _identity(payload: dict) -> SlackIdentity:
    user = payload.get("user") if isinstance(payload.get("user"), dict) else {}
    team = payload.get("team") if isinstance(payload.get("team"), dict) else {}
    return actions.identity_from(
        team.get("id") or user.get("team_id"), user.get("id"), user.get("username")
    )


def _button(payload: dict) -> tuple[str, int, str]:
    """The clicked button's action id, and the action and payload hash it carries."""
    clicked = payload.get("actions")
    if not isinstance(clicked, list) or not clicked or not isinstance(clicked[0], dict):
        raise SlackRefused("invalid_payload", "No action was clicked.", 400)
    action_id = clicked[0].get("action_id")
    if action_id == blocks.OPEN:
        return action_id, 0, ""
    try:
        value = json.loads(clicked[0].get("value") or "")
        return action_id, int(value["action"]), str(value["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SlackRefused("invalid_payload", "The button carries no action.", 400) from exc


def _channel(payload: dict) -> str:
    channel = payload.get("channel") if isinstance(payload.get("channel"), dict) else {}
    container = payload.get("container") if isinstance(payload.get("container"), dict) else {}
    return str(channel.get("id") or container.get("channel_id") or "")[:32]


@csrf_exempt
@require_POST
def interactivity(request: HttpRequest) -> HttpResponse:
    """Slack's interactivity request URL: button clicks (``block_actions``) and the reject
    modal's submission (``view_submission``)."""
    if refusal := _verified(request):
        return _answer(refusal)
    try:
        payload = _payload(request)
        kind = payload.get("type")
        if kind == "block_actions":
            return _block_action(payload)
        if kind == "view_submission":
            return _view_submission(payload)
    except SlackRefused as refusal:
        return _answer(refusal)
    return HttpResponse(status=200)  # other interactions: nothing to do


def _block_action(payload: dict) -> HttpResponse:
    identity = _identity(payload)
    button, action_id, seen_hash = _button(payload)
    channel = _channel(payload)
    if button == blocks.OPEN:
        return HttpResponse(status=200)  # a link button: Slack opened the card
    if button not in (blocks.APPROVE, blocks.REJECT):
        raise SlackRefused("invalid_payload", "Unknown button.", 400)
    person = actions.person_for(identity)
    if person is None:
        actions.owe_link_notice(channel_id=channel, identity=identity)
        return HttpResponse(status=200)
    if button == blocks.REJECT:
        return _open_reject_modal(payload, person, action_id, seen_hash, channel)
    try:
        action = actions.approve_from_slack(person=person, action_id=action_id, seen_hash=seen_hash)
    except Refused as refusal:
        logger.info(
            "Slack approval of action %s by %s refused: %s",
            action_id,
            person.get_username(),
            refusal.code,
        )
        actions.owe_notice(
            channel_id=channel,
            slack_user_id=identity.user_id,
            text=f"Not approved: {blocks.fit(refusal.detail, 1000)}",
        )
        return HttpResponse(status=200)
    if action.status == Status.PENDING:
        actions.owe_notice(
            channel_id=channel,
            slack_user_id=identity.user_id,
            text=f"Your approval of action #{action.pk} is recorded; it "
            f"{actions.still_needed(action)}.",
        )
    return HttpResponse(status=200)


def _open_reject_modal(
    payload: dict, person: Any, action_id: int, seen_hash: str, channel: str
) -> HttpResponse:
    """Ask the reason in a modal (views.open must use the click's trigger id within three
    seconds, so it is called now; nothing is decided yet). A card Slack may not decide, or
    one that left pending, is answered at once instead."""
    identity = _identity(payload)
    action = Action.objects.select_related("agent").filter(pk=action_id).first()
    refusal = None
    if action is None or not actions.may_decide(action, person):
        refusal = "This action is not pending, or not yours to decide."
    elif (slack := actions.slack_refusal(action)) is not None:
        refusal = slack.detail
    if refusal is not None:
        actions.owe_notice(
            channel_id=channel, slack_user_id=identity.user_id, text=f"Not rejected: {refusal}"
        )
        return HttpResponse(status=200)
    trigger_id = str(payload.get("trigger_id") or "")
    if not trigger_id:
        raise SlackRefused("invalid_payload", "No trigger_id to open the reason dialog.", 400)
    try:
        slack_client().views_open(
            trigger_id=trigger_id,
            view=blocks.reject_modal(action, seen_hash=seen_hash, channel_id=channel),
        )
    except Exception:  # an expired trigger, Slack down: say so, decide nothing
        logger.warning("views.open for action %s failed", action.pk, exc_info=True)
        actions.owe_notice(
            channel_id=channel,
            slack_user_id=identity.user_id,
            text="Could not open the reason dialog: click Reject again, or reject in Airlock.",
        )
    return HttpResponse(status=200)


def _modal_error(message: str) -> JsonResponse:
    return JsonResponse(
        {"response_action": "errors", "errors": {blocks.REASON_BLOCK: message[:150]}}
    )


def _view_submission(payload: dict) -> HttpResponse:
    identity = _identity(payload)
    view = payload.get("view") if isinstance(payload.get("view"), dict) else {}
    if view.get("callback_id") != blocks.REJECT_MODAL:
        return HttpResponse(status=200)
    try:
        meta = json.loads(view.get("private_metadata") or "")
        action_id, seen_hash = int(meta["action"]), str(meta["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SlackRefused("invalid_payload", "The dialog carries no action.", 400) from exc
    try:
        values = view["state"]["values"][blocks.REASON_BLOCK][blocks.REASON_INPUT]
        reason = str(values.get("value") or "").strip()
    except (KeyError, TypeError, AttributeError):
        reason = ""
    if not reason:
        return _modal_error("A rejection needs a reason for the agent.")
    person = actions.person_for(identity)
    if person is None:
        return _modal_error("Your Slack account is not linked to Airlock: type /airlock link.")
    try:
        actions.reject_from_slack(
            person=person, action_id=action_id, seen_hash=seen_hash, reason=reason
        )
    except Refused as refusal:
        logger.info(
            "Slack rejection of action %s by %s refused: %s",
            action_id,
            person.get_username(),
            refusal.code,
        )
        return _modal_error(f"Not rejected: {refusal.detail}")
    return HttpResponse(status=200)  # closes the dialog; the message is updated


@csrf_exempt
@require_POST
def command(request: HttpRequest) -> HttpResponse:
    """The ``/airlock`` slash command. ``/airlock link`` answers (only to the person who
    typed it) with their signed link; anything else with what the command does."""
    if refusal := _verified(request):
        return _answer(refusal)
    try:
        identity = actions.identity_from(
            request.POST.get("team_id"), request.POST.get("user_id"), request.POST.get("user_name")
        )
    except SlackRefused as refusal:
        return _answer(refusal)
    words = request.POST.get("text", "").split()
    if words[:1] == ["link"]:
        person = actions.person_for(identity)
        already = (
            f"This Slack account is linked to Airlock person {person.get_username()}; a new "
            "link moves it to whoever confirms it. "
            if person
            else ""
        )
        text = (
            f"{blocks.fit(already, 300)}Open this link within "
            f"{settings.SLACK_LINK_MAX_AGE_SECONDS // 60} minutes, log in to Airlock "
            f"and confirm: <{actions.link_url(identity)}|link your Slack account>. "
            "Do not share it: whoever confirms it decides from this Slack account."
        )
    else:
        person = actions.person_for(identity)
        state = f"linked to {person.get_username()}" if person else "not linked"
        text = (
            f"This Slack account is {blocks.fit(state, 200)}. `/airlock link` links it to your "
            "Airlock account, to approve and reject from Slack."
        )
    return JsonResponse({"response_type": "ephemeral", "text": text})


# --- the profile's Slack section ----------------------------------------------------------


def _profile_with_error(request: HttpRequest, refusal: Refused, message: str) -> HttpResponse:
    context = _profile_context(request)
    context["slack_error"] = message
    context["slack_error_code"] = refusal.code
    return render(request, "accounts/profile.html", context, status=refusal.status)


def _to_section() -> HttpResponse:
    return redirect(reverse("profile") + "#slack")


@login_required
@require_POST
@never_cache
def link(request: HttpRequest) -> HttpResponse:
    """Confirm the Slack identity a signed link names as the signed-in person's (password
    typed again and step-up, as for any credential: from now on it decides as them)."""
    with answering_refusals(request) as refused:
        identity = actions.read_link_token(request.POST.get("token", ""))
        reauth.require_recent_password(request, purpose="link a Slack account")
        stepup.require_recent_second_factor(request, purpose="link a Slack account")
        actions.link_identity(user=request.user, identity=identity)
    if refused:
        return _profile_with_error(request, refused.refusal, refused.message)
    messages.success(request, "Your Slack account is linked: Slack can now ask you to decide.")
    return _to_section()


@login_required
@require_POST
@never_cache
def unlink(request: HttpRequest) -> HttpResponse:
    """End the signed-in person's Slack link (no-op when there is none)."""
    if actions.unlink_identity(user=request.user) is not None:
        messages.success(request, "Your Slack account is unlinked: its buttons decide nothing.")
    return _to_section()


@login_required
@require_POST
@never_cache
def threshold(request: HttpRequest) -> HttpResponse:
    """Set the lowest risk the signed-in person is sent Slack messages for."""
    with answering_refusals(request) as refused:
        account = actions.set_threshold(
            user=request.user, min_risk=request.POST.get("min_risk", "")
        )
    if refused:
        return _profile_with_error(request, refused.refusal, refused.message)
    messages.success(
        request, f"Slack will message you about {account.min_risk}-risk actions and up."
    )
    return _to_section()
