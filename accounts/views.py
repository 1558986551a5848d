"""Account pages: login (password, then the second factor when the person has one or their
role requires it), two-factor enrolment and recovery codes, step-up, the profile page with
personal API tokens, and the People page.

Login keeps Django's first step exactly (``/accounts/login/``, fields ``username`` and
``password``, a redirect on success). When a second factor is due, that step does *not*
log the person in: it remembers who passed the password in the (anonymous) session and
redirects to ``/accounts/login/verify/`` (or ``…/enrol/`` for a required but unenrolled
person); only a good code there logs them in. So a stolen password alone never yields a
session — no page, API call or websocket sees a half-logged-in user."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts import people, personal_tokens, reauth, stepup, twofactor
from accounts.forms import (
    PersonalTokenForm,
    PersonReasonForm,
    SecondFactorForm,
    TotpCodeForm,
)
from accounts.login_protection import (
    ThrottledAuthenticationForm,
    clear_failures,
    client_ip,
    lockout_for,
    record_failure,
)
from accounts.permissions import SCOPE_LABELS, can_manage_people
from audit import verbs
from audit.chain import Actor, append_event
from core.errors import answering_refusals
from core.redirects import next_target, safe_redirect_target

PENDING_KEY = "airlock_pending_login"
PENDING_SECONDS = 300


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def complete_login(
    request: HttpRequest, user: Any, *, backend: str, second_factor: str = ""
) -> None:
    """Log ``user`` in for real. Audits ``auth.logged_in``."""
    request.session.pop(PENDING_KEY, None)
    auth_login(request, user, backend=backend)  # starts the idle clock (accounts.apps)
    if second_factor == "totp":
        stepup.mark_stepped_up(request)  # a code entered at login counts as recent
    clear_failures(user.get_username())
    with transaction.atomic():
        append_event(
            verb=verbs.AUTH_LOGGED_IN,
            actor=Actor.user(user),
            target_type="user",
            target_id=user.pk,
            data={"second_factor": second_factor or "none", "ip": client_ip(request)},
        )


class AirlockLoginView(LoginView):
    """Step one: username and password (throttled). Logs in at once, or hands over to the
    second factor."""

    form_class = ThrottledAuthenticationForm

    def get_redirect_url(self) -> str:
        """``next``, through the project's one check (``core.redirects``)."""
        return next_target(self.request, "")

    def form_invalid(self, form: Any) -> HttpResponse:
        response = super().form_invalid(form)
        if getattr(form, "lockout", None) is not None:
            response.status_code = 429
            response["Retry-After"] = str(form.lockout.retry_after_seconds)
        return response

    def form_valid(self, form: Any) -> HttpResponse:
        user = form.get_user()
        enrolled = twofactor.has_second_factor(user)
        if enrolled or twofactor.second_factor_required(user):
            session = self.request.session
            session.cycle_key()
            session[PENDING_KEY] = {
                "user_id": user.pk,
                "backend": user.backend,
                "at": time.time(),
                "next": self.get_success_url(),
            }
            return redirect("login-verify" if enrolled else "login-enrol")
        complete_login(self.request, user, backend=user.backend)
        return HttpResponseRedirect(self.get_success_url())


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin logs in through the same two steps as everyone."""
    target = next_target(request, reverse("admin:index"))
    return redirect(f"{reverse('login')}?{urlencode({'next': target})}")


def _pending(request: HttpRequest) -> tuple[Any, dict] | None:
    """The person who passed the password step and owes a second factor, if still valid."""
    data = request.session.get(PENDING_KEY)
    if not isinstance(data, dict) or time.time() - float(data.get("at", 0)) > PENDING_SECONDS:
        request.session.pop(PENDING_KEY, None)
        return None
    user = get_user_model().objects.filter(pk=data.get("user_id"), is_active=True).first()
    return (user, data) if user is not None else None


def _restart_login(request: HttpRequest) -> HttpResponse:
    messages.info(request, "Log in again: that login took too long or was not started.")
    return redirect("login")


@never_cache
def login_verify(request: HttpRequest) -> HttpResponse:
    """Step two: a code from the authenticator app, or a recovery code."""
    pending = _pending(request)
    if pending is None:
        return _restart_login(request)
    user, data = pending
    form = SecondFactorForm(request.POST or None)
    ip = client_ip(request)
    lockout = lockout_for(user.get_username(), ip)
    if lockout is None and request.method == "POST" and form.is_valid():
        waiting = twofactor.wait_message(user)  # after wrong codes, checks pause a few seconds
        method = twofactor.verify_second_factor(user, form.cleaned_data["code"])
        if method:
            complete_login(request, user, backend=data["backend"], second_factor=method)
            if method == "recovery_code":
                left = twofactor.recovery_codes_left(user)
                messages.warning(
                    request,
                    f"You used a recovery code ({left} left). If you lost your phone, remove "
                    "the old authenticator and enrol a new one.",
                )
            return redirect(safe_redirect_target(request, data.get("next"), "/"))
        record_failure(user.get_username(), ip)
        form.add_error("code", waiting or "That code is not right (or was already used).")
    return render(
        request,
        "accounts/login_verify.html",
        {"form": form, "lockout": lockout},
        status=429 if lockout else 200,
    )


@never_cache
def login_enrol(request: HttpRequest) -> HttpResponse:
    """Step two for a person whose role requires a second factor they do not have yet:
    enrol now, then they are logged in."""
    pending = _pending(request)
    if pending is None:
        return _restart_login(request)
    user, data = pending
    if twofactor.has_second_factor(user):
        return redirect("login-verify")
    form = TotpCodeForm(request.POST or None)
    ip = client_ip(request)
    lockout = lockout_for(user.get_username(), ip)
    if lockout is None and request.method == "POST" and form.is_valid():
        with answering_refusals(
            request, show=lambda message: form.add_error("code", message)
        ) as refused:
            codes = twofactor.confirm_enrolment(user=user, code=form.cleaned_data["code"])
        if refused:
            record_failure(user.get_username(), ip)
        else:
            complete_login(request, user, backend=data["backend"], second_factor="totp")
            return _no_store(
                render(
                    request,
                    "accounts/recovery_codes.html",
                    {
                        "codes": codes,
                        "next": safe_redirect_target(request, data.get("next"), "/"),
                        "first_time": True,
                    },
                )
            )
    device = twofactor.start_enrolment(user)
    return _no_store(
        render(
            request,
            "accounts/enrol.html",
            {
                "form": form,
                "qr_svg": twofactor.qr_svg(device),
                "secret": twofactor.secret_text(device),
                "at_login": True,
                "lockout": lockout,
                "enrol_action": reverse("login-enrol"),
            },
            status=429 if lockout else 200,
        )
    )


# --- a logged-in person's second factor ----------------------------------------------------


@login_required
@never_cache
def two_factor(request: HttpRequest) -> HttpResponse:
    """Enrol, regenerate recovery codes, or remove the second factor. Each needs the
    password typed again (``accounts.reauth``), asked with the form."""
    user = request.user
    enrolled = twofactor.has_second_factor(user)
    form = TotpCodeForm(request.POST or None)
    operation = request.POST.get("operation", "")
    status = 200
    if request.method == "POST":
        with answering_refusals(request) as refused:
            # A stolen session must not give itself (or take away) a second factor.
            reauth.require_recent_password(
                request,
                purpose=_TWO_FACTOR_PURPOSES.get(operation, "change two-factor authentication"),
            )
        if refused.refusal:
            form = TotpCodeForm(request.POST)
            form.is_valid()
            form.add_error(None, refused.message)
            status = refused.refusal.status
    if request.method == "POST" and status == 200 and form.is_valid():
        code = form.cleaned_data["code"]
        with answering_refusals(
            request, show=lambda message: form.add_error("code", message)
        ) as refused:
            if operation == "enrol" and not enrolled:
                codes = twofactor.confirm_enrolment(user=user, code=code)
                return _no_store(
                    render(request, "accounts/recovery_codes.html", {"codes": codes, "next": ""})
                )
            if operation == "recovery_codes" and enrolled:
                codes = twofactor.regenerate_recovery_codes(user=user, code=code)
                return _no_store(
                    render(request, "accounts/recovery_codes.html", {"codes": codes, "next": ""})
                )
            if operation == "remove" and enrolled:
                twofactor.remove_second_factor(user=user, code=code)
                messages.success(request, "Two-factor authentication is off.")
                return redirect("two-factor")
        if not refused:
            return redirect("two-factor")
    context: dict[str, Any] = {
        "enrolled": enrolled,
        "required": twofactor.second_factor_required(user),
        "form": form,
        "operation": operation,
        "recovery_left": twofactor.recovery_codes_left(user) if enrolled else 0,
        "enrol_action": reverse("two-factor"),
    }
    if not enrolled:
        device = twofactor.start_enrolment(user)
        context.update(qr_svg=twofactor.qr_svg(device), secret=twofactor.secret_text(device))
    return _no_store(render(request, "accounts/two_factor.html", context, status=status))


_TWO_FACTOR_PURPOSES = {
    "enrol": "turn on two-factor authentication",
    "recovery_codes": "generate new recovery codes",
    "remove": "turn off two-factor authentication",
}


@login_required
@never_cache
def step_up(request: HttpRequest) -> HttpResponse:
    """Enter a code now, then go back (for pages that cannot ask inline)."""
    target = next_target(request, reverse("home"))
    error = ""
    if request.method == "POST":
        with answering_refusals(request) as refused:
            stepup.require_recent_second_factor(request, purpose="confirm it is you")
        if not refused:
            return redirect(target)
        error = refused.message
    return render(
        request,
        "accounts/step_up.html",
        {
            "next": target,
            "error": error,
            "enrolled": twofactor.has_second_factor(request.user),
            "fresh": stepup.recently_stepped_up(request),
        },
        status=403 if error else 200,
    )


# --- profile and personal tokens -----------------------------------------------------------


def _profile_context(request: HttpRequest, form: PersonalTokenForm | None = None) -> dict:
    user = request.user
    return {
        "token_form": form or PersonalTokenForm(),
        "tokens": personal_tokens.tokens_of(user),
        "enrolled": twofactor.has_second_factor(user),
        "required": twofactor.second_factor_required(user),
        "scope_labels": SCOPE_LABELS,
    }


@login_required
@never_cache
def profile(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/profile.html", _profile_context(request))


@login_required
@require_POST
@never_cache
def create_personal_token(request: HttpRequest) -> HttpResponse:
    form = PersonalTokenForm(request.POST)
    if not form.is_valid():
        return render(request, "accounts/profile.html", _profile_context(request, form), status=400)
    with answering_refusals(request) as refused:
        # A stolen session must not mint itself a long-lived credential.
        reauth.require_recent_password(request, purpose="create a personal API token")
        stepup.require_recent_second_factor(request, purpose="create a personal API token")
        record, token = personal_tokens.create_personal_token(
            user=request.user,
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            expires_in_days=form.cleaned_data["expires_in_days"],
        )
    if refusal := refused.refusal:
        if isinstance(refusal, personal_tokens.PersonalTokenRefused):
            # The form's own problems, one per line, answered as bad input.
            form.add_error(None, refusal.detail)
            for problems in refusal.fields.values():
                for problem in problems:
                    form.add_error(None, problem)
            status = 400
        else:
            form.add_error(None, refused.message)
            status = refusal.status
        return render(
            request, "accounts/profile.html", _profile_context(request, form), status=status
        )
    return _no_store(
        render(request, "accounts/token_created.html", {"record": record, "token": token})
    )


@login_required
@require_POST
def revoke_personal_token(request: HttpRequest, token_id: int) -> HttpResponse:
    with answering_refusals(request) as refused:
        record = personal_tokens.revoke_personal_token(token_id=token_id, actor=request.user)
    if refused:  # only its owner's token exists for them
        raise Http404("No such token.")
    messages.success(request, f"Token “{record.name}” ({record.prefix}…) is revoked.")
    return redirect("profile")


# --- people --------------------------------------------------------------------------------


def _manager(request: HttpRequest) -> None:
    if not can_manage_people(request.user):
        raise PermissionDenied("You may not manage accounts.")


@login_required
@never_cache
def people_list(request: HttpRequest) -> HttpResponse:
    _manager(request)
    return render(
        request,
        "accounts/people.html",
        {"rows": people.people_rows(), "reason_form": PersonReasonForm()},
    )


def _person_action(request: HttpRequest, user_id: int, run: Any, done: str) -> HttpResponse:
    _manager(request)
    form = PersonReasonForm(request.POST)
    form.is_valid()
    # A missing person is the 404 page; a refusal (own account, a superuser) is shown.
    with answering_refusals(
        request, hide={404}, show=lambda message: messages.error(request, message)
    ) as refused:
        person = run(actor=request.user, user_id=user_id, reason=form.cleaned_data.get("reason"))
    if not refused:
        messages.success(request, done.format(name=person.get_username()))
    return redirect("people")


@login_required
@require_POST
def disable_person(request: HttpRequest, user_id: int) -> HttpResponse:
    return _person_action(
        request,
        user_id,
        people.disable_user,
        "{name} is disabled: signed out everywhere, personal tokens revoked.",
    )


@login_required
@require_POST
def enable_person(request: HttpRequest, user_id: int) -> HttpResponse:
    return _person_action(
        request, user_id, people.enable_user, "{name} is enabled again (tokens stay revoked)."
    )
