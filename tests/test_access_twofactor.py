"""Two-factor authentication, step-up and login protection, through real HTTP requests of
Django's test client (pages) and DRF (API). Codes are computed in the test per RFC 6238
from the device's key."""

from __future__ import annotations

import base64
import re
import time

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import login_protection, twofactor
from accounts.models import LoginFailure, RecoveryCode
from approvals.models import Action
from audit import verbs
from audit.chain import Actor
from audit.models import AuditEvent
from incidents.actions import engage_kill_switch
from tests import factories
from tests.access_support import (
    current_counter,
    give_second_factor,
    log_in_with_second_factor,
    next_code,
    password_step,
    totp,
)

pytestmark = pytest.mark.django_db


def events(verb: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(verb=verb).order_by("id"))


def unthrottle(user) -> None:
    """After a wrong code django-otp pauses checks for a second (tested in the enrolment
    test); other tests skip the wait."""
    TOTPDevice.objects.filter(user=user).update(throttling_failure_count=0)


# --- RFC 6238 itself ----------------------------------------------------------------------


def test_totp_helper__matches_rfc6238_test_vector():
    # RFC 6238 appendix B, SHA-1 secret "12345678901234567890", T = 59 s → 94287082 (8 digits)
    key = b"12345678901234567890".hex()
    assert totp(key, 59 // 30, digits=8) == "94287082"
    assert totp(key, 1111111109 // 30, digits=8) == "07081804"


# --- enrolment ----------------------------------------------------------------------------


def test_enrolment__qr_and_first_code__turns_on_and_issues_recovery_codes(reviewer):
    # Given a logged-in reviewer without a second factor
    client = Client()
    client.force_login(reviewer)
    # When they open the two-factor page
    page = client.get("/accounts/two-factor/")
    # Then they see a QR code (inline SVG) and the secret, and a device waits unconfirmed
    assert page.status_code == 200
    html = page.content.decode()
    assert "<svg" in html and 'data-testid="totp-qr"' in html
    assert "<script" not in html.split('data-testid="totp-qr"')[1].split("</div>")[0]
    device = TOTPDevice.objects.get(user=reviewer)
    assert not device.confirmed
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7 ]+)<', html).group(1)
    assert base64.b32decode(secret.replace(" ", "") + "=" * 0).hex() == device.key
    # When a wrong code is entered (with the password the page asks again, which then
    # counts for a few minutes), nothing is turned on, and codes pause for a second
    wrong = client.post(
        "/accounts/two-factor/",
        {"operation": "enrol", "code": "000000", "current_password": "pw-for-tests"},
    )
    assert wrong.status_code == 200 and not twofactor.has_second_factor(reviewer)
    right_too_soon = client.post(
        "/accounts/two-factor/",
        {"operation": "enrol", "code": totp(device.key, current_counter())},
    )
    assert b"Too many wrong codes" in right_too_soon.content
    time.sleep(1.1)  # past django-otp's one-second throttle delay after a wrong code
    # When the current code (computed here from the key) is entered
    code = totp(device.key, current_counter())
    done = client.post("/accounts/two-factor/", {"operation": "enrol", "code": code})
    # Then two-factor is on and ten recovery codes are shown once, stored only as digests
    assert done.status_code == 200
    assert "no-store" in done["Cache-Control"]
    codes = re.findall(r"<code>([a-z0-9-]{19})</code>", done.content.decode())
    assert len(codes) == 10
    assert twofactor.has_second_factor(reviewer)
    stored = set(RecoveryCode.objects.filter(user=reviewer).values_list("code_hash", flat=True))
    assert len(stored) == 10 and not any(code in stored for code in codes)
    assert [e.actor for e in events(verbs.TWO_FACTOR_ENROLLED)] == ["rita"]
    # And the same code cannot be used again (replay)
    assert not twofactor.verify_totp(reviewer, code)


