"""The Block Kit Airlock sends to Slack: the message about a pending action, the same
message once the action was decided, and the modal that asks a rejection's reason.

Everything an agent wrote (summary, tool, arguments, blast radius, feedback) is escaped for
Slack's mrkdwn (``approvals.notifications.slack_escape``), so ``<!channel>``, ``<@U…>`` and
disguised links ``<https://…|…>`` arrive as text; the only links are the ones Airlock builds
from ``AIRLOCK_PUBLIC_URL``. Arguments are always masked (``approvals.masking``: Slack is
not a place where anyone may see sensitive fields)."""

from __future__ import annotations

import json
from typing import Any

from approvals.masking import mask_paths, redacted_paths
from approvals.models import Action, Decision
from approvals.notifications import slack_escape
from approvals.states import Status
from slack_approvals.actions import card_link, slack_refusal

APPROVE = "airlock_approve"
REJECT = "airlock_reject"
OPEN = "airlock_open"
REJECT_MODAL = "airlock_reject_reason"
REASON_BLOCK = "reason"
REASON_INPUT = "reason"
SECTION_LIMIT = 3000  # Slack's limit on a section's text


def fit(text: Any, limit: int) -> str:
    """``text`` escaped for mrkdwn and cut to ``limit`` characters, never inside an entity."""
    escaped = slack_escape(text)
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _link(url: str, label: str) -> str:
    # Built by Airlock; escaped too, and a "|" could not end the URL early.
    return f"<{slack_escape(url).replace('|', '%7C')}|{label}>"


def masked_arguments(action: Action) -> Any:
    """The arguments as Slack shows them: sensitive fields masked, whoever reads them."""
    return mask_paths(action.arguments, redacted_paths(action.tool))


def button_value(action: Action) -> str:
    """What a button carries back: the action and the payload hash the person was shown."""
    return json.dumps({"action": action.pk, "hash": action.payload_hash})


def fallback_text(action: Action) -> str:
    return fit(f"[{action.risk}] {action.agent.slug} wants to run {action.tool}", 300)


def _card_blocks(action: Action) -> list[dict]:
    radius = action.blast_radius if isinstance(action.blast_radius, dict) else {}
    radius_text = "\n".join(f"{key}: {value}" for key, value in radius.items()) or "not declared"
    arguments = json.dumps(masked_arguments(action), indent=2, sort_keys=True, default=str)
    return [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"*{fit(action.agent.slug, 150)}* wants to run "
                f"*{fit(action.tool, 150)}* · *{action.risk}* risk\n"
                + fit(action.summary or "(no summary)", 2000),
            },
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Agent*\n{fit(action.agent.slug, 500)}"},
                {"type": "mrkdwn", "text": f"*Tool*\n{fit(action.tool, 500)}"},
                {"type": "mrkdwn", "text": f"*Risk*\n{action.risk}"},
                {
                    "type": "mrkdwn",
                    "text": f"*Approvals needed*\n{max(1, action.required_approvals)}",
                },
            ],
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "*Blast radius*\n" + fit(radius_text, 1500)},
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*Arguments*\n```" + fit(arguments, SECTION_LIMIT - 30) + "```",
            },
        },
    ]


def pending_message(action: Action, *, may_approve: bool) -> dict[str, Any]:
    """The direct message about a pending ``action``: the card's essentials and, when Slack
    may decide it (``slack_refusal``), Approve (if this person may approve) and Reject;
    otherwise only a button that opens the card in Airlock."""
    elements: list[dict] = []
    decidable = slack_refusal(action) is None
    if decidable and may_approve:
        elements.append(
            {
                "type": "button",
                "action_id": APPROVE,
                "style": "primary",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": button_value(action),
            }
        )
    if decidable:
        elements.append(
            {
                "type": "button",
                "action_id": REJECT,
                "style": "danger",
                "text": {"type": "plain_text", "text": "Reject…"},
                "value": button_value(action),
            }
        )
    elements.append(
        {
            "type": "button",
            "action_id": OPEN,
            "text": {"type": "plain_text", "text": "Open in Airlock"},
            "url": card_link(action),
        }
    )
    note = (
        "Approve here, or open the card for everything the agent sent."
        if decidable
        else f"A {action.risk}-risk action is decided in Airlock (full card, second factor)."
    )
    return {
        "text": fallback_text(action),
        "blocks": [
            *_card_blocks(action),
            {"type": "actions", "block_id": "airlock_decision", "elements": elements},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"Action #{action.pk} · {note} "
                        + _link(card_link(action), "Open the card"),
                    }
                ],
            },
        ],
    }


def outcome_line(action: Action) -> str:
    """Who decided ``action`` and how it ended, in mrkdwn (escaped)."""
    decisions = list(action.decisions.select_related("reviewer").order_by("created_at", "id"))
    if action.status == Status.REJECTED:
        rejection = next((d for d in decisions if d.verdict == Decision.Verdict.REJECT), None)
        who = fit(rejection.reviewer.get_username(), 150) if rejection else "a reviewer"
        via = f" (via {rejection.channel})" if rejection and rejection.channel else ""
        return f":x: *Rejected* by {who}{via}: {fit(action.feedback, 1000)}"
    if action.status == Status.EXPIRED:
        return ":hourglass: *Expired* before a human decided."
    if action.status == Status.CANCELLED:
        return f":no_entry: *Cancelled*: {fit(action.feedback, 1000)}"
    if action.status == Status.PENDING:
        return ":hourglass_flowing_sand: *Pending*"
    approvers = [
        f"{fit(d.reviewer.get_username(), 150)}" + (f" (via {d.channel})" if d.channel else "")
        for d in decisions
        if d.verdict == Decision.Verdict.APPROVE
        and not d.voided
        and d.payload_hash == action.payload_hash
    ]
    line = f":white_check_mark: *Approved* by {', '.join(approvers) or 'policy'}"
    if action.status != Status.APPROVED:
        line += f" · now *{action.status}*"
    return line


def outcome_message(action: Action) -> dict[str, Any]:
    """The same message once ``action`` left pending: its outcome and who decided, the
    buttons removed (only the link to the card stays)."""
    return {
        "text": fit(f"[{action.status}] {action.agent.slug}: {action.tool}", 300),
        "blocks": [
            *_card_blocks(action),
            {"type": "section", "text": {"type": "mrkdwn", "text": outcome_line(action)}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"Action #{action.pk} · "
                        + _link(card_link(action), "Open the card"),
                    }
                ],
            },
        ],
    }


def reject_modal(action: Action, *, seen_hash: str, channel_id: str) -> dict[str, Any]:
    """The modal that asks why ``action`` is rejected; its submission carries the action,
    the payload hash the person saw and the conversation to answer in."""
    return {
        "type": "modal",
        "callback_id": REJECT_MODAL,
        "private_metadata": json.dumps(
            {"action": action.pk, "hash": seen_hash, "channel": channel_id}
        ),
        "title": {"type": "plain_text", "text": "Reject action"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"Reject *{fit(action.tool, 150)}* of *{fit(action.agent.slug, 150)}*"
                    f" (action #{action.pk})? Your reason goes back to the agent.",
                },
            },
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_INPUT,
                    "multiline": True,
                    "max_length": 2000,
                },
            },
        ],
    }
