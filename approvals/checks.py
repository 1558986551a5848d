"""``manage.py check --deploy`` warnings about notifications that would never reach anyone:
mail kept on this machine (a file, console, in-memory or dummy backend) and links built from
the development default of ``AIRLOCK_PUBLIC_URL``. Deploy-only: the embedded setup
(``scripts/run``) writes mail to files on purpose."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register

LOCAL_MAIL_BACKENDS = {
    "django.core.mail.backends.filebased.EmailBackend": "written to files",
    "django.core.mail.backends.console.EmailBackend": "printed to the console",
    "django.core.mail.backends.locmem.EmailBackend": "kept in memory",
    "django.core.mail.backends.dummy.EmailBackend": "thrown away",
}
DEVELOPMENT_PUBLIC_URL = "http://127.0.0.1:8000"


@register(Tags.security, deploy=True)
def notifications_reach_people(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """Warn when production email stays on this machine or its links lead to localhost."""
    problems = []
    where = LOCAL_MAIL_BACKENDS.get(settings.EMAIL_BACKEND)
    if where:
        problems.append(
            Warning(
                f"Outgoing email is {where} ({settings.EMAIL_BACKEND}): notifications and "
                "their Approve / Reject links never reach anyone.",
                hint="Set EMAIL_URL (e.g. smtp://user:pass@host:587/?tls=True).",
                id="airlock.W001",
            )
        )
    if settings.AIRLOCK_PUBLIC_URL.rstrip("/") == DEVELOPMENT_PUBLIC_URL:
        problems.append(
            Warning(
                f"AIRLOCK_PUBLIC_URL is the development default ({DEVELOPMENT_PUBLIC_URL}): "
                "links in email, chat and webhooks would point at the reader's own machine.",
                hint="Set AIRLOCK_PUBLIC_URL to the https:// address people reach Airlock at.",
                id="airlock.W002",
            )
        )
    return problems
