"""Step-up: the most consequential clicks need a second-factor code entered within the last
``STEP_UP_WINDOW_SECONDS`` (when ``STEP_UP_ENABLED``) — approving a high or critical
action, releasing a kill switch, approving a governance change, creating a personal token.

Where the code comes from:
- pages: a ``step_up_code`` field posted with the form itself (the page asks inline; see
  ``templates/accounts/_step_up_field.html`` and the ``step_up_field`` template tag), or a
  code entered at login (or at ``/accounts/step-up``) within the window;
- the API: an ``X-Airlock-OTP`` header. With a session, a good code opens the window for
  the session; with a personal token, for that token.

Without a recent code the action is refused with ``StepUpRequired`` (the API answers
``403`` with code ``step_up_required``). Only TOTP codes step up: a recovery code gets a
person in, not past these checks (they re-enrol a device first).

A code offered with a request is verified in the view and API layer, outside any write's
transaction (``verify_offered_code``); whether one is needed is decided where the rule
holds: approving asks under the action's row lock, on the risk of the payload that will
run (``approval_step_up_check``), so an edit that raises the risk asks for it too."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import transaction
from rest_framework.request import Request

from accounts import personal_tokens, twofactor
from audit import verbs
from audit.chain import Actor, append_event
from core.errors import Refused

STEP_UP_FIELD = "step_up_code"
STEP_UP_HEADER = "X-Airlock-OTP"
SESSION_KEY = "airlock_step_up_at"
STEP_UP_RISKS = frozenset({"high", "critical"})


class StepUpRequired(Refused):
    """A consequential action without a recent second factor: a ``403``
    ``step_up_required`` refusal, answered like the write paths' refusals."""

    def __init__(self, detail: str, *, invalid_code: bool = False) -> None:
        super().__init__("step_up_required", detail, 403)
        self.invalid_code = invalid_code


def step_up_enabled() -> bool:
    return bool(settings.STEP_UP_ENABLED)


def risk_needs_step_up(risk: str) -> bool:
    return step_up_enabled() and risk in STEP_UP_RISKS


def _personal_token(request: Any) -> Any:
    auth = getattr(request, "auth", None) if isinstance(request, Request) else None
    return getattr(auth, "token", None)


def _fresh(at: float | None) -> bool:
    return at is not None and 0 <= time.time() - at <= settings.STEP_UP_WINDOW_SECONDS


def recently_stepped_up(request: Any) -> bool:
    """Whether this session (or personal token) entered a second-factor code recently."""
    token = _personal_token(request)
    if token is not None:
        return token.stepped_up_at is not None and _fresh(token.stepped_up_at.timestamp())
    session = getattr(request, "session", None)
    at = session.get(SESSION_KEY) if session is not None else None
    return isinstance(at, int | float) and _fresh(at)


def step_up_pending(request: Any, risk: str | None = None) -> bool:
    """Whether a page should ask for a code with its form (step-up on, this risk needs it,
    none entered recently)."""
    if not step_up_enabled() or (risk is not None and risk not in STEP_UP_RISKS):
        return False
    return not recently_stepped_up(request)


def mark_stepped_up(request: Any) -> None:
    """Open the step-up window for this session (a code was just verified)."""
    session = getattr(request, "session", None)
    if session is not None:
        session[SESSION_KEY] = time.time()


def _offered_code(request: Any) -> str:
    code = request.headers.get(STEP_UP_HEADER, "") if hasattr(request, "headers") else ""
    if not code and not isinstance(request, Request) and request.method == "POST":
        code = request.POST.get(STEP_UP_FIELD, "")
    return str(code).strip()[:20]


def require_recent_second_factor(request: Any, *, purpose: str = "continue") -> None:
    """Return when step-up is off or satisfied; else raise ``StepUpRequired``.

    A code offered with the request (``step_up_code`` field or ``X-Airlock-OTP`` header) is
    verified first; a good one opens the window and is audited (``auth.stepped_up``).
    Call it outside any write's transaction: a wrong code's throttling must persist."""
    if not step_up_enabled():
        return
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        raise StepUpRequired("Log in first.")
    if recently_stepped_up(request):
        return
    code = _offered_code(request)
    if not code or not twofactor.has_second_factor(user):
        raise _missing(request, purpose)
    waiting = twofactor.wait_message(user)  # after wrong codes, checks pause a few seconds
    if not twofactor.verify_totp(user, code):
        raise StepUpRequired(
            waiting
            or "That code is not right (or was already used). Enter the current code from "
            "your authenticator app.",
            invalid_code=True,
        )
    token = _personal_token(request)
    if token is not None:
        personal_tokens.mark_stepped_up(token)
    else:
        mark_stepped_up(request)
    with transaction.atomic():
        append_event(
            verb=verbs.AUTH_STEPPED_UP,
            actor=Actor.user(user),
            target_type="user",
            target_id=user.pk,
            data={"purpose": purpose, "via": "personal token" if token else "session"},
        )


def _missing(request: Any, purpose: str) -> StepUpRequired:
    if not twofactor.has_second_factor(request.user):
        return StepUpRequired(
            f"To {purpose} you need two-factor authentication: enrol an authenticator app "
            "on your profile page (/accounts/two-factor/), then try again."
        )
    return StepUpRequired(
        f"To {purpose}, enter the current code from your authenticator app "
        f"(in the form, or the {STEP_UP_HEADER} header for the API)."
    )


def verify_offered_code(request: Any, *, purpose: str) -> None:
    """Verify a code offered with ``request`` now, before a write path decides whether it
    needs one (and outside its transaction); no-op when none is offered or none is
    needed. A wrong code raises ``StepUpRequired``."""
    if step_up_enabled() and _offered_code(request) and not recently_stepped_up(request):
        require_recent_second_factor(request, purpose=purpose)


def approval_purpose(action: Any) -> str:
    """What a step-up for approving ``action`` is for, as the audit and the ask say it."""
    return f"approve a {action.risk}-risk action (#{action.pk})"


def approval_step_up_check(request: Any) -> Any:
    """What the approval write path calls, under its row lock, once it knows the risk of the
    payload that will run: raises ``StepUpRequired`` unless ``request`` stepped up recently
    (a code offered with it was verified first, by ``verify_offered_code``). Reads only."""

    def check(action: Any) -> None:
        if risk_needs_step_up(action.risk) and not recently_stepped_up(request):
            raise _missing(request, approval_purpose(action))

    return check
