"""Issue 16, classes 1 and 2: credential operations, through the interface an attacker
holding a stolen session (or a token) would use.

1. Enrolling, replacing or removing a second factor, new recovery codes and creating a
   personal token need the password typed again (``accounts.reauth``): a session alone is
   refused (403, audited), a wrong password counts as a failed login; with the password
   the operation works, is audited and owes the person one email (no secret in it).
2. Issuing an agent token and rotating an agent's webhook secret need step-up (when
   ``STEP_UP_ENABLED``) and are audited (who, which agent, never the secret), on the pages,
   the API (``POST /api/v1/agents/{slug}/webhook-secret``) and ``manage.py webhook_secret``."""

from __future__ import annotations

import io
import re
import time

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts import personal_tokens, reauth, twofactor
from accounts.models import LoginFailure, PersonalToken
from approvals.models import Outbox
from audit import verbs
from audit.models import AuditEvent
from rollout.models import Agent, AgentToken
from tests import factories
from tests.access_support import (
    current_counter,
    give_second_factor,
    next_code,
    password_step,
    totp,
)

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests"


def events(verb: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(verb=verb).order_by("id"))


def emails_to(address: str) -> list[Outbox]:
    return list(Outbox.objects.filter(kind=Outbox.Kind.EMAIL, destination=address))


def stolen_session(user) -> Client:
    """A session cookie and nothing else: what a thief of the cookie holds."""
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def person(reference_data):
    user = factories.make_user("rita", groups=("reviewer",))
    user.email = "rita@example.com"
    user.save(update_fields=["email"])
    return user


@pytest.fixture
def governor(reference_data):
    user = factories.make_user("gina", groups=("governance_owner",))
    user.email = "gina@example.com"
    user.save(update_fields=["email"])
    return user


