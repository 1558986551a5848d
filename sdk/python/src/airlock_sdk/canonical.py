"""The digest approvals are bound to: SHA-256 hex of canonical JSON (sorted keys, no
insignificant whitespace, UTF-8). The same function as Airlock's, so an agent can check
that ``payload_hash`` matches the ``arguments`` it is about to execute."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def payload_hash(arguments: Any) -> str:
    return hashlib.sha256(canonical_json(arguments).encode("utf-8")).hexdigest()
