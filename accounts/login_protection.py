"""Login protection: failed logins throttled per username and per client address, and
sessions that end after a period without activity.

Failures are rows in the database (``LoginFailure``), not cache entries: the limiter keeps
working — and keeps refusing — when Redis is down, and it never locks everyone out because
a cache is empty or unreachable. A throttled username is answered exactly like an unknown
one (nothing reveals which accounts exist), with a clear message saying when to retry.

Why not django-axes (8.3, considered for issue 17): axes compares one failure limit
(``AXES_FAILURE_LIMIT``, a number or a callable of the request) against every lockout
parameter, while Airlock documents two — 5 failures per username and 20 per client address —
and counts wrong second-factor codes as failures of the username. Meeting that with axes
takes a custom ``AxesHandler`` subclass that re-implements the counting per parameter, plus
axes' authentication backend (first in ``AUTHENTICATION_BACKENDS``) and middleware, and its
lockout answer must be replaced so a throttled username still reads like an unknown one and
each refusal still lands in the audit chain. That is more code than this module, so the
module stays: one table, two windowed counts, one audited refusal."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.forms import AuthenticationForm
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from accounts.models import LoginFailure
from audit import verbs
from audit.chain import Actor, append_event

USERNAME_MAX = 150


def client_ip(request: HttpRequest) -> str:
    """The client's address: the peer, or — behind ``TRUSTED_PROXY_COUNT`` proxies that
    append to X-Forwarded-For — the address the outermost trusted proxy saw."""
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies > 0:
        hops = [
            hop.strip()
            for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if hop.strip()
        ]
        if len(hops) >= proxies:
            return hops[-proxies][:45]
    return str(request.META.get("REMOTE_ADDR", ""))[:45]


def _username_key(username: Any) -> str:
    return str(username or "").strip().lower()[:USERNAME_MAX]


@dataclass(frozen=True)
class Lockout:
    """Why logins are refused right now, and for how long."""

    by: str  # "account" | "address"
    retry_after_seconds: int

    @property
    def message(self) -> str:
        minutes = max(1, -(-self.retry_after_seconds // 60))
        return (
            "Too many failed logins for this account or from this address. For your "
            f"safety, logging in is paused: try again in {minutes} minute"
            f"{'s' if minutes != 1 else ''}."
        )


def _window_start() -> Any:
    return timezone.now() - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def _retry_after(failures: Any, limit: int) -> int:
    # The window reopens when the oldest of the last ``limit`` failures leaves it.
    times = list(failures.order_by("-at").values_list("at", flat=True)[:limit])
    oldest = times[-1] if times else timezone.now()
    reopens = oldest + timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    return max(1, int((reopens - timezone.now()).total_seconds()) + 1)


def lockout_for(username: Any, ip: str) -> Lockout | None:
    """The lockout in force for this username or address, if any."""
    since = _window_start()
    by_user = LoginFailure.objects.filter(username=_username_key(username), at__gte=since)
    if by_user.count() >= settings.LOGIN_FAILURE_LIMIT:
        return Lockout("account", _retry_after(by_user, settings.LOGIN_FAILURE_LIMIT))
    if ip:
        by_ip = LoginFailure.objects.filter(ip=ip, at__gte=since)
        if by_ip.count() >= settings.LOGIN_FAILURE_LIMIT_PER_IP:
            return Lockout("address", _retry_after(by_ip, settings.LOGIN_FAILURE_LIMIT_PER_IP))
    return None


def record_failure(username: Any, ip: str) -> None:
    """Count one failed password or second-factor attempt. The failure that starts a
    lockout is audited (``auth.login_locked``); the others are not, so a flood of guesses
    cannot flood the audit log."""
    key = _username_key(username)
    with transaction.atomic():
        LoginFailure.objects.create(username=key, ip=ip, at=timezone.now())
        since = _window_start()
        user_count = LoginFailure.objects.filter(username=key, at__gte=since).count()
        ip_count = LoginFailure.objects.filter(ip=ip, at__gte=since).count() if ip else 0
        if (
            user_count == settings.LOGIN_FAILURE_LIMIT
            or ip_count == settings.LOGIN_FAILURE_LIMIT_PER_IP
        ):
            append_event(
                verb=verbs.AUTH_LOGIN_LOCKED,
                actor=Actor.system("login-protection"),
                target_type="login",
                target_id=key,
                data={"username": key, "ip": ip, "failures": max(user_count, ip_count)},
            )


def clear_failures(username: Any) -> None:
    """After a complete login: the account's own count starts again (the address's stays,
    so one valid account cannot be used to reset guessing from that address). Prunes rows
    older than the window."""
    LoginFailure.objects.filter(username=_username_key(username)).delete()
    LoginFailure.objects.filter(at__lt=_window_start() - timedelta(days=1)).delete()


class ThrottledAuthenticationForm(AuthenticationForm):
    """Django's login form (fields ``username`` and ``password``), refusing while the
    username or the client address is throttled and counting each failure."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That username and password do not match an active account.",
    }

    lockout: Lockout | None = None

    def clean(self) -> dict:
        username = self.cleaned_data.get("username")
        ip = client_ip(self.request) if self.request else ""
        self.lockout = lockout_for(username, ip)
        if self.lockout is not None:
            # Checked before the password, so a throttled guess learns nothing.
            raise forms.ValidationError(self.lockout.message, code="throttled")
        try:
            return super().clean()
        except forms.ValidationError:
            if username:
                record_failure(username, ip)
            raise


