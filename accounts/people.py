"""People: the accounts behind the rights — reading who holds what (for the People page),
and disabling or re-enabling an account.

Disabling is immediate everywhere: the account is marked inactive (Django refuses inactive
users at every request and websocket connect), its sessions are deleted, and its personal
tokens are revoked (they also check the owner on every use). Per-agent grants stay, so
re-enabling restores the person as they were; they show as disabled on agent pages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import PersonalToken
from accounts.permissions import can_manage_people
from accounts.personal_tokens import revoke_all_of
from audit import verbs
from audit.actor_context import recorded_by_caller
from audit.chain import Actor, append_event
from core.errors import Refused

REASON_MAX = 300

# The People page's per-agent rights: which rights each person holds on which agent is
# rollout's knowledge (its agents and their permissions), so rollout registers the reader at
# start-up (``rollout.apps``) and accounts imports no domain app. A reader takes user ids and
# answers {user id: [(agent slug, [rights])]}.
AgentRightsReader = Callable[[list[int]], dict[int, list[tuple[str, list[str]]]]]
_agent_rights_readers: list[AgentRightsReader] = []


def register_agent_rights_reader(reader: AgentRightsReader) -> None:
    """Set the reader of the People page's per-agent rights column (one; the last wins)."""
    _agent_rights_readers[:] = [reader]


class PeopleRefused(Refused):
    """A change to a person's account the rules refuse."""


@dataclass
class PersonRow:
    """One person on the People page."""

    user: Any
    roles: list[str]
    agent_rights: list[tuple[str, list[str]]] = field(default_factory=list)  # (slug, rights)
    two_factor: bool = False
    live_tokens: int = 0


def people_rows() -> list[PersonRow]:
    """Every account with its roles, per-agent rights, second factor and live tokens — in a
    fixed number of queries."""
    users = list(get_user_model().objects.order_by("username").prefetch_related("groups")[:1000])
    ids = [user.pk for user in users]
    rights_of: dict[int, list[tuple[str, list[str]]]] = {}
    for reader in _agent_rights_readers:
        rights_of = reader(ids)
    enrolled = set(
        TOTPDevice.objects.filter(user_id__in=ids, confirmed=True).values_list("user_id", flat=True)
    )
    tokens: dict[int, int] = {}
    for user_id in PersonalToken.objects.filter(
        user_id__in=ids, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).values_list("user_id", flat=True):
        tokens[user_id] = tokens.get(user_id, 0) + 1
    return [
        PersonRow(
            user=user,
            roles=sorted(group.name for group in user.groups.all())
            + (["superuser"] if user.is_superuser else []),
            agent_rights=rights_of.get(user.pk, []),
            two_factor=user.pk in enrolled,
            live_tokens=tokens.get(user.pk, 0),
        )
        for user in users
    ]


def _lock_person(user_id: int) -> Any:
    person = get_user_model().objects.select_for_update().filter(pk=user_id).first()
    if person is None:
        raise PeopleRefused("not_found", "No such person.", 404)
    return person


def _check_manager(actor: Any, person: Any) -> None:
    if not can_manage_people(actor):
        raise PeopleRefused("permission_denied", "You may not manage accounts.", 403)
    if person.is_superuser and not actor.is_superuser:
        raise PeopleRefused(
            "permission_denied", "Only a superuser may disable or enable a superuser.", 403
        )


def end_sessions_of(user: Any) -> int:
    """Delete every live session of ``user`` (database sessions are decoded to find theirs;
    the table holds only unexpired sessions worth scanning)."""
    ended = 0
    user_id = str(user.pk)
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == user_id:
            session.delete()
            ended += 1
    return ended


def disable_user(*, actor: Any, user_id: int, reason: str = "") -> Any:
    """Disable an account at once: inactive, sessions ended, personal tokens revoked.
    Nobody disables themselves. Audits ``user.disabled`` (and each token's revocation)."""
    reason = str(reason or "").strip()[:REASON_MAX]
    with transaction.atomic():
        person = _lock_person(user_id)
        _check_manager(actor, person)
        if person.pk == actor.pk:
            raise PeopleRefused("own_account", "You cannot disable your own account.", 403)
        if not person.is_active:
            return person
        person.is_active = False
        with recorded_by_caller():  # user.disabled below says it
            person.save(update_fields=["is_active"])
        audit_actor = Actor.user(actor)
        revoked = revoke_all_of(
            user=person, actor=audit_actor, reason=f"account disabled: {reason}".strip(": ")
        )
        signed_out = end_sessions_of(person)
        append_event(
            verb=verbs.USER_DISABLED,
            actor=audit_actor,
            target_type="user",
            target_id=person.pk,
            data={
                "username": person.get_username(),
                "reason": reason,
                "signed_out": signed_out,
                "revoked": revoked,
            },
        )
    return person


def enable_user(*, actor: Any, user_id: int, reason: str = "") -> Any:
    """Re-enable a disabled account (its revoked tokens stay revoked). Audits
    ``user.enabled``."""
    reason = str(reason or "").strip()[:REASON_MAX]
    with transaction.atomic():
        person = _lock_person(user_id)
        _check_manager(actor, person)
        if person.is_active:
            return person
        person.is_active = True
        with recorded_by_caller():  # user.enabled below says it
            person.save(update_fields=["is_active"])
        append_event(
            verb=verbs.USER_ENABLED,
            actor=Actor.user(actor),
            target_type="user",
            target_id=person.pk,
            data={"username": person.get_username(), "reason": reason},
        )
    return person
