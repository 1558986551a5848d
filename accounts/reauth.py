"""Re-authentication: the operations that hand out or change a credential — enrolling,
replacing or removing a second factor, new recovery codes, creating a personal token — need
the account's password typed within the last ``REAUTH_WINDOW_SECONDS``.

A session is a bearer credential: whoever holds the cookie is "logged in". Without this
rule a stolen session of a person without a second factor enrols its own authenticator and
from then on passes every step-up, while the real owner is locked out of the account's
second factor. The password is what the session thief does not have.

Logging in does not open the window (the cookie may be stolen the minute after): the page
asks for the password inline with the form (``current_password``, see
``templates/accounts/_reauth_field.html`` and the ``reauth_field`` template tag), and a
good one opens the window for this session only. The login-time enrolment of a person whose
role requires a second factor (``login-enrol``) runs before any session exists, a few
minutes after the password was typed, so it needs nothing more.

A wrong password counts as a failed login (``accounts.login_protection``: the same rows,
limits and lockout) and is answered as a refusal (``reauth_failed``, audited through
``access.refused``); a good one is audited (``auth.reauthenticated``). Like a step-up code,
the password is checked in the view, outside any write's transaction, so that a failure's
count persists."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest

from accounts.login_protection import client_ip, lockout_for, record_failure
from audit import verbs
from audit.chain import Actor, append_event
from core.errors import Refused

REAUTH_FIELD = "current_password"
SESSION_KEY = "airlock_reauth_at"
PASSWORD_MAX = 4096


class ReauthRequired(Refused):
    """A credential operation without the password typed recently (``reauth_required``),
    with a wrong one (``reauth_failed``) or while logins of the account are paused
    (``reauth_throttled``, 429)."""


def _fresh(at: Any) -> bool:
    return isinstance(at, int | float) and 0 <= time.time() - at <= settings.REAUTH_WINDOW_SECONDS


def recently_reauthenticated(request: HttpRequest) -> bool:
    """Whether this session's password was typed within ``REAUTH_WINDOW_SECONDS``."""
    session = getattr(request, "session", None)
    return session is not None and _fresh(session.get(SESSION_KEY))


def reauth_pending(request: HttpRequest) -> bool:
    """Whether a page should ask for the password with its form."""
    return not recently_reauthenticated(request)


def require_recent_password(request: HttpRequest, *, purpose: str) -> None:
    """Return when the session typed its password recently or types it now (the
    ``current_password`` field of this POST); else raise ``ReauthRequired``. A good password
    opens the window and is audited (``auth.reauthenticated``); a wrong one is counted as a
    failed login. Call it outside any write's transaction."""
    user = request.user
    if not user.is_authenticated:
        raise ReauthRequired("reauth_required", "Log in first.", 403)
    if recently_reauthenticated(request):
        return
    password = request.POST.get(REAUTH_FIELD, "") if request.method == "POST" else ""
    if not password:
        raise ReauthRequired(
            "reauth_required", f"To {purpose}, enter your password (it is asked again).", 403
        )
    username, ip = user.get_username(), client_ip(request)
    lockout = lockout_for(username, ip)
    if lockout is not None:
        # Checked before the password, like the login form: a throttled guess learns nothing.
        raise ReauthRequired("reauth_throttled", lockout.message, 429)
    if len(password) > PASSWORD_MAX or not user.check_password(password):
        record_failure(username, ip)
        raise ReauthRequired("reauth_failed", "That password is not right.", 403)
    request.session[SESSION_KEY] = time.time()
    with transaction.atomic():
        append_event(
            verb=verbs.AUTH_REAUTHENTICATED,
            actor=Actor.user(user),
            target_type="user",
            target_id=user.pk,
            data={"purpose": purpose, "ip": ip},
        )
