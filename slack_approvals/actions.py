"""Every change Slack approvals makes passes through here: linking and unlinking a Slack
identity, a person's Slack threshold, the direct messages owed for pending actions and the
updates owed when they leave pending, decisions taken in Slack and the replies owed to the
people who clicked.

Decisions go through ``approvals.actions`` (the one write path of actions: quorum,
separation of duties, expiry, kill switches, step-up) with channel ``slack``; what is owed to
Slack is an outbox row (``SlackMessage``, ``SlackNotice``) written in the transaction of the
change that owed it and queued for ``slack_approvals.tasks`` with ``transaction.on_commit``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.notices import owe_account_notice
from accounts.stepup import risk_needs_step_up
from approvals import actions as approvals_actions
from approvals import rules
from approvals.models import Action, Channel, Decision
from audit import verbs
from audit.chain import Actor, append_event
from core.errors import Refused
from core.people import is_active_person
from rollout import permissions as rollout_permissions
from rollout.models import RISK_ORDER, Risk
from slack_approvals.models import SlackAccount, SlackMessage, SlackNotice

# Only these are decided with a click in Slack; riskier ones (and any that need step-up)
# get a button that opens the card in Airlock.
SLACK_DECIDABLE_RISKS = frozenset({Risk.LOW, Risk.MEDIUM})
LINK_SALT = "airlock.slack_approvals.link"
# Slack's ids: T…/E… (workspace or grid), U…/W… (user). Anything else is not from Slack.
SLACK_ID = re.compile(r"^[A-Z0-9]{2,32}$")


class SlackRefused(Refused):
    """A Slack request or a Slack setting the rules refuse."""


NOT_CONFIGURED = SlackRefused(
    "slack_not_configured",
    "Slack approvals are not configured here (SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET).",
    503,
)


def slack_configured() -> bool:
    """Slack is on only with both the bot token and the signing secret."""
    return bool(settings.SLACK_BOT_TOKEN and settings.SLACK_SIGNING_SECRET)


def card_link(action: Action) -> str:
    return f"{settings.AIRLOCK_PUBLIC_URL.rstrip('/')}/actions/{action.pk}"


# --- who is who -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SlackIdentity:
    """A Slack user as Slack's signed request named them."""

    team_id: str
    user_id: str
    name: str = ""


def identity_from(team_id: Any, user_id: Any, name: Any = "") -> SlackIdentity:
    """A ``SlackIdentity`` from untrusted values; refused (400) unless they look like Slack's."""
    if not (isinstance(team_id, str) and SLACK_ID.match(team_id)) or not (
        isinstance(user_id, str) and SLACK_ID.match(user_id)
    ):
        raise SlackRefused("invalid_slack_identity", "This is not a Slack team and user id.", 400)
    return SlackIdentity(team_id, user_id, str(name or "")[:120])


def link_token(identity: SlackIdentity) -> str:
    """A signed, timestamped token naming ``identity``; only ``read_link_token`` (with the
    same salt) accepts it, for ``SLACK_LINK_MAX_AGE_SECONDS``."""
    return signing.dumps(
        {"t": identity.team_id, "u": identity.user_id, "n": identity.name}, salt=LINK_SALT
    )


def link_url(identity: SlackIdentity) -> str:
    """Where a Slack user proves who they are in Airlock: the profile's Slack section."""
    base = settings.AIRLOCK_PUBLIC_URL.rstrip("/")
    return f"{base}/accounts/profile/?slack_link={link_token(identity)}#slack"


def read_link_token(token: str) -> SlackIdentity:
    """The identity a link names; refused when the signature is wrong (400
    ``slack_link_invalid``) or the link is older than ``SLACK_LINK_MAX_AGE_SECONDS`` (400
    ``slack_link_expired``)."""
    try:
        data = signing.loads(
            str(token)[:1000], salt=LINK_SALT, max_age=settings.SLACK_LINK_MAX_AGE_SECONDS
        )
    except signing.SignatureExpired as exc:
        raise SlackRefused(
            "slack_link_expired",
            "This Slack link has expired: type /airlock link in Slack for a new one.",
            400,
            {"token": ["expired"]},
        ) from exc
    except signing.BadSignature as exc:
        raise SlackRefused(
            "slack_link_invalid",
            "This Slack link is not valid: type /airlock link in Slack for a new one.",
            400,
            {"token": ["bad signature"]},
        ) from exc
    if not isinstance(data, dict):
        raise SlackRefused("slack_link_invalid", "This Slack link is not valid.", 400)
    return identity_from(data.get("t"), data.get("u"), data.get("n"))


def person_for(identity: SlackIdentity) -> Any | None:
    """The active person ``identity`` is linked to, or None."""
    account = (
        SlackAccount.objects.select_related("user")
        .filter(team_id=identity.team_id, slack_user_id=identity.user_id)
        .first()
    )
    if account is None or not is_active_person(account.user):
        return None
    return account.user


def account_of(user: Any) -> SlackAccount | None:
    return SlackAccount.objects.filter(user=user).first()


