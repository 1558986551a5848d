"""A person's display preferences: the home page ``/`` sends them to, and the lowest risk
of a new card their desktop notifications tell them about.

A preference changes only what the person sees first, never what they may do, so it is not
an audit event."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from accounts.models import DesktopNotificationChoice, HomeChoice
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


def desktop_notify_min_risk(user: Any, default: str) -> str:
    """The lowest risk ``user``'s desktop notifications announce; ``default`` when they
    chose none."""
    if not getattr(user, "pk", None):
        return default
    chosen = (
        DesktopNotificationChoice.objects.filter(user_id=user.pk)
        .values_list("min_risk", flat=True)
        .first()
    )
    return chosen or default


def choose_desktop_notify_min_risk(*, user: Any, min_risk: str, risks: Collection[str]) -> str:
    """Store ``min_risk`` as the lowest risk ``user``'s desktop notifications announce.
    ``risks`` are the risk levels (the caller's, lowest first); anything else is refused."""
    if min_risk not in risks:
        raise Refused(
            "invalid_risk",
            "Choose a risk level for desktop notifications.",
            400,
            {"min_risk": [f"Choose one of: {', '.join(risks)}."]},
        )
    DesktopNotificationChoice.objects.update_or_create(
        user_id=user.pk, defaults={"min_risk": min_risk}
    )
    return min_risk
