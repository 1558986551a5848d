"""Links to Airlock that leave it — in email, chat messages and webhooks — built in one place
from ``AIRLOCK_PUBLIC_URL``, the address people and agents reach Airlock at (not the host a
request happened to come in on: a notification is written by a worker, with no request).

This module imports nothing of the project's apps."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse


def public_url(path: str) -> str:
    """``path`` (``/actions/7``) as an absolute link under ``AIRLOCK_PUBLIC_URL``."""
    return f"{settings.AIRLOCK_PUBLIC_URL.rstrip('/')}/{path.lstrip('/')}"


def public_link(view_name: str, *args: object) -> str:
    """The absolute link to the URL named ``view_name`` (``reverse``) with ``args``."""
    return public_url(reverse(view_name, args=args))
