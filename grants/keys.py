"""Signing keys for execution grants: made, encrypted at rest, rotated, published.

- The private key is stored encrypted with a Fernet key derived (HKDF-SHA256) from
  ``SECRET_KEY``; keys in ``SECRET_KEY_FALLBACKS`` still decrypt, so rotating SECRET_KEY
  the Django way does not strand the signing key.
- The first grant makes the first key; ``manage.py grant_keys rotate`` makes a new one and
  retires the old, audited in the same transaction.
- A retired key is published (``/.well-known/airlock-grant-keys.json``) until every grant it
  may have signed has expired: ``GRANT_TTL_SECONDS`` plus the time a process may go on
  using its cached copy (``SIGNING_KEY_CACHE_SECONDS``).
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from datetime import timedelta
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audit import verbs
from audit.chain import Actor, append_event
from grants.models import GrantKey

# How long a process signs with the key it read before looking again: a rotation in another
# process is picked up within this time (the old key stays published for it).
SIGNING_KEY_CACHE_SECONDS = 30.0

_HKDF_INFO = b"airlock grant signing keys v1"


class GrantKeyError(Exception):
    """A signing key cannot be read (e.g. SECRET_KEY changed without a fallback)."""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _fernet_for(secret: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def _fernet() -> MultiFernet:
    # The current SECRET_KEY encrypts; the fallbacks only decrypt.
    secrets_in_order = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return MultiFernet([_fernet_for(secret) for secret in secrets_in_order])


def _new_key_row() -> GrantKey:
    private = Ed25519PrivateKey.generate()
    raw_private = private.private_bytes_raw()
    raw_public = private.public_key().public_bytes_raw()
    return GrantKey(
        kid=f"grant-{timezone.now():%Y%m%d}-{secrets.token_hex(4)}",
        public_x=_b64url(raw_public),
        private_encrypted=_fernet().encrypt(raw_private).decode("ascii"),
    )


def _private_key(row: GrantKey) -> Ed25519PrivateKey:
    try:
        raw = _fernet().decrypt(row.private_encrypted.encode("ascii"))
    except InvalidToken as exc:
        raise GrantKeyError(
            f"grant signing key {row.kid} cannot be decrypted: SECRET_KEY changed and the old "
            "one is not in SECRET_KEY_FALLBACKS (rotate with `manage.py grant_keys rotate`)"
        ) from exc
    return Ed25519PrivateKey.from_private_bytes(raw)


_cache_lock = threading.Lock()
_cached: tuple[float, str, Ed25519PrivateKey] | None = None


def forget_cached_key() -> None:
    """Drop this process's copy of the signing key (tests; after a rotation here)."""
    global _cached
    with _cache_lock:
        _cached = None


def _signing_row() -> GrantKey:
    row = GrantKey.objects.filter(signing=True).first()
    if row is not None:
        return row
    # The first grant of an installation makes its first key (not audited: nobody chose it;
    # rotations are). It runs inside the decision's transaction, so it takes no audit chain
    # lock; two processes doing it at once both insert, the partial unique index keeps one,
    # the loser reads the winner's.
    try:
        with transaction.atomic():
            row = _new_key_row()
            row.save()
            return row
    except IntegrityError:
        return GrantKey.objects.get(signing=True)


def signing_key() -> tuple[str, Ed25519PrivateKey]:
    """The key id and private key grants are signed with now (cached per process for
    ``SIGNING_KEY_CACHE_SECONDS``, and only once the key's row is committed: a key made in a
    transaction that rolls back must not sign anything else)."""
    global _cached
    now = time.monotonic()
    with _cache_lock:
        if _cached is not None and now - _cached[0] < SIGNING_KEY_CACHE_SECONDS:
            return _cached[1], _cached[2]
    row = _signing_row()
    key = _private_key(row)

    def remember() -> None:
        global _cached
        with _cache_lock:
            _cached = (now, row.kid, key)

    if connection.in_atomic_block:
        transaction.on_commit(remember)
    else:
        remember()
    return row.kid, key


def rotate(*, actor: Actor) -> GrantKey:
    """Make a new signing key and retire the current one (kept published until its grants
    expire). Audits ``grant_key.rotated``. Returns the new key."""
    with transaction.atomic():
        old = list(GrantKey.objects.select_for_update().filter(signing=True))
        now = timezone.now()
        for row in old:
            row.signing = False
            row.retired_at = now
            row.save(update_fields=["signing", "retired_at"])
        new = _new_key_row()
        new.save()
        append_event(
            verb=verbs.GRANT_KEY_ROTATED,
            actor=actor,
            target_type="grant_key",
            target_id=new.kid,
            data={"kid": new.kid, "retired": [row.kid for row in old]},
        )
    forget_cached_key()
    return new


def published_until(row: GrantKey) -> Any:
    """When a retired key stops being published (None: the signing key, published)."""
    if row.retired_at is None:
        return None
    return row.retired_at + timedelta(
        seconds=settings.GRANT_TTL_SECONDS + SIGNING_KEY_CACHE_SECONDS
    )


def published_keys() -> list[GrantKey]:
    """The signing key and every retired key some unexpired grant may still carry."""
    now = timezone.now()
    return [
        row
        for row in GrantKey.objects.all()
        if row.retired_at is None or published_until(row) > now
    ]


def jwk(row: GrantKey) -> dict[str, str]:
    """The public key as a JWK (RFC 8037, OKP / Ed25519)."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": row.public_x,
        "kid": row.kid,
        "alg": "EdDSA",
        "use": "sig",
    }


def key_set() -> dict[str, list[dict[str, str]]]:
    """The JWK set a tool service verifies grants with. Never empty: a service that reads it
    before the first grant is issued gets the key that will sign it."""
    rows = published_keys()
    if not any(row.signing for row in rows):
        signing_key()
        rows = published_keys()
    return {"keys": [jwk(row) for row in rows]}