def test_login__enrolled__password_then_code(reviewer):
    give_second_factor(reviewer)
    client = Client()
    # When the password is right, the person is not logged in yet
    response = password_step(client, "rita")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/verify/"
    assert client.get("/").status_code == 302  # still the login page
    assert client.get("/api/v1/kill-switches").status_code == 401
    # A wrong code is refused and counted
    bad = client.post("/accounts/login/verify/", {"code": "123456"})
    assert bad.status_code == 200 and b"not right" in bad.content
    assert LoginFailure.objects.filter(username="rita").count() == 1
    unthrottle(reviewer)
    # The right code logs them in, at the page they asked for
    client.post("/accounts/login/verify/", {"code": next_code(reviewer)})
    assert client.get("/").status_code == 200
    logged_in = events(verbs.AUTH_LOGGED_IN)
    assert [(e.actor, e.data["second_factor"]) for e in logged_in] == [("rita", "totp")]
    assert not LoginFailure.objects.filter(username="rita").exists()


def test_login__without_second_factor__unchanged(reviewer):
    # The first step stays Django's: username + password, then a redirect.
    client = Client()
    response = client.post(
        "/accounts/login/?next=/decided", {"username": "rita", "password": "pw-for-tests"}
    )
    assert (response.status_code, response["Location"]) == (302, "/decided")
    assert client.get("/decided").status_code == 200


def test_login__recovery_code__works_once(reviewer):
    give_second_factor(reviewer)
    codes = twofactor.regenerate_recovery_codes(user=reviewer, code=next_code(reviewer))
    first = Client()
    password_step(first, "rita")
    response = first.post("/accounts/login/verify/", {"code": codes[0].upper()})
    assert response.status_code == 302
    assert first.get("/").status_code == 200
    second = Client()
    password_step(second, "rita")
    again = second.post("/accounts/login/verify/", {"code": codes[0]})
    assert again.status_code == 200
    assert second.get("/").status_code == 302
    assert twofactor.recovery_codes_left(reviewer) == 9
    assert len(events(verbs.TWO_FACTOR_RECOVERY_CODE_USED)) == 1


def test_login__role_requires_second_factor__enrols_before_logging_in(reviewer, settings):
    settings.TWO_FACTOR_REQUIRED_ROLES = ["reviewer"]
    client = Client()
    response = password_step(client, "rita")
    assert response["Location"] == "/accounts/login/enrol/"
    page = client.get("/accounts/login/enrol/")
    assert b"<svg" in page.content
    assert client.get("/").status_code == 302  # not logged in while enrolling
    device = TOTPDevice.objects.get(user=reviewer, confirmed=False)
    done = client.post("/accounts/login/enrol/", {"code": totp(device.key, current_counter())})
    assert done.status_code == 200 and b"recovery" in done.content
    assert client.get("/").status_code == 200
    # and the second factor cannot be removed while the role requires it
    removed = client.post(
        "/accounts/two-factor/", {"operation": "remove", "code": next_code(reviewer)}
    )
    assert b"requires a second factor" in removed.content
    assert twofactor.has_second_factor(reviewer)


def test_login__pending_second_factor__expires(reviewer, monkeypatch):
    give_second_factor(reviewer)
    client = Client()
    password_step(client, "rita")
    later = time.time() + 301
    monkeypatch.setattr("accounts.views.time.time", lambda: later)
    response = client.post("/accounts/login/verify/", {"code": next_code(reviewer)})
    assert (response.status_code, response["Location"]) == (302, "/accounts/login/")


def test_admin_login__goes_through_the_same_steps(reviewer):
    response = Client().get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2F"


# --- login throttling ---------------------------------------------------------------------


