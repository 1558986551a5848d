"""Masking of secret-looking values in audit data and logs."""

import re
from typing import Any

REDACTED = "[redacted]"
SECRET_KEY_PATTERN = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|private[_-]?key|credential|authorization|cookie|session)",
    re.IGNORECASE,
)


def redact(value: Any) -> Any:
    """A copy of ``value`` where every dict entry whose key looks like a secret is masked."""
    if isinstance(value, dict):
        return {
            key: (REDACTED if SECRET_KEY_PATTERN.search(str(key)) else redact(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value
