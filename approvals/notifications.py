"""Telling people: who should hear about an action, and the outbox rows that owe it.

Rows are written inside the change's transaction; ``approvals.tasks.send_notification_batches``
delivers them grouped per address (one email or chat message listing everything that piled
up), so a burst of 100 actions is one message per reviewer, not 100. An email about a
pending action the person may decide carries their own Approve / Reject links
(``approvals.emails``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.db.models import Q
from guardian.shortcuts import get_users_with_perms

from approvals.models import Action, NotificationRoute, Outbox
from core.links import public_link
from rollout.models import RISK_ORDER, Agent


def _users_holding(perm_codename: str, agent: Agent | None) -> set[Any]:
    """Active users holding ``rollout.<perm_codename>`` for all agents, or for ``agent``."""
    perm = Permission.objects.get(content_type__app_label="rollout", codename=perm_codename)
    users = set(
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__permissions=perm) | Q(user_permissions=perm))
        .distinct()
    )
    if agent is not None:
        users |= {
            u
            for u in get_users_with_perms(
                agent, only_with_perms_in=[perm_codename], with_group_users=True
            )
            if u.is_active
        }
    return users


def reviewers_of(agent: Agent) -> set[Any]:
    return _users_holding("review_agent", agent)


def escalation_people(agent: Agent) -> set[Any]:
    """The agent's escalation group and named users; without a route, those who may give
    the critical approval (the senior reviewers)."""
    route = NotificationRoute.objects.filter(agent=agent).first()
    people: set[Any] = set()
    if route:
        people |= set(route.escalation_users.filter(is_active=True))
        if route.escalation_group_id:
            people |= set(route.escalation_group.user_set.filter(is_active=True))
    return people or _users_holding("critical_approve_agent", agent)


def chat_urls(agent: Agent | None) -> list[str]:
    urls = []
    if agent is not None:
        route = NotificationRoute.objects.filter(agent=agent).first()
        if route and route.chat_webhook_url:
            urls.append(route.chat_webhook_url)
    if settings.NOTIFY_CHAT_WEBHOOK_URL:
        urls.append(settings.NOTIFY_CHAT_WEBHOOK_URL)
    return urls


def owe(
    *,
    people: set[Any],
    agent: Agent | None,
    action: Action | None,
    subject: str,
    line: str,
    link: str,
) -> int:
    """Write one outbox row per email address and chat URL; queue a batch send on commit."""
    rows = [
        Outbox(
            kind=Outbox.Kind.EMAIL,
            action=action,
            agent=agent,
            destination=person.email,
            # Whose address it is: an email about a pending action carries that person's
            # own Approve / Reject links (approvals.emails), made when it is sent.
            payload={"subject": subject, "line": line, "link": link, "person_id": person.pk},
        )
        for person in sorted(people, key=lambda p: p.pk)
        if person.email
    ]
    rows += [
        Outbox(
            kind=Outbox.Kind.CHAT,
            action=action,
            agent=agent,
            destination=url,
            payload={"subject": subject, "line": line, "link": link},
        )
        for url in chat_urls(agent)
    ]
    if rows:
        Outbox.objects.bulk_create(rows)
        from approvals.tasks import enqueue_notification_batches

        transaction.on_commit(enqueue_notification_batches)
    return len(rows)


def slack_escape(text: str) -> str:
    """``text`` as Slack-compatible chat shows it literally: ``&``, ``<`` and ``>`` become
    ``&amp;``, ``&lt;`` and ``&gt;`` (Slack's escaping rules), so no ``<!channel>`` ping,
    ``<@user>`` mention or disguised link ``<https://evil|click>`` survives."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chat_message(subject: str, items: list[Outbox]) -> dict[str, str]:
    """The chat webhook's JSON for a batch. Every text is escaped — agents write the
    summaries, tools and reasons in it; the only links are the ones Airlock builds
    (``<link|open in Airlock>``) from its own ``AIRLOCK_PUBLIC_URL``."""
    lines = []
    for item in items:
        line = f"- {slack_escape(item.payload.get('line', ''))}"
        link = str(item.payload.get("link", ""))
        if link:
            # Built by Airlock (card_link or /incidents); its characters are escaped too
            # and a ``|`` could not end the URL early.
            line += f"\n  <{slack_escape(link).replace('|', '%7C')}|open in Airlock>"
        lines.append(line)
    return {"text": f"*{slack_escape(subject)}*\n" + "\n".join(lines)}


def card_link(action: Action) -> str:
    return public_link("action-detail", action.pk)


def owe_new_pending(action: Action) -> None:
    """A pending action at or above ``NOTIFY_MIN_RISK`` tells the agent's reviewers."""
    if RISK_ORDER.index(action.risk) < RISK_ORDER.index(settings.NOTIFY_MIN_RISK):
        return
    owe(
        people=reviewers_of(action.agent),
        agent=action.agent,
        action=action,
        subject="Airlock: actions wait for your decision",
        line=f"[{action.risk}] {action.agent.slug} wants to run {action.tool}: {action.summary[:200]}",
        link=card_link(action),
    )


def owe_escalation(action: Action) -> None:
    owe(
        people=escalation_people(action.agent),
        agent=action.agent,
        action=action,
        subject="Airlock: escalated actions are running out of time",
        line=f"[{action.risk}] {action.agent.slug} · {action.tool} expires at {action.expires_at:%H:%M UTC} undecided",
        link=card_link(action),
    )


def owe_kill_switch(switch: Any, change: str) -> None:
    agent = Agent.objects.filter(slug=switch.target).first() if switch.scope == "agent" else None
    people = reviewers_of(agent) if agent else _users_holding("review_agent", None)
    people |= _users_holding("kill_agent", agent)
    owe(
        people=people,
        agent=agent,
        action=None,
        subject=f"Airlock: kill switch {change}",
        line=(
            f"Kill switch {change} on {switch.scope} {switch.target or ''}"
            f"{f' in {switch.environment}' if switch.environment else ''}: {switch.reason}"
        ),
        link=public_link("incidents"),
    )


def owe_installation_notice(
    *, people: set[Any], subject: str, line: str, link: str, chat: bool
) -> int:
    """``core.notices.owe_notice``'s handler: a notice about no agent or action, by email to
    ``people`` and, when ``chat``, to the installation-wide chat webhook."""
    if chat:
        return owe(people=people, agent=None, action=None, subject=subject, line=line, link=link)
    rows = [
        Outbox(
            kind=Outbox.Kind.EMAIL,
            destination=person.email,
            payload={"subject": subject, "line": line, "link": link},
        )
        for person in sorted(people, key=lambda p: p.pk)
        if person.email
    ]
    if rows:
        Outbox.objects.bulk_create(rows)
        from approvals.tasks import enqueue_notification_batches

        transaction.on_commit(enqueue_notification_batches)
    return len(rows)
