"""Tool services' credentials: made, revoked, authenticated. The one write path for
``ServiceToken``; every change is audited in its transaction."""

from __future__ import annotations

import secrets

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import verbs
from audit.chain import Actor, append_event
from core.digests import token_digest
from core.errors import Refused
from grants.models import ServiceToken

SERVICE_TOKEN_PREFIX = "als_"


class ServiceTokenRefused(Refused):
    pass


def issue_service_token(*, name: str, actor: Actor) -> tuple[ServiceToken, str]:
    """Make a token for the tool service ``name`` (unique). Audits ``service_token.issued``.
    Returns the record and the token, shown once."""
    name = (name or "").strip()
    if not name or len(name) > 80:
        raise ServiceTokenRefused(
            "invalid",
            "A service token needs a name of 1 to 80 characters.",
            400,
            {"name": ["1 to 80 characters."]},
        )
    token = SERVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            record = ServiceToken.objects.create(
                name=name,
                prefix=token[:12],
                token_hash=token_digest(token),
                created_by=str(actor),
            )
            append_event(
                verb=verbs.SERVICE_TOKEN_ISSUED,
                actor=actor,
                target_type="service_token",
                target_id=record.pk,
                data={"name": name, "prefix": record.prefix},
            )
    except IntegrityError as exc:
        raise ServiceTokenRefused(
            "name_taken", f"A service token named {name!r} exists: revoke it first.", 409
        ) from exc
    return record, token


def revoke_service_token(*, name: str, actor: Actor) -> ServiceToken:
    """Revoke the live token of ``name`` at once. Audits ``service_token.revoked``."""
    with transaction.atomic():
        record = (
            ServiceToken.objects.select_for_update()
            .filter(name=name, revoked_at__isnull=True)
            .first()
        )
        if record is None:
            raise ServiceTokenRefused("not_found", f"No live service token named {name!r}.", 404)
        record.revoked_at = timezone.now()
        # A revoked name may be issued again (the unique name belongs to live tokens).
        record.name = f"{record.name} (revoked {record.revoked_at:%Y-%m-%d %H:%M:%S})"[:80]
        record.save(update_fields=["revoked_at", "name"])
        append_event(
            verb=verbs.SERVICE_TOKEN_REVOKED,
            actor=actor,
            target_type="service_token",
            target_id=record.pk,
            data={"name": name, "prefix": record.prefix},
        )
    return record


def authenticate_service_token(token: str) -> ServiceToken | None:
    """The live record of ``token`` or None (marks it used at most once a minute)."""
    record = ServiceToken.objects.filter(
        token_hash=token_digest(token), revoked_at__isnull=True
    ).first()
    if record is None:
        return None
    now = timezone.now()
    if record.last_used_at is None or (now - record.last_used_at).total_seconds() > 60:
        ServiceToken.objects.filter(pk=record.pk).update(last_used_at=now)
    return record