# --- sessions that end when idle ------------------------------------------------------------

LAST_ACTIVITY_KEY = "airlock_last_activity"
# Activity is written to the session at most this often (a write per click is waste).
ACTIVITY_RESOLUTION_SECONDS = 60


def _passive(request: HttpRequest) -> bool:
    """A live refresh of a page left open (``static/live.js``) is not a person's activity."""
    return request.method == "GET" and request.GET.get("partial") == "1"


class SessionIdleTimeoutMiddleware:
    """Logs a session out after ``SESSION_IDLE_TIMEOUT_SECONDS`` without activity. The next
    request is then anonymous: pages redirect to the login page, the API answers 401/403,
    every live socket of the session is closed (``rollout.live``: it also closes a socket
    whose session sat idle past the timeout at its periodic re-check, before any request).

    Deliberately sync-only, and the innermost middleware (config/settings/base.py). Django
    runs a middleware that can do both in the mode of the one inside it; this one being sync
    puts every middleware outside it (Django's own, which do their work synchronously) in
    sync mode too, in one worker thread. Made async-capable,
    they all switch to async mode and hop to a thread and back for each of their
    ``process_request``/``process_response``: measured with benchmarks/gate.py, that cost
    every request 1.5 to 2 ms more CPU (the trivial floor's 2.0 ms became 3.5 ms)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        timeout = settings.SESSION_IDLE_TIMEOUT_SECONDS
        if timeout > 0 and user is not None and user.is_authenticated:
            now = time.time()
            last = request.session.get(LAST_ACTIVITY_KEY)
            if isinstance(last, int | float) and now - last > timeout:
                logout(request)  # flushes the session row: every tab and socket ends
                messages.info(
                    request,
                    f"You were logged out after {max(1, timeout // 60)} minutes without "
                    "activity. Log in again.",
                )
            elif not _passive(request) and (
                not isinstance(last, int | float) or now - last >= ACTIVITY_RESOLUTION_SECONDS
            ):
                request.session[LAST_ACTIVITY_KEY] = now
        return self.get_response(request)


def start_idle_clock(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """``user_logged_in`` receiver: a new session's idle clock starts now (so its first
    requests write nothing more)."""
    session = getattr(request, "session", None)
    if session is not None:
        session[LAST_ACTIVITY_KEY] = time.time()
