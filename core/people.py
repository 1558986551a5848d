"""Who counts as a person: the one check every permission, selector, socket and page asks.

A person is an authenticated, active user that is not an agent's principal. An agent's
principal (``rollout.authentication.AgentPrincipal``, ``is_agent = True``) is authenticated
but is never a person: it can never decide, govern or read the audit log. A disabled user
(``is_active`` False) is nobody, whatever permissions it still holds.

This module imports nothing of the project's apps.
"""

from __future__ import annotations

from typing import Any


def is_agent(user: Any) -> bool:
    """Whether ``user`` is an agent's principal (a request made with an agent token)."""
    return bool(getattr(user, "is_agent", False))


def is_active_person(user: Any) -> bool:
    """Whether ``user`` is an authenticated, active person (not an agent, not disabled)."""
    return bool(user and user.is_authenticated and user.is_active and not is_agent(user))
