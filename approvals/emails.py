"""Notification emails: one message per address listing everything owed to it (a plain-text
part and an HTML part), with each pending action's essentials and — for an action the
person may decide — their own Approve and Reject links.

Agent text is untrusted. The HTML part is a Django template (everything escaped); in both
parts a single-line field (the summary, the notification line) has its line breaks and
control characters folded into spaces, so an agent cannot start a line of its own that looks
like one of Airlock's ("Approve: https://…"). Arguments are masked for the recipient
(``approvals.masking``) and shown as JSON, which escapes line breaks inside values. The only
links are Airlock's own, built from ``AIRLOCK_PUBLIC_URL`` (``core.links``).

The links are made when the email is sent (``actions.issue_email_decision_links``, inside
the sending task's transaction), so they are bound to the payload the email shows, and the
tokens are never stored anywhere but in the email."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from approvals import actions
from approvals.masking import masked_arguments
from approvals.models import Action, Decision, Outbox
from approvals.states import Status
from core.links import public_link

# Line breaks (including Unicode's), other control characters and bidi overrides.
_NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")
MAX_LINE = 300
MAX_ARGUMENTS_CHARS = 4000


def one_line(text: Any, limit: int = MAX_LINE) -> str:
    """``text`` on one line (control characters and line breaks become a space), cut to
    ``limit`` characters."""
    folded = _NOT_ONE_LINE.sub(" ", str(text or "")).strip()
    return folded if len(folded) <= limit else folded[: limit - 1] + "…"


def _arguments_text(action: Action, person: Any) -> str:
    text = json.dumps(
        masked_arguments(action, person), indent=2, sort_keys=True, ensure_ascii=False, default=str
    )
    # JSON escapes \n but not these two, which some mail readers break lines at.
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    if len(text) > MAX_ARGUMENTS_CHARS:
        text = text[:MAX_ARGUMENTS_CHARS] + "\n… (cut: open the card for all of it)"
    return text


def _blast_radius(action: Action) -> list[tuple[str, str]]:
    blast = action.blast_radius if isinstance(action.blast_radius, dict) else {}
    facts = []
    if blast.get("environment"):
        facts.append(("Environment", one_line(blast["environment"], 80)))
    if isinstance(blast.get("reversible"), bool):
        facts.append(("Reversible", "yes" if blast["reversible"] else "no"))
    for key, label in (("records_affected", "Records"), ("users_affected", "Users")):
        if blast.get(key) is not None:
            facts.append((label, one_line(blast[key], 40)))
    amount = blast.get("amount")
    if isinstance(amount, dict) and amount.get("value") is not None:
        facts.append(
            ("Amount", one_line(f"{amount.get('value')} {amount.get('currency') or ''}", 60))
        )
    if isinstance(blast.get("systems"), list) and blast["systems"]:
        facts.append(("Systems", one_line(", ".join(map(str, blast["systems"])), 200)))
    return facts


@dataclass
class EmailItem:
    """One line of a notification email; ``action`` set for an action's notification."""

    line: str
    link: str
    action: Action | None = None
    status: str = ""
    summary: str = ""
    arguments: str = ""
    blast_radius: list[tuple[str, str]] = field(default_factory=list)
    approvals: int = 0
    approve_url: str = ""
    reject_url: str = ""
    # Why there is no Approve link for this person (e.g. they requested the action).
    cannot_approve: str = ""

    @property
    def arguments_indented(self) -> str:
        """The arguments for the plain-text part, each line indented under its heading."""
        return "\n".join(f"    {line}" for line in self.arguments.splitlines())

    @property
    def is_pending(self) -> bool:
        return self.status == Status.PENDING


def _item(row: Outbox, person: Any, issued: dict[tuple[int, int], dict[str, str]]) -> EmailItem:
    item = EmailItem(
        line=one_line(row.payload.get("line", "")), link=str(row.payload.get("link", ""))
    )
    action = row.action
    if action is None or person is None:
        return item
    item.action, item.status = action, action.status
    item.summary = one_line(action.summary, 500)
    item.arguments = _arguments_text(action, person)
    item.blast_radius = _blast_radius(action)
    item.approvals = len(actions.current_approvals(action))
    if action.status != Status.PENDING:
        return item
    # One pair of links per action and person in an email, however many of its rows name
    # the action (a new card and its escalation sent together).
    key = (action.pk, person.pk)
    if key not in issued:
        issued[key] = actions.issue_email_decision_links(action=action, person=person)
    tokens = issued[key]
    if Decision.Verdict.APPROVE in tokens:
        item.approve_url = public_link(
            "email-decision", action.pk, tokens[Decision.Verdict.APPROVE]
        )
    elif Decision.Verdict.REJECT in tokens:
        refusal = actions.decision_refusal(action, person, Decision.Verdict.APPROVE)
        item.cannot_approve = refusal.detail if refusal else ""
    if Decision.Verdict.REJECT in tokens:
        item.reject_url = public_link("email-decision", action.pk, tokens[Decision.Verdict.REJECT])
    return item


def _people(rows: list[Outbox]) -> dict[int, Any]:
    ids = {row.payload.get("person_id") for row in rows} - {None}
    users = get_user_model().objects.filter(pk__in=ids, is_active=True)
    return {user.pk: user for user in users}


def notification_email(destination: str, rows: list[Outbox]) -> EmailMultiAlternatives:
    """The one email owed to ``destination`` for its outbox ``rows`` (loaded with their
    actions and agents), issuing each pending action's decision links for the row's person
    on the way (``actions.issue_email_decision_links``: call it inside the transaction that
    marks the rows sent)."""
    subjects = sorted({row.payload.get("subject", "Airlock") for row in rows})
    subject = subjects[0] if len(subjects) == 1 else f"Airlock: {len(rows)} updates"
    people = _people(rows)
    issued: dict[tuple[int, int], dict[str, str]] = {}
    items = [_item(row, people.get(row.payload.get("person_id")), issued) for row in rows]
    context = {"subject": subject, "items": items, "queue_url": public_link("queue")}
    message = EmailMultiAlternatives(
        subject=one_line(subject, 200),
        body=render_to_string("approvals/email/notification.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[destination],
    )
    message.attach_alternative(
        render_to_string("approvals/email/notification.html", context), "text/html"
    )
    return message
