"""People: the accounts behind the rights — reading who holds what (for the People page),
and disabling or re-enabling an account.

Disabling is immediate everywhere: the account is marked inactive (Django refuses inactive
users at every request and websocket connect), its sessions are deleted, and its personal
tokens are revoked (they also check the owner on every use). Per-agent grants stay, so
re-enabling restores the person as they were; they show as disabled on agent pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from guardian.models import UserObjectPermission

from audit import verbs
from audit.actor_context import recorded_by_caller
from audit.chain import Actor, append_event
from config.errors import Refused
from rollout import permissions as agent_perms
from rollout.access import RIGHT_PERMISSIONS
from rollout.models import Agent, PersonalToken
from rollout.personal_tokens import revoke_all_of

REASON_MAX = 300


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
    rights_of: dict[int, dict[str, list[str]]] = {}
    by_codename = {codename: right for right, codename in RIGHT_PERMISSIONS.items() if codename}
    slugs = dict(Agent.objects.values_list("pk", "slug"))
    for user_id, object_pk, codename in UserObjectPermission.objects.filter(
        user_id__in=ids,
        content_type=ContentType.objects.get_for_model(Agent),
        permission__codename__in=list(by_codename),
    ).values_list("user_id", "object_pk", "permission__codename"):
        slug = slugs.get(int(object_pk))
        if slug:
            rights_of.setdefault(user_id, {}).setdefault(slug, []).append(by_codename[codename])
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
            agent_rights=sorted(
                (slug, sorted(rights)) for slug, rights in rights_of.get(user.pk, {}).items()
            ),
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
    if not agent_perms.can_manage_people(actor):
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
