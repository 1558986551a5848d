"""Agent bearer tokens: generated here, stored as ``core.digests.token_digest``, looked up
by it."""

import secrets

TOKEN_PREFIX = "alk_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)
