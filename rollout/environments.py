"""The installation's environments (``settings.AIRLOCK_ENVIRONMENTS``: sandbox, staging,
production by default) and how a name given by a person or an agent is read.

An agent token may be bound to one of them: the gate then takes the call's environment
from the token, never from what the agent declares. Names compare trimmed and
case-insensitively; a blank name means "not bound" (a token) or "every environment" (a
kill switch)."""

from __future__ import annotations

from typing import Any

from django.conf import settings


class UnknownEnvironment(ValueError):
    """A name that is not one of the installation's environments."""


def configured_environments() -> list[str]:
    """The environment names this installation knows, in configured order."""
    return list(settings.AIRLOCK_ENVIRONMENTS)


def normalized(name: Any) -> str:
    """``name`` as environments compare: trimmed, lowercase; "" for none."""
    return str(name or "").strip().lower()


def known_environment(name: Any) -> str:
    """``name`` normalised, or "" for a blank one; raises ``UnknownEnvironment`` (with a
    message naming the known ones) for a name the installation does not configure."""
    value = normalized(name)
    if value and value not in configured_environments():
        raise UnknownEnvironment(
            f"Unknown environment {str(name).strip()[:60]!r}; "
            f"use one of {', '.join(configured_environments())} (or none)."
        )
    return value


def environment_choices(blank_label: str) -> list[tuple[str, str]]:
    """Form choices: the blank one first (labelled ``blank_label``), then each name."""
    return [("", blank_label), *((name, name) for name in configured_environments())]
