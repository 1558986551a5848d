"""``manage.py check --deploy`` warnings about notifications that would never reach anyone:
mail kept on this machine (a file, console, in-memory or dummy backend) and links built from
the development default of ``AIRLOCK_PUBLIC_URL``. Deploy-only: the embedded setup
(``scripts/run``) writes mail to files on purpose."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register
from django.core.checks.security import csrf as csrf_checks
from django.core.checks.security import sessions as sessions_checks
from django.test.utils import override_settings
from django.utils.module_loading import import_string

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


# Django's session and CSRF deploy checks find their middleware by exact dotted path; the
# stack names subclasses that step aside for agents' bearer calls (config/agent_calls.py),
# so those checks would pass silently. Run them again with each subclass named as the Django
# class it extends (security.W003 is silenced in settings and reported here as airlock.W003).
_DJANGO_MIDDLEWARE = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
)


def _as_django_middleware(paths: list[str]) -> list[str]:
    named = []
    for path in paths:
        cls = import_string(path)
        base = next(
            (
                candidate
                for candidate in _DJANGO_MIDDLEWARE
                if isinstance(cls, type) and issubclass(cls, import_string(candidate))
            ),
            None,
        )
        named.append(base or path)
    return named


@register(Tags.security, deploy=True)
def session_and_csrf_checks_see_our_middleware(
    app_configs: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """Django's cookie checks for sessions and CSRF (security.W010 to W013, W016), run with
    the stack's middleware named as the Django classes they extend; airlock.W003 when no
    CSRF middleware is in the stack at all."""
    middleware = _as_django_middleware(list(settings.MIDDLEWARE))
    problems: list[CheckMessage] = []
    if "django.middleware.csrf.CsrfViewMiddleware" not in middleware:
        problems.append(
            Warning(
                "No CSRF middleware (django.middleware.csrf.CsrfViewMiddleware or a subclass) "
                "is in MIDDLEWARE: people's forms would accept cross-site posts.",
                id="airlock.W003",
            )
        )
    with override_settings(MIDDLEWARE=middleware):
        problems += csrf_checks.check_csrf_cookie_secure(None)
        problems += sessions_checks.check_session_cookie_secure(None)
        problems += sessions_checks.check_session_cookie_httponly(None)
    return problems