def test_login__throttled_per_user__clear_message_and_right_password_refused(reviewer, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    client = Client()
    for _ in range(3):
        response = password_step(client, "rita", password="wrong")
        assert response.status_code == 200
    # Then even the right password is refused, with a message saying when to retry
    response = password_step(client, "RITA")
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert b"try again in 15 minutes" in response.content
    assert int(response["Retry-After"]) > 800
    assert client.get("/").status_code == 302
    # the lockout was audited once, and other people are not affected
    assert len(events(verbs.AUTH_LOGIN_LOCKED)) == 1
    other = factories.make_user("otto", groups=("reviewer",))
    assert password_step(Client(), other.username, REMOTE_ADDR="10.0.0.9").status_code == 302


def test_login__unknown_username__throttled_the_same_way(reference_data, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    client = Client()
    for _ in range(2):
        password_step(client, "nobody", password="x")
    assert password_step(client, "nobody", password="x").status_code == 429


def test_login__throttled_per_address(reviewer, settings):
    settings.LOGIN_FAILURE_LIMIT_PER_IP = 4
    client = Client(REMOTE_ADDR="203.0.113.7")
    for index in range(4):
        password_step(client, f"guess{index}", password="x")
    # Then a different, valid account from the same address is refused too
    assert password_step(client, "rita").status_code == 429
    assert password_step(Client(REMOTE_ADDR="203.0.113.8"), "rita").status_code == 302


def test_login__window_passes__allowed_again(reviewer, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    client = Client()
    for _ in range(2):
        password_step(client, "rita", password="wrong")
    assert password_step(client, "rita").status_code == 429
    LoginFailure.objects.update(at=LoginFailure.objects.first().at.replace(year=2000))
    assert password_step(client, "rita").status_code == 302


def test_login__second_factor_guesses__count_towards_the_limit(reviewer, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    give_second_factor(reviewer)
    client = Client()
    password_step(client, "rita")
    for _ in range(3):
        client.post("/accounts/login/verify/", {"code": "000000"})
    response = client.post("/accounts/login/verify/", {"code": next_code(reviewer)})
    assert response.status_code == 429
    assert client.get("/").status_code == 302


def test_client_ip__trusts_only_the_configured_proxies(rf, settings):
    request = rf.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.4")
    assert login_protection.client_ip(request) == "10.0.0.1"
    settings.TRUSTED_PROXY_COUNT = 1
    assert login_protection.client_ip(request) == "198.51.100.4"


# --- idle sessions ------------------------------------------------------------------------


def test_session__idle_too_long__logged_out_everywhere(reviewer, settings, monkeypatch):
    settings.SESSION_IDLE_TIMEOUT_SECONDS = 600
    client = Client()
    password_step(client, "rita")
    assert client.get("/").status_code == 200
    # A live refresh (not a click) after the timeout finds the session ended
    later = time.time() + 601
    monkeypatch.setattr("accounts.login_protection.time.time", lambda: later)
    response = client.get("/?partial=1")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not Session.objects.exists()
    page = client.get(response["Location"])
    assert b"without activity" in page.content


def test_session__live_refreshes_do_not_keep_it_alive(reviewer, settings, monkeypatch):
    settings.SESSION_IDLE_TIMEOUT_SECONDS = 600
    client = Client()
    password_step(client, "rita")
    start = time.time()
    for offset in (200, 400, 590):
        monkeypatch.setattr("accounts.login_protection.time.time", lambda o=offset: start + o)
        assert client.get("/?partial=1").status_code == 200
    monkeypatch.setattr("accounts.login_protection.time.time", lambda: start + 610)
    assert client.get("/").status_code == 302


def test_cookies__secure_settings(settings):
    from django.conf import settings as live

    assert live.SESSION_COOKIE_HTTPONLY
    assert live.SESSION_COOKIE_SAMESITE == "Lax" and live.CSRF_COOKIE_SAMESITE == "Lax"
    assert live.X_FRAME_OPTIONS == "DENY"


# --- step-up ------------------------------------------------------------------------------


@pytest.fixture
def step_up_on(settings):
    settings.STEP_UP_ENABLED = True
    settings.STEP_UP_WINDOW_SECONDS = 300


def critical_action(agent):
    action = factories.submit(agent, "wipe_database", {"scope": "all"})
    assert (action.status, action.risk) == ("pending", "critical")
    return action


def test_step_up__api_decision_on_critical__needs_a_recent_code(
    step_up_on, critical_reviewer, support_agent
):
    # Given a critical reviewer with an authenticator, logged in with a password only
    # (their device was added after the login)
    action = critical_action(support_agent)
    client = Client(enforce_csrf_checks=False)
    client.force_login(critical_reviewer)
    give_second_factor(critical_reviewer)
    url = f"/api/v1/actions/{action.pk}/decisions"
    # When they approve through the API without a code
    refused = client.post(url, {"verdict": "approve"}, content_type="application/json")
    # Then it is refused with step_up_required and nothing is recorded
    assert refused.status_code == 403
    assert refused.json()["code"] == "step_up_required"
    assert not action.decisions.exists()
    # A wrong code is refused too
    wrong = client.post(
        url, {"verdict": "approve"}, content_type="application/json", HTTP_X_AIRLOCK_OTP="000000"
    )
    assert wrong.status_code == 403 and "not right" in wrong.json()["detail"]
    unthrottle(critical_reviewer)
    # With the current code the approval is recorded
    ok = client.post(
        url,
        {"verdict": "approve"},
        content_type="application/json",
        HTTP_X_AIRLOCK_OTP=next_code(critical_reviewer),
    )
    assert ok.status_code == 201, ok.content
    assert ok.json()["approvals"] == 1
    assert [e.data["purpose"] for e in events(verbs.AUTH_STEPPED_UP)] == [
        f"approve a critical-risk action (#{action.pk})"
    ]


def test_step_up__low_risk_and_rejections__never_asked(step_up_on, reviewer, support_agent):
    action = factories.submit(support_agent, "send_email")
    assert action.risk in ("low", "medium")
    client = Client()
    client.force_login(reviewer)
    response = client.post(
        f"/api/v1/actions/{action.pk}/decisions",
        {"verdict": "approve"},
        content_type="application/json",
    )
    assert response.status_code == 201
    critical = critical_action(support_agent)
    rejected = client.post(
        f"/api/v1/actions/{critical.pk}/decisions",
        {"verdict": "reject", "comment": "no"},
        content_type="application/json",
    )
    assert rejected.status_code == 201


def test_step_up__window__code_at_login_counts_until_it_passes(
    step_up_on, critical_reviewer, support_agent, settings, monkeypatch
):
    give_second_factor(critical_reviewer)
    client = Client()
    log_in_with_second_factor(client, critical_reviewer)
    first, second = critical_action(support_agent), critical_action(support_agent)
    # Within the window the login's code counts
    ok = client.post(
        f"/api/v1/actions/{first.pk}/decisions",
        {"verdict": "approve"},
        content_type="application/json",
    )
    assert ok.status_code == 201
    # Once it has passed, a code is asked again
    later = time.time() + 301
    monkeypatch.setattr("accounts.stepup.time.time", lambda: later)
    again = client.post(
        f"/api/v1/actions/{second.pk}/decisions",
        {"verdict": "approve"},
        content_type="application/json",
    )
    assert again.status_code == 403 and again.json()["code"] == "step_up_required"


def test_step_up__no_second_factor__told_to_enrol(step_up_on, critical_reviewer, support_agent):
    action = critical_action(support_agent)
    client = Client()
    client.force_login(critical_reviewer)
    response = client.post(
        f"/api/v1/actions/{action.pk}/decisions",
        {"verdict": "approve"},
        content_type="application/json",
        HTTP_X_AIRLOCK_OTP="123456",
    )
    assert response.status_code == 403
    assert response.json()["code"] == "step_up_required"
    assert "/accounts/two-factor/" in response.json()["detail"]


def test_step_up__kill_switch_release__needs_a_code(step_up_on, incident_owner, support_agent):
    switch = engage_kill_switch(
        scope="agent", target=support_agent.slug, reason="incident", actor=Actor.system("t")
    )
    give_second_factor(incident_owner)
    client = Client()
    client.force_login(incident_owner)
    url = f"/api/v1/kill-switches/{switch.pk}/release"
    refused = client.post(url, {"reason": "fixed"}, content_type="application/json")
    assert refused.status_code == 403 and refused.json()["code"] == "step_up_required"
    switch.refresh_from_db()
    assert switch.engaged
    ok = client.post(
        url,
        {"reason": "fixed"},
        content_type="application/json",
        HTTP_X_AIRLOCK_OTP=next_code(incident_owner),
    )
    assert ok.status_code == 200
    switch.refresh_from_db()
    assert not switch.engaged
    # engaging never asks (stopping must be instant)
    engaged = client.post(
        "/api/v1/kill-switches",
        {"scope": "agent", "target": support_agent.slug, "reason": "again"},
        content_type="application/json",
    )
    assert engaged.status_code == 201


def test_step_up__governance_change_approval__page_asks_inline(step_up_on, support_agent):
    from governance import actions as governance_actions

    author = factories.make_user("gwen", groups=("governance_owner",))
    approver = factories.make_user("gus", groups=("governance_owner",))
    give_second_factor(approver)
    result = governance_actions.propose_change(
        agent=support_agent, user=author, changes={"tier": "autonomous"}, reason="ready"
    )
    change_request = result.change_request
    client = Client()
    client.force_login(approver)
    page = client.get(f"/changes/{change_request.pk}")
    assert b'name="step_up_code"' in page.content
    url = f"/changes/{change_request.pk}/approve"
    refused = client.post(url, {"revision": 1, "comment": ""}, follow=True)
    change_request.refresh_from_db()
    assert change_request.status == "open"
    assert b"authenticator" in refused.content
    client.post(url, {"revision": 1, "comment": "", "step_up_code": next_code(approver)})
    change_request.refresh_from_db()
    assert change_request.status == "applied"
    # the window is open now: the next change's page does not ask again
    following = governance_actions.propose_change(
        agent=support_agent, user=author, changes={"rate_limit_per_minute": 900}, reason="more"
    ).change_request
    assert b'name="step_up_code"' not in client.get(f"/changes/{following.pk}").content


def test_step_up__off__nothing_asked(critical_reviewer, support_agent):
    action = critical_action(support_agent)
    client = Client()
    client.force_login(critical_reviewer)
    response = client.post(
        f"/api/v1/actions/{action.pk}/decisions",
        {"verdict": "approve"},
        content_type="application/json",
    )
    assert response.status_code == 201
    assert Action.objects.get(pk=action.pk).decisions.count() == 1


def test_step_up__page__step_up_then_go_back(step_up_on, reviewer):
    give_second_factor(reviewer)
    client = Client()
    client.force_login(reviewer)
    bad = client.post("/accounts/step-up/", {"step_up_code": "000000", "next": "/decided"})
    assert bad.status_code == 403
    unthrottle(reviewer)
    ok = client.post(
        "/accounts/step-up/", {"step_up_code": next_code(reviewer), "next": "/decided"}
    )
    assert (ok.status_code, ok["Location"]) == (302, "/decided")
    evil = client.post("/accounts/step-up/", {"next": "https://evil.example/"})
    assert evil["Location"] == "/"  # already fresh: goes to the queue, never off-site


def test_step_up__governance_change_approval__api(step_up_on, support_agent):
    from governance import actions as governance_actions

    author = factories.make_user("gwen", groups=("governance_owner",))
    approver = factories.make_user("gus", groups=("governance_owner",))
    give_second_factor(approver)
    change_request = governance_actions.propose_change(
        agent=support_agent, user=author, changes={"tier": "autonomous"}, reason="ready"
    ).change_request
    client = Client()
    client.force_login(approver)
    url = f"/api/v1/changes/{change_request.pk}/approve"
    refused = client.post(url, {"revision": 1}, content_type="application/json")
    assert (refused.status_code, refused.json()["code"]) == (403, "step_up_required")
    ok = client.post(
        url,
        {"revision": 1},
        content_type="application/json",
        HTTP_X_AIRLOCK_OTP=next_code(approver),
    )
    assert ok.status_code == 200 and ok.json()["status"] == "applied"