def _waiting_code(user) -> str:
    """The current code of the device ``user`` is enrolling (shown on the page)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).latest("pk")
    return totp(device.key, current_counter())


# --- class 1: the password again --------------------------------------------------------------


def test_enrol__stolen_session_without_password__refused_then_password_enrols(person):
    # Given a session of a person without a second factor (no password typed in it)
    client = stolen_session(person)
    page = client.get("/accounts/two-factor/")
    # Then the page asks for the password inline with the enrolment form
    assert page.status_code == 200
    assert b'name="current_password"' in page.content
    assert b'autocomplete="current-password"' in page.content
    # When the holder of the session posts a good code from their own app, without it
    refused = client.post(
        "/accounts/two-factor/", {"operation": "enrol", "code": _waiting_code(person)}
    )
    # Then nothing is enrolled, the refusal is audited, nobody is emailed
    assert refused.status_code == 403
    assert "enter your password" in refused.content.decode()
    assert not twofactor.has_second_factor(person)
    assert [e.data["code"] for e in events(verbs.ACCESS_REFUSED)] == ["reauth_required"]
    assert not events(verbs.TWO_FACTOR_ENROLLED) and not emails_to(person.email)
    # When the password is wrong
    wrong = client.post(
        "/accounts/two-factor/",
        {"operation": "enrol", "code": _waiting_code(person), "current_password": "guess"},
    )
    # Then it is refused and counted like a failed login
    assert wrong.status_code == 403 and not twofactor.has_second_factor(person)
    assert LoginFailure.objects.filter(username="rita").count() == 1
    # When the person types their password with the code
    ok = client.post(
        "/accounts/two-factor/",
        {"operation": "enrol", "code": _waiting_code(person), "current_password": PASSWORD},
    )
    # Then the second factor is on, recovery codes are shown once, all is audited
    assert ok.status_code == 200 and twofactor.has_second_factor(person)
    codes = re.findall(r"[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}", ok.content.decode())
    assert len(codes) == 10
    assert len(events(verbs.TWO_FACTOR_ENROLLED)) == 1
    reauthed = events(verbs.AUTH_REAUTHENTICATED)
    assert [e.data["purpose"] for e in reauthed] == ["turn on two-factor authentication"]
    assert PASSWORD not in str(reauthed[0].data)
    # And exactly one email is owed to the account's address, with no secret in it
    (mail,) = emails_to(person.email)
    text = str(mail.payload)
    assert "second factor" in text and "rita" in text
    device = twofactor.confirmed_device(person)
    assert device.key not in text and twofactor.secret_text(device) not in text
    assert not any(code in text for code in codes)


def test_reauth__wrong_passwords__lock_like_logins_and_the_login_too(person, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    client = stolen_session(person)
    data = {"name": "cli", "scopes": ["decide"], "expires_in_days": 7}
    for _ in range(2):
        wrong = client.post("/accounts/tokens/", {**data, "current_password": "guess"})
        assert wrong.status_code == 403
    # Then even the right password is refused for a while, here and at the login page
    locked = client.post("/accounts/tokens/", {**data, "current_password": PASSWORD})
    assert locked.status_code == 429 and "paused" in locked.content.decode()
    assert password_step(Client(), "rita").status_code == 429
    assert not PersonalToken.objects.exists()
    assert len(events(verbs.AUTH_LOGIN_LOCKED)) == 1
    assert {e.data["code"] for e in events(verbs.ACCESS_REFUSED)} == {
        "reauth_failed",
        "reauth_throttled",
    }


def test_reauth__window__password_counts_for_a_while_then_is_asked_again(person, settings):
    client = stolen_session(person)
    data = {"name": "cli", "scopes": ["decide"], "expires_in_days": 7}
    # Given the password was typed with one operation
    first = client.post("/accounts/tokens/", {**data, "current_password": PASSWORD})
    assert first.status_code == 200
    assert PersonalToken.objects.count() == 1
    # Then a second one within the window needs nothing more (the form stops asking)
    assert b'name="current_password"' not in client.get("/accounts/profile/").content
    assert client.post("/accounts/tokens/", {**data, "name": "two"}).status_code == 200
    # When the window has passed
    session = client.session
    session[reauth.SESSION_KEY] = time.time() - settings.REAUTH_WINDOW_SECONDS - 1
    session.save()
    # Then it is asked again
    assert client.post("/accounts/tokens/", {**data, "name": "three"}).status_code == 403
    assert PersonalToken.objects.count() == 2


def test_login__does_not_count_as_reauthentication(person):
    # A cookie taken right after the login is still only a cookie.
    client = Client()
    assert password_step(client, "rita").status_code == 302
    data = {"name": "cli", "scopes": ["decide"], "expires_in_days": 7}
    assert client.post("/accounts/tokens/", data).status_code == 403


def test_personal_token__needs_password__audited_and_emailed_without_the_token(person):
    client = stolen_session(person)
    data = {"name": "laptop", "scopes": ["decide"], "expires_in_days": 7}
    page = client.get("/accounts/profile/")
    assert b'data-testid="reauth-field"' in page.content
    refused = client.post("/accounts/tokens/", data)
    assert refused.status_code == 403 and not PersonalToken.objects.exists()
    assert not emails_to(person.email)
    ok = client.post("/accounts/tokens/", {**data, "current_password": PASSWORD})
    assert ok.status_code == 200
    token = re.search(r'data-testid="personal-token">(alp_[A-Za-z0-9_-]+)<', ok.content.decode())
    assert token
    assert len(events(verbs.PERSONAL_TOKEN_CREATED)) == 1
    (mail,) = emails_to(person.email)
    assert "laptop" in str(mail.payload) and token.group(1) not in str(mail.payload)


def test_remove_and_recovery_codes__need_password__emailed(person):
    give_second_factor(person)
    client = stolen_session(person)
    # New recovery codes: refused without the password, even with a good code
    refused = client.post(
        "/accounts/two-factor/", {"operation": "recovery_codes", "code": next_code(person)}
    )
    assert refused.status_code == 403 and not person.recovery_codes.exists()
    ok = client.post(
        "/accounts/two-factor/",
        {"operation": "recovery_codes", "code": next_code(person), "current_password": PASSWORD},
    )
    assert ok.status_code == 200 and person.recovery_codes.count() == 10
    # Removing: the window is open now; past it, the password is asked again
    session = client.session
    session[reauth.SESSION_KEY] = 0
    session.save()
    refused = client.post(
        "/accounts/two-factor/", {"operation": "remove", "code": next_code(person)}
    )
    assert refused.status_code == 403 and twofactor.has_second_factor(person)
    removed = client.post(
        "/accounts/two-factor/",
        {"operation": "remove", "code": next_code(person), "current_password": PASSWORD},
    )
    assert removed.status_code == 302 and not twofactor.has_second_factor(person)
    assert len(events(verbs.TWO_FACTOR_REMOVED)) == 1
    lines = [mail.payload["line"] for mail in emails_to(person.email)]
    assert len(lines) == 2
    assert "recovery codes" in lines[0] and "turned off" in lines[1]


def test_login_enrol__required_role__needs_no_second_password(person, settings):
    # The password was typed a moment ago, at the login step: that is fresh enough.
    settings.TWO_FACTOR_REQUIRED_ROLES = ["reviewer"]
    client = Client()
    response = password_step(client, "rita")
    assert response["Location"] == "/accounts/login/enrol/"
    page = client.get("/accounts/login/enrol/")
    assert b'name="current_password"' not in page.content
    done = client.post("/accounts/login/enrol/", {"code": _waiting_code(person)})
    assert done.status_code == 200 and twofactor.has_second_factor(person)
    assert len(emails_to(person.email)) == 1


# --- class 2: agent tokens and webhook secrets ---------------------------------------------------


@pytest.fixture
def step_up_on(settings):
    settings.STEP_UP_ENABLED = True


def _no_secret_in(event: AuditEvent, *secrets: str) -> None:
    text = str(event.data)
    for secret in secrets:
        assert secret not in text


def test_agent_token__page__needs_step_up_then_audited(step_up_on, governor, support_agent):
    give_second_factor(governor)
    client = stolen_session(governor)
    url = f"/agents/{support_agent.slug}/tokens"
    page = client.get(f"/agents/{support_agent.slug}/tokens")
    assert b'id="step-up-agent-token"' in page.content
    assert b'id="step-up-webhook-secret"' in page.content
    refused = client.post(url, {"name": "ci"})
    assert refused.status_code == 302
    assert not AgentToken.objects.filter(agent=support_agent, name="ci").exists()
    assert [e.data["code"] for e in events(verbs.ACCESS_REFUSED)] == ["step_up_required"]
    ok = client.post(url, {"name": "ci", "step_up_code": next_code(governor)})
    assert ok.status_code == 200
    token = re.search(r"(alk_[A-Za-z0-9_-]+)", ok.content.decode())
    assert token
    (issued,) = events(verbs.AGENT_TOKEN_ISSUED)
    assert (issued.actor_type, issued.actor) == (
        "user",
        "gina",
    ) and issued.agent_slug == support_agent.slug
    _no_secret_in(issued, token.group(1))


def test_agent_token__api__needs_step_up(step_up_on, governor, support_agent):
    give_second_factor(governor)
    client = stolen_session(governor)
    url = f"/api/v1/agents/{support_agent.slug}/tokens"
    refused = client.post(url, {"name": "ci"}, content_type="application/json")
    assert (refused.status_code, refused.json()["code"]) == (403, "step_up_required")
    ok = client.post(
        url, {"name": "ci"}, content_type="application/json", HTTP_X_AIRLOCK_OTP=next_code(governor)
    )
    assert ok.status_code == 201 and ok.json()["token"]
    _no_secret_in(events(verbs.AGENT_TOKEN_ISSUED)[0], ok.json()["token"])


def test_webhook_secret__page__needs_step_up_then_shown_once(step_up_on, governor, support_agent):
    give_second_factor(governor)
    client = stolen_session(governor)
    old = support_agent.webhook_secret
    url = f"/agents/{support_agent.slug}/webhook-secret"
    assert client.post(url).status_code == 302
    assert Agent.objects.get(pk=support_agent.pk).webhook_secret == old
    ok = client.post(url, {"step_up_code": next_code(governor)})
    new = Agent.objects.get(pk=support_agent.pk).webhook_secret
    assert ok.status_code == 200 and new != old and new in ok.content.decode()
    assert "no-store" in ok["Cache-Control"]
    (rotated,) = events(verbs.WEBHOOK_SECRET_ROTATED)
    assert (rotated.actor_type, rotated.actor) == (
        "user",
        "gina",
    ) and rotated.agent_slug == support_agent.slug
    _no_secret_in(rotated, old, new)


def test_webhook_secret__api__governor_with_step_up__new_secret_once(
    step_up_on, governor, support_agent
):
    give_second_factor(governor)
    client = stolen_session(governor)
    url = f"/api/v1/agents/{support_agent.slug}/webhook-secret"
    old = support_agent.webhook_secret
    refused = client.post(url)
    assert (refused.status_code, refused.json()["code"]) == (403, "step_up_required")
    ok = client.post(url, HTTP_X_AIRLOCK_OTP=next_code(governor))
    assert ok.status_code == 200 and "no-store" in ok["Cache-Control"]
    body = ok.json()
    new = Agent.objects.get(pk=support_agent.pk).webhook_secret
    assert body["webhook_secret"] == new != old and body["agent"] == support_agent.slug
    assert body["previous_accepted_until"]
    (rotated,) = events(verbs.WEBHOOK_SECRET_ROTATED)
    assert (rotated.actor_type, rotated.actor) == ("user", "gina")
    _no_secret_in(rotated, old, new)
    # The agent's own page and API never show it again
    assert new not in client.get(f"/api/v1/agents/{support_agent.slug}").content.decode()


def test_webhook_secret__api__scopes_and_roles(governor, reviewer, support_agent):
    url = f"/api/v1/agents/{support_agent.slug}/webhook-secret"
    tokens = {}
    for scope in ("govern", "decide"):
        _, tokens[scope] = personal_tokens.create_personal_token(
            user=governor, name=scope, scopes=[scope], expires_in_days=7
        )
    decide = APIClient()
    decide.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['decide']}")
    assert decide.post(url).status_code == 403
    assert stolen_session(reviewer).post(url).status_code == 403
    agent_token = factories.make_token(support_agent)
    as_agent = APIClient()
    as_agent.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_token}")
    assert as_agent.post(url).status_code == 403
    assert not events(verbs.WEBHOOK_SECRET_ROTATED)
    govern = APIClient()
    govern.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['govern']}")
    ok = govern.post(url)
    assert ok.status_code == 200
    assert ok.json()["webhook_secret"] == Agent.objects.get(pk=support_agent.pk).webhook_secret


def test_webhook_secret__openapi_documents_it(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    assert "/api/v1/agents/{slug}/webhook-secret" in schema
    assert "rotate_agent_webhook_secret" in schema


def test_webhook_secret__command__prints_only_the_secret_and_audits(support_agent):
    out = io.StringIO()
    call_command("webhook_secret", support_agent.slug, stdout=out)
    printed = out.getvalue().strip()
    agent = Agent.objects.get(pk=support_agent.pk)
    assert printed == agent.webhook_secret and printed.startswith("whsec_")
    (rotated,) = events(verbs.WEBHOOK_SECRET_ROTATED)
    assert (rotated.actor_type, rotated.actor) == (
        "system",
        "cli",
    ) and rotated.agent_slug == agent.slug
    _no_secret_in(rotated, printed)
    with pytest.raises(CommandError):
        call_command("webhook_secret", "no-such-agent", stdout=io.StringIO())
