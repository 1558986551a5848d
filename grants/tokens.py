"""Execution grants as JWS compact tokens (RFC 7515), signed with EdDSA / Ed25519.

A grant says: this action (``sub``) of this agent may run this tool with exactly the
arguments whose canonical hash is ``payload_hash``, in environment ``env``, until ``exp``.
Tool services verify it offline with the published key set (``airlock_sdk.grants``) and,
for once-only use, online (``POST /api/v1/grants/verify``). The claims are built and stored
by the action's write path; this module only signs and checks signatures.
"""

from __future__ import annotations

from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from grants import keys
from grants.models import GrantKey

GRANT_TOKEN_TYPE = "airlock-grant+jwt"
ALGORITHM = "EdDSA"
# Every claim a grant carries; a token missing one is not a grant.
CLAIMS = ("iss", "jti", "sub", "agent", "tool", "payload_hash", "obo", "env", "pv", "iat", "exp")
# PyJWT's "require" treats a null claim as missing; ``obo``, ``env`` and ``pv`` may be null,
# so their presence is checked separately.
_NEVER_NULL = ("iss", "jti", "sub", "agent", "tool", "payload_hash", "iat", "exp")


class InvalidGrant(Exception):
    """A token that is not a valid grant of this installation; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def sign_grant(claims: dict[str, Any]) -> str:
    """The compact JWS of ``claims`` under the current signing key (``kid`` in the header)."""
    missing = [name for name in CLAIMS if name not in claims]
    if missing:
        raise ValueError(f"grant claims missing: {', '.join(missing)}")
    kid, private = keys.signing_key()
    return jwt.encode(
        claims, private, algorithm=ALGORITHM, headers={"kid": kid, "typ": GRANT_TOKEN_TYPE}
    )


def _public_key(kid: str) -> Ed25519PublicKey:
    row = next((row for row in keys.published_keys() if row.kid == kid), None)
    if row is None:
        known = GrantKey.objects.filter(kid=kid).exists()
        raise InvalidGrant(
            "unknown_key",
            f"grant signed with key {kid!r}, which is "
            + ("retired and no longer valid" if known else "not a key of this installation"),
        )
    return jwt.PyJWK(keys.jwk(row)).key


def read_grant(token: str, *, verify_expiry: bool = True) -> dict[str, Any]:
    """The claims of a grant this installation signed. Raises ``InvalidGrant`` (codes:
    ``malformed``, ``unknown_key``, ``bad_signature``, ``expired``)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidGrant("malformed", "not a JWS compact token") from exc
    if header.get("alg") != ALGORITHM or not isinstance(header.get("kid"), str):
        raise InvalidGrant("malformed", "a grant is signed with EdDSA and names its key (kid)")
    public = _public_key(header["kid"])
    try:
        claims = jwt.decode(
            token,
            public,
            algorithms=[ALGORITHM],
            options={
                "require": list(_NEVER_NULL),
                "verify_exp": verify_expiry,
                "verify_aud": False,
            },
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidGrant("expired", "the grant has expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise InvalidGrant("bad_signature", "the grant's signature does not hold") from exc
    except jwt.PyJWTError as exc:
        raise InvalidGrant("malformed", f"not a grant: {exc}") from exc
    missing = [name for name in CLAIMS if name not in claims]
    if missing:
        raise InvalidGrant("malformed", f"not a grant: missing {', '.join(missing)}")
    return claims
