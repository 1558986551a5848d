"""Canonical JSON and the SHA-256 digests built on it.

Approvals are bound to the exact payload through ``payload_hash``; agents can compute the
same digest: JSON with sorted keys, no insignificant whitespace, UTF-8, then SHA-256 hex.
"""

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def payload_hash(arguments: Any) -> str:
    """The digest an approval is bound to and an execution report must carry."""
    return sha256_hex(canonical_json(arguments))
