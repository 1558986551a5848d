"""Agent bearer tokens: generated here, stored as SHA-256, looked up by digest."""

import hashlib
import secrets

TOKEN_PREFIX = "alk_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
