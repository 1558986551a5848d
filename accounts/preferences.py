"""A person's display preferences: today, the home page ``/`` sends them to.

A preference changes only what the person sees first, never what they may do, so it is not
an audit event."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from accounts.models import HomeChoice
from core.errors import Refused


def chosen_home(user: Any) -> str:
    """The home key ``user`` chose, or "" when they chose none."""
    if not getattr(user, "pk", None):
        return ""
    return HomeChoice.objects.filter(user_id=user.pk).values_list("home", flat=True).first() or ""


def choose_home(*, user: Any, home: str, allowed: Collection[str]) -> str:
    """Store ``home`` as ``user``'s home; "" forgets the choice (the default by role
    applies). ``allowed`` are the homes the person may open now (the caller asks the
    permissions); anything else is refused."""
    if home == "":
        HomeChoice.objects.filter(user_id=user.pk).delete()
        return ""
    if home not in allowed:
        raise Refused(
            "home_not_allowed",
            "You cannot open that page, so it cannot be your home.",
            403,
            {"home": [f"Choose one of: {', '.join(allowed)}."]},
        )
    HomeChoice.objects.update_or_create(user_id=user.pk, defaults={"home": home})
    return home
