"""The one digest secret tokens are stored and looked up by.

Agent tokens (``alk_…``), personal tokens (``alp_…``) and drill probe tokens are shown once
and kept only as ``token_digest(token)``: SHA-256 of the token's UTF-8 bytes, lower-case hex
(64 characters). Stored rows are matched by this exact string, so it must never change: a
token issued before must keep authenticating.

This module imports nothing of the project's apps.
"""

from __future__ import annotations

import hashlib


def token_digest(token: str) -> str:
    """The stored form of a secret bearer token (SHA-256, lower-case hex)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