def _audit_account(user: Any, verb: str, data: dict) -> None:
    append_event(
        verb=verb, actor=Actor.user(user), target_type="user", target_id=user.pk, data=data
    )


def link_identity(*, user: Any, identity: SlackIdentity) -> SlackAccount:
    """Link ``identity`` to ``user`` (replacing the Slack identity they had linked before):
    from now on that Slack user's clicks decide as ``user``. Refused (409
    ``slack_identity_taken``) when another person has it linked — one Slack identity, one
    person. Audits ``slack.linked`` and owes the person an email (a link is a credential:
    one they did not make themselves must not go unnoticed)."""
    try:
        with transaction.atomic():
            account, _ = SlackAccount.objects.select_for_update().get_or_create(user=user)
            taken = (
                SlackAccount.objects.filter(
                    team_id=identity.team_id, slack_user_id=identity.user_id
                )
                .exclude(user=user)
                .exists()
            )
            if taken:
                raise SlackRefused(
                    "slack_identity_taken",
                    "This Slack user is linked to another Airlock person; they must unlink it "
                    "first.",
                    409,
                )
            replaced = (
                {"team_id": account.team_id, "slack_user_id": account.slack_user_id}
                if account.is_linked
                else None
            )
            account.team_id = identity.team_id
            account.slack_user_id = identity.user_id
            account.slack_name = identity.name
            account.linked_at = timezone.now()
            account.save()
            _audit_account(
                user,
                verbs.SLACK_LINKED,
                {
                    "team_id": identity.team_id,
                    "slack_user_id": identity.user_id,
                    "slack_name": identity.name,
                    "replaced": replaced,
                },
            )
            owe_account_notice(
                user=user,
                change=f"Slack user {identity.user_id} (workspace {identity.team_id}) was "
                "linked: its clicks in Slack now approve and reject as you",
            )
    except IntegrityError as exc:  # another person linked it concurrently
        raise SlackRefused(
            "slack_identity_taken", "This Slack user is linked to another Airlock person.", 409
        ) from exc
    return account


@transaction.atomic
def unlink_identity(*, user: Any) -> SlackAccount | None:
    """End ``user``'s Slack link (their threshold is kept); no-op when none. Messages already
    sent stay, but their buttons decide nothing any more (an unlinked click is answered with
    how to link). Audits ``slack.unlinked``; owes the person an email."""
    account = SlackAccount.objects.select_for_update().filter(user=user).first()
    if account is None or not account.is_linked:
        return None
    data = {"team_id": account.team_id, "slack_user_id": account.slack_user_id}
    account.team_id = account.slack_user_id = account.slack_name = ""
    account.linked_at = None
    account.save()
    _audit_account(user, verbs.SLACK_UNLINKED, data)
    owe_account_notice(
        user=user, change=f"Slack user {data['slack_user_id']} was unlinked from your account"
    )
    return account


@transaction.atomic
def set_threshold(*, user: Any, min_risk: str) -> SlackAccount:
    """Set the lowest risk ``user`` is sent Slack messages for (400 ``invalid`` otherwise).
    Audits ``slack.threshold_changed`` when it changes."""
    if min_risk not in Risk.values:
        raise SlackRefused(
            "invalid",
            "Choose a risk: low, medium, high or critical.",
            400,
            {"min_risk": [f"{str(min_risk)[:20]!r} is not a risk."]},
        )
    account, _ = SlackAccount.objects.select_for_update().get_or_create(user=user)
    if account.min_risk != min_risk:
        before = account.min_risk
        account.min_risk = min_risk
        account.save(update_fields=["min_risk"])
        _audit_account(
            user, verbs.SLACK_THRESHOLD_CHANGED, {"min_risk": min_risk, "before": before}
        )
    return account


# --- what is owed to Slack ----------------------------------------------------------------


def may_decide(action: Action, person: Any) -> bool:
    """Whether ``person`` may decide ``action`` now: the write path's own rule
    (``approvals.actions.decision_refusal``), asked for a rejection — the verdict anyone who
    may review a pending action may give; whether they may also approve it decides the
    Approve button."""
    return (
        is_active_person(person)
        and approvals_actions.decision_refusal(action, person, Decision.Verdict.REJECT) is None
    )


def slack_refusal(action: Action) -> rules.Refusal | None:
    """Why ``action`` may not be decided with a click in Slack (None: it may): high and
    critical actions, and any that need step-up, are decided in Airlock. Written once: the
    message's buttons and the interactivity endpoint both ask it."""
    if action.risk not in SLACK_DECIDABLE_RISKS or risk_needs_step_up(action.risk):
        return rules.Refusal(
            "decide_in_airlock",
            f"A {action.risk}-risk action is decided in Airlock, not in Slack: open the card.",
            403,
        )
    return None


def _enqueue_message(message_id: int) -> None:
    from slack_approvals.tasks import enqueue_message

    transaction.on_commit(lambda: enqueue_message(message_id))


