"""Personal API tokens: the write path (create, revoke, record a use) and the lookup.

A personal token (``alp_…``) acts as its owner narrowed by its scopes
(``accounts.permissions.TOKEN_SCOPES``); it is shown once and only its SHA-256 is kept. It
stops working when it expires, when it is revoked, and at once when its owner is disabled
(the lookup reads the owner's ``is_active`` on every request). Every use is audited
(``personal_token.used``) with the token's name."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import PersonalToken
from accounts.notices import owe_account_notice
from accounts.permissions import TOKEN_SCOPES
from audit import verbs
from audit.chain import Actor, append_event
from core.digests import token_digest
from core.errors import Refused

PERSONAL_TOKEN_PREFIX = "alp_"
NAME_MAX = 80
MAX_LIVE_TOKENS_PER_PERSON = 50


class PersonalTokenRefused(Refused):
    """A token request the rules refuse, with a stable ``code`` and field problems."""


@dataclass(frozen=True)
class PersonalTokenAuth:
    """``request.auth`` of a request made with a personal token: the token row and the
    scopes that narrow its owner (read by ``accounts.permissions.token_scopes``)."""

    token: PersonalToken
    airlock_token_scopes: frozenset[str]

    @property
    def name(self) -> str:
        return self.token.name


def new_personal_token() -> str:
    return PERSONAL_TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_personal_token(
    *, user: Any, name: str, scopes: Any, expires_in_days: int
) -> tuple[PersonalToken, str]:
    """Create a token for ``user`` and return (row, token); the token is never stored.
    Audits ``personal_token.created``; owes the person an email (naming the token by its
    name and prefix, never the token)."""
    name = str(name or "").strip()
    errors: dict[str, list[str]] = {}
    if not name or len(name) > NAME_MAX:
        errors["name"] = [f"A name of 1 to {NAME_MAX} characters."]
    if not isinstance(scopes, list | tuple | set | frozenset) or not scopes:
        errors["scopes"] = [f"Choose at least one of {', '.join(TOKEN_SCOPES)}."]
    else:
        unknown = sorted(str(scope) for scope in scopes if scope not in TOKEN_SCOPES)
        if unknown:
            errors["scopes"] = [f"Unknown scope(s): {', '.join(unknown)}."]
    longest = settings.PERSONAL_TOKEN_MAX_DAYS
    if (
        isinstance(expires_in_days, bool)
        or not isinstance(expires_in_days, int)
        or not 1 <= expires_in_days <= longest
    ):
        errors["expires_in_days"] = [f"From 1 to {longest} days."]
    if errors:
        raise PersonalTokenRefused("invalid", "The token is not valid.", fields=errors)
    token = new_personal_token()
    with transaction.atomic():
        live = PersonalToken.objects.filter(
            user=user, revoked_at__isnull=True, expires_at__gt=timezone.now()
        ).count()
        if live >= MAX_LIVE_TOKENS_PER_PERSON:
            raise PersonalTokenRefused(
                "too_many_tokens", f"At most {MAX_LIVE_TOKENS_PER_PERSON} live tokens per person."
            )
        record = PersonalToken.objects.create(
            user=user,
            name=name,
            prefix=token[:10],
            token_hash=token_digest(token),
            scopes=sorted(set(scopes)),
            expires_at=timezone.now() + timedelta(days=expires_in_days),
        )
        append_event(
            verb=verbs.PERSONAL_TOKEN_CREATED,
            actor=Actor.user(user),
            target_type="personal_token",
            target_id=record.pk,
            data={
                "name": record.name,
                "prefix": record.prefix,
                "scopes": record.scopes,
                "expires_at": record.expires_at.isoformat(),
            },
        )
        owe_account_notice(
            user=user,
            change=f"personal API token “{record.name}” ({record.prefix}…) was created, "
            f"with scopes {', '.join(record.scopes)}",
        )
    return record, token


def revoke_personal_token(*, token_id: int, actor: Any, reason: str = "") -> PersonalToken:
    """Revoke one token of ``actor`` (its owner) at once; revoking twice changes nothing.
    Audits ``personal_token.revoked``."""
    with transaction.atomic():
        record = PersonalToken.objects.select_for_update().filter(pk=token_id, user=actor).first()
        if record is None:
            raise PersonalTokenRefused("not_found", "No such token.")
        if record.revoked_at is None:
            _revoke_locked(record, Actor.user(actor), reason or "revoked by its owner")
    return record


def revoke_all_of(*, user: Any, actor: Actor, reason: str) -> int:
    """Revoke every live token of ``user`` (when they are disabled). Call inside the
    change's transaction. Audits ``personal_token.revoked`` for each."""
    records = PersonalToken.objects.select_for_update().filter(user=user, revoked_at__isnull=True)
    count = 0
    for record in records.order_by("pk"):
        _revoke_locked(record, actor, reason)
        count += 1
    return count


def _revoke_locked(record: PersonalToken, actor: Actor, reason: str) -> None:
    record.revoked_at = timezone.now()
    record.revoked_by = actor.name
    record.save(update_fields=["revoked_at", "revoked_by"])
    append_event(
        verb=verbs.PERSONAL_TOKEN_REVOKED,
        actor=actor,
        target_type="personal_token",
        target_id=record.pk,
        data={
            "name": record.name,
            "prefix": record.prefix,
            "owner": record.user.get_username(),
            "reason": reason,
        },
    )


def authenticate_personal_token(token: str) -> PersonalToken | None:
    """The live token row for ``token`` with its (active) owner, or None."""
    if not token.startswith(PERSONAL_TOKEN_PREFIX) or len(token) > 200:
        return None
    return (
        PersonalToken.objects.select_related("user")
        .filter(
            token_hash=token_digest(token),
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
            user__is_active=True,
        )
        .first()
    )


def record_use(record: PersonalToken, *, method: str, path: str) -> None:
    """Audit one use of ``record`` (``personal_token.used``, with the token's name) and
    mark it used: one small transaction, an UPDATE and the audit insert."""
    now = timezone.now()
    with transaction.atomic():
        PersonalToken.objects.filter(pk=record.pk).update(last_used_at=now)
        append_event(
            verb=verbs.PERSONAL_TOKEN_USED,
            actor=Actor.user(record.user),
            target_type="personal_token",
            target_id=record.pk,
            data={
                "name": record.name,
                "prefix": record.prefix,
                "method": method,
                "path": path[:300],
            },
        )
    record.last_used_at = now


def mark_stepped_up(record: PersonalToken) -> None:
    """A second-factor code came with a request made with this token."""
    now = timezone.now()
    PersonalToken.objects.filter(pk=record.pk).update(stepped_up_at=now)
    record.stepped_up_at = now


def tokens_of(user: Any) -> list[PersonalToken]:
    """``user``'s tokens, newest first, each with a ``state`` (live, expired, revoked)."""
    now = timezone.now()
    records = list(PersonalToken.objects.filter(user=user).order_by("-created_at")[:200])
    for record in records:
        if record.revoked_at is not None:
            record.state = "revoked"
        elif record.expires_at <= now:
            record.state = "expired"
        else:
            record.state = "live"
    return records
