"""Telling a person that a credential of their account changed."""

from __future__ import annotations

from typing import Any

from core.links import public_link
from core.notices import owe_notice


def owe_account_notice(*, user: Any, change: str) -> int:
    """Tell ``user`` by email (their account's address only — never a chat channel) that a
    credential of their account changed: ``change`` says what, never the secret itself.
    Called inside the change's transaction; the row is delivered like any other email."""
    if not getattr(user, "email", ""):
        return 0
    return owe_notice(
        people={user},
        subject="Airlock: a credential of your account changed",
        line=(
            f"{user.get_username()}: {change}. If this was not you, change your password "
            "and tell an administrator at once."
        ),
        link=public_link("profile"),
        chat=False,
    )