def owe_messages_for_pending(action: Action) -> int:
    """``approvals.hooks.action_pending``'s handler: one direct message owed to each linked,
    active person who may decide ``action`` and whose threshold it reaches, written as
    ``SlackMessage`` rows in the gate's transaction and queued on commit. Nothing when Slack
    is off."""
    if not slack_configured() or getattr(action, "pk", None) is None:
        return 0
    reached = RISK_ORDER[: RISK_ORDER.index(action.risk) + 1]
    accounts = SlackAccount.objects.select_related("user").filter(
        slack_user_id__gt="", user__is_active=True, min_risk__in=reached
    )
    rows = [
        SlackMessage(
            action=action,
            user=account.user,
            team_id=account.team_id,
            slack_user_id=account.slack_user_id,
        )
        for account in accounts.order_by("pk")
        if may_decide(action, account.user)
    ]
    for row in SlackMessage.objects.bulk_create(rows):
        _enqueue_message(row.pk)
    return len(rows)


def owe_message_updates(action: Action) -> int:
    """``approvals.hooks.action_left_pending``'s handler: every message owed or sent about
    ``action`` now owes an update (its outcome, buttons removed), in the change's
    transaction; queued on commit. Nothing when Slack is off."""
    if not slack_configured() or getattr(action, "pk", None) is None:
        return 0
    owed = SlackMessage.objects.filter(
        action_id=action.pk, failed_at__isnull=True, skipped_at__isnull=True
    )
    ids = list(owed.values_list("pk", flat=True))
    if ids:
        SlackMessage.objects.filter(pk__in=ids).update(update_owed=True)
        for message_id in ids:
            _enqueue_message(message_id)
    return len(ids)


def owe_notice(*, channel_id: str, slack_user_id: str, text: str) -> SlackNotice:
    """A reply only ``slack_user_id`` sees in ``channel_id``, owed as a row and sent on
    commit (``tasks.deliver_slack_notice``)."""
    from slack_approvals.tasks import enqueue_notice

    notice = SlackNotice.objects.create(
        channel_id=channel_id[:32], slack_user_id=slack_user_id, text=text[:3000]
    )
    transaction.on_commit(lambda: enqueue_notice(notice.pk))
    return notice


def owe_link_notice(*, channel_id: str, identity: SlackIdentity) -> SlackNotice:
    """Tell an unlinked Slack user how to link: their signed, short-lived link."""
    return owe_notice(
        channel_id=channel_id,
        slack_user_id=identity.user_id,
        text=(
            "Your Slack account is not linked to an Airlock person, so it cannot decide. "
            f"Link it (valid {settings.SLACK_LINK_MAX_AGE_SECONDS // 60} minutes, log in "
            f"first): <{link_url(identity)}|link your Slack account in Airlock>"
        ),
    )


# --- decisions from Slack -------------------------------------------------------------------


def _no_step_up(action: Action) -> None:
    raise SlackRefused(
        "step_up_required", "This action needs a second factor: decide it in Airlock.", 403
    )


def _decide(action_id: int, decide: Any) -> Action:
    """Lock the action, refuse what Slack may not decide (``slack_refusal``, asked under the
    row lock, so an edit that raised the risk is seen), then let ``decide`` run the write
    path in the same transaction. A refusal is raised after the transaction closed, so what
    the write path recorded while refusing (an expiry) stays."""
    refused: Refused | None = None
    with transaction.atomic():
        action = Action.objects.select_for_update(of=("self",)).filter(pk=action_id).first()
        if action is None:
            raise SlackRefused("not_found", "This action no longer exists.", 404)
        refusal = slack_refusal(action)
        if refusal is not None:
            refused = SlackRefused(refusal.code, refusal.detail, refusal.status)
        else:
            try:
                action = decide()
            except Refused as exc:
                refused = exc
    if refused is not None:
        raise refused
    return action


def approve_from_slack(*, person: Any, action_id: int, seen_hash: str) -> Action:
    """``person`` approved in Slack the payload they were shown (``seen_hash``): the write
    path's ``approve`` with channel ``slack`` and no second factor (one that needs it is
    refused). Audits and broadcasts as ``approve`` does."""
    return _decide(
        action_id,
        lambda: approvals_actions.approve(
            action_id=action_id,
            user=person,
            seen_hash=seen_hash,
            channel=Channel.SLACK,
            step_up=_no_step_up,
        ),
    )


def reject_from_slack(*, person: Any, action_id: int, seen_hash: str, reason: str) -> Action:
    """``person`` rejected in Slack, with ``reason`` (returned to the agent): the write
    path's ``reject`` with channel ``slack``. Audits and broadcasts as ``reject`` does."""
    return _decide(
        action_id,
        lambda: approvals_actions.reject(
            action_id=action_id,
            user=person,
            comment=reason,
            seen_hash=seen_hash,
            channel=Channel.SLACK,
        ),
    )


def still_needed(action: Action) -> str:
    """What a pending action still needs, in words (after an approval that did not decide)."""
    return str(
        rules.still_needed(
            action,
            approvals_actions.current_approvals(action),
            lambda person: rollout_permissions.can_approve_critical(person, action.agent),
        )
    )
