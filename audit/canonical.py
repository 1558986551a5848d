"""Canonical JSON and the SHA-256 digests built on it.

Approvals are bound to the exact payload through ``payload_hash``; agents can compute the
same digest: JSON with sorted keys, no insignificant whitespace, UTF-8, then SHA-256 hex.
"""

import hashlib
import json
from json.encoder import c_make_encoder, encode_basestring
from typing import Any


# The json module's C encoder, built once with the canonical options (sorted keys, no
# whitespace, UTF-8 as is, no NaN). ``json.dumps(value, sort_keys=True, separators=(",", ":"),
# ensure_ascii=False, allow_nan=False)`` builds a new one on every call, which is a large
# share of verifying a million events; the output is the same (tests/test_audit_export.py holds them equal).
def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


if c_make_encoder is not None:
    _encode = c_make_encoder(None, _refuse, encode_basestring, None, ":", ",", True, False, False)

    def canonical_json(value: Any) -> str:
        return "".join(_encode(value, 0))

else:  # pragma: no cover - CPython always has the C encoder
    _CANONICAL = json.JSONEncoder(
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )

    def canonical_json(value: Any) -> str:
        return _CANONICAL.encode(value)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def payload_hash(arguments: Any) -> str:
    """The digest an approval is bound to and an execution report must carry."""
    return sha256_hex(canonical_json(arguments))
