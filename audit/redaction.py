"""Redaction: secret-looking values masked in audit data and logs, and the marker that
replaces a payload after its retention period (``approvals.retention``). The chain keeps
only a payload's hash, so a redacted payload stays provable; readers (the trace, replay)
ask ``is_redacted`` to say so instead of showing the marker."""

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


# What a redacted JSON object / list holds instead of the payload.
REDACTED_OBJECT = {"_redacted": "retention"}
REDACTED_LIST = [REDACTED_OBJECT]


def is_redacted(value: Any) -> bool:
    """True for a payload that retention replaced."""
    return value in (REDACTED_OBJECT, REDACTED_LIST)
