"""Personal API tokens and disabling people, through real HTTP requests: a token acts as its
owner narrowed by its scopes; every use is audited with its name; a disabled person loses
sessions and tokens at once."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import personal_tokens
from accounts.models import PersonalToken
from audit import verbs
from audit.chain import Actor
from audit.models import AuditEvent
from core.digests import token_digest
from incidents.actions import engage_kill_switch
from rollout.models import KillSwitch
from tests import factories
from tests.access_support import give_second_factor, next_code

pytestmark = pytest.mark.django_db


@pytest.fixture
def oncall(reference_data):
    """A person holding every role (the token's scopes will narrow it)."""
    return factories.make_user(
        "olga",
        groups=("reviewer", "incident_owner", "auditor", "governance_owner"),
        perms=("rollout.critical_approve_agent",),
    )


def token_for(user, *scopes: str, days: int = 30) -> str:
    _, token = personal_tokens.create_personal_token(
        user=user, name=f"{'+'.join(scopes)} script", scopes=list(scopes), expires_in_days=days
    )
    return token


def api(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_profile__create_token__shown_once_stored_hashed(oncall):
    client = Client()
    client.force_login(oncall)
    response = client.post(
        "/accounts/tokens/",
        {
            "name": "oncall CLI",
            "scopes": ["decide", "kill"],
            "expires_in_days": 30,
            "current_password": "pw-for-tests",  # asked again (accounts.reauth)
        },
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = re.search(
        r'data-testid="personal-token">(alp_[A-Za-z0-9_-]+)<', response.content.decode()
    )
    assert token
    record = PersonalToken.objects.get(user=oncall)
    assert record.scopes == ["decide", "kill"] and record.token_hash != token.group(1)
    assert record.token_hash == token_digest(token.group(1))
    # the profile page lists it without the token
    page = client.get("/accounts/profile/").content.decode()
    assert "oncall CLI" in page and token.group(1) not in page
    created = AuditEvent.objects.get(verb=verbs.PERSONAL_TOKEN_CREATED)
    assert created.data["name"] == "oncall CLI" and created.data["scopes"] == ["decide", "kill"]


def test_profile__create_token__invalid_scope_or_expiry_refused(oncall, settings):
    client = Client()
    client.force_login(oncall)
    bad = client.post("/accounts/tokens/", {"name": "x", "scopes": ["root"], "expires_in_days": 30})
    assert bad.status_code == 400
    settings.PERSONAL_TOKEN_MAX_DAYS = 30
    long = client.post(
        "/accounts/tokens/", {"name": "x", "scopes": ["decide"], "expires_in_days": 365}
    )
    assert long.status_code == 400
    assert not PersonalToken.objects.exists()


def test_profile__create_token__needs_step_up_when_enabled(oncall, settings):
    settings.STEP_UP_ENABLED = True
    give_second_factor(oncall)
    client = Client()
    client.force_login(oncall)
    # (the password, asked again for any new token, is given: step-up is what is proved here)
    data = {
        "name": "cli",
        "scopes": ["decide"],
        "expires_in_days": 7,
        "current_password": "pw-for-tests",
    }
    assert client.post("/accounts/tokens/", data).status_code == 403
    assert b'name="step_up_code"' in client.get("/accounts/profile/").content
    ok = client.post("/accounts/tokens/", {**data, "step_up_code": next_code(oncall)})
    assert ok.status_code == 200 and PersonalToken.objects.count() == 1


def test_decide_token__decides__but_cannot_kill_govern_or_read_audit(oncall, support_agent):
    # Given an owner who may do everything, and a decide-only token of theirs
    token = token_for(oncall, "decide")
    action = factories.submit(support_agent, "send_email")
    client = api(token)
    # The token decides like its owner (no CSRF for a bearer token)
    decided = client.post(
        f"/api/v1/actions/{action.pk}/decisions", {"verdict": "approve"}, format="json"
    )
    assert decided.status_code == 201, decided.content
    assert decided.json()["decisions"][0]["reviewer"] == "olga"
    # But it cannot engage a kill switch …
    kill = client.post(
        "/api/v1/kill-switches",
        {"scope": "agent", "target": support_agent.slug, "reason": "x"},
        format="json",
    )
    assert (kill.status_code, kill.json()["code"]) == (403, "token_scope")
    assert not KillSwitch.objects.exists()
    # … nor read the audit log …
    audit = client.get("/api/v1/audit/events")
    assert audit.status_code in (403, 404), audit.status_code
    # … nor govern
    governed = client.post(
        f"/api/v1/agents/{support_agent.slug}/changes",
        {"changes": {"active": False}, "reason": "x"},
        format="json",
    )
    assert (governed.status_code, governed.json()["code"]) == (403, "token_scope")
    # … and even its reads are narrowed: kill switches are not visible to it
    assert client.get("/api/v1/kill-switches").status_code == 403


def test_kill_token__engages_and_releases_but_cannot_decide(oncall, support_agent):
    token = token_for(oncall, "kill")
    client = api(token)
    engaged = client.post(
        "/api/v1/kill-switches",
        {"scope": "agent", "target": support_agent.slug, "reason": "incident"},
        format="json",
    )
    assert engaged.status_code == 201
    assert engaged.json()["engaged_by"] == "user:olga"
    released = client.post(
        f"/api/v1/kill-switches/{engaged.json()['id']}/release", {"reason": "ok"}, format="json"
    )
    assert released.status_code == 200
    action = factories.submit(support_agent, "send_email")
    decided = client.post(
        f"/api/v1/actions/{action.pk}/decisions", {"verdict": "approve"}, format="json"
    )
    assert decided.status_code == 403


def test_read_audit_token__reads_audit_only(oncall, support_agent):
    client = api(token_for(oncall, "read_audit"))
    assert client.get("/api/v1/audit/events").status_code == 200
    action = factories.submit(support_agent, "send_email")
    assert client.get(f"/api/v1/actions/{action.pk}").status_code == 200  # an auditor sees it
    decided = client.post(
        f"/api/v1/actions/{action.pk}/decisions", {"verdict": "approve"}, format="json"
    )
    assert decided.status_code == 403


def test_govern_token__proposes_changes(oncall, support_agent):
    client = api(token_for(oncall, "govern"))
    response = client.post(
        f"/api/v1/agents/{support_agent.slug}/changes",
        {"changes": {"rate_limit_per_minute": 100}, "reason": "calmer"},
        format="json",
    )
    assert response.status_code == 201 and response.json()["applied"]


def test_token__never_more_than_its_owner(reviewer, support_agent):
    # A reviewer's token with every scope still cannot kill: the owner may not.
    client = api(token_for(reviewer, "decide", "kill", "govern", "read_audit"))
    kill = client.post(
        "/api/v1/kill-switches",
        {"scope": "agent", "target": support_agent.slug, "reason": "x"},
        format="json",
    )
    assert kill.status_code == 403
    assert client.get("/api/v1/audit/events").status_code in (403, 404)


def test_token__superuser_is_narrowed_too(support_agent, reference_data):
    root = factories.make_user("root", superuser=True)
    client = api(token_for(root, "decide"))
    kill = client.post("/api/v1/kill-switches", {"scope": "global", "reason": "x"}, format="json")
    assert kill.status_code == 403


def test_token__every_use_audited_with_its_name(oncall, support_agent):
    token = token_for(oncall, "decide")
    client = api(token)
    action = factories.submit(support_agent, "send_email")
    client.get(f"/api/v1/actions/{action.pk}")
    client.post(
        f"/api/v1/actions/{action.pk}/decisions",
        {"verdict": "reject", "comment": "no"},
        format="json",
    )
    uses = list(AuditEvent.objects.filter(verb=verbs.PERSONAL_TOKEN_USED).order_by("id"))
    assert [(u.actor, u.data["name"], u.data["method"]) for u in uses] == [
        ("olga", "decide script", "GET"),
        ("olga", "decide script", "POST"),
    ]
    assert uses[1].data["path"] == f"/api/v1/actions/{action.pk}/decisions"
    assert PersonalToken.objects.get().last_used_at is not None


def test_token__revoked_expired_or_unknown__401(oncall, support_agent):
    live = token_for(oncall, "decide")
    assert api(live).get("/api/v1/audit/verbs").status_code in (200, 403)
    record = PersonalToken.objects.get()
    personal_tokens.revoke_personal_token(token_id=record.pk, actor=oncall)
    assert api(live).get("/api/v1/kill-switches").status_code == 401
    expired = token_for(oncall, "kill")
    PersonalToken.objects.filter(revoked_at__isnull=True).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert api(expired).get("/api/v1/kill-switches").status_code == 401
    assert api("alp_" + "x" * 43).get("/api/v1/kill-switches").status_code == 401


def test_token__step_up_with_header__window_per_token(oncall, support_agent, settings):
    settings.STEP_UP_ENABLED = True
    give_second_factor(oncall)
    client = api(token_for(oncall, "decide"))
    first = factories.submit(support_agent, "wipe_database", {"scope": "a"})
    second = factories.submit(support_agent, "wipe_database", {"scope": "b"})
    refused = client.post(
        f"/api/v1/actions/{first.pk}/decisions", {"verdict": "approve"}, format="json"
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "step_up_required")
    ok = client.post(
        f"/api/v1/actions/{first.pk}/decisions",
        {"verdict": "approve"},
        format="json",
        HTTP_X_AIRLOCK_OTP=next_code(oncall),
    )
    assert ok.status_code == 201
    # the window now holds for this token (a script approving a batch)
    assert (
        client.post(
            f"/api/v1/actions/{second.pk}/decisions", {"verdict": "approve"}, format="json"
        ).status_code
        == 201
    )
    # but not for another token of the same person
    other = api(token_for(oncall, "decide"))
    third = factories.submit(support_agent, "wipe_database", {"scope": "c"})
    assert (
        other.post(
            f"/api/v1/actions/{third.pk}/decisions", {"verdict": "approve"}, format="json"
        ).status_code
        == 403
    )


def test_token__revoke_from_profile__only_own(oncall, reviewer):
    token_for(oncall, "decide")
    record = PersonalToken.objects.get()
    stranger = Client()
    stranger.force_login(reviewer)
    assert stranger.post(f"/accounts/tokens/{record.pk}/revoke").status_code == 404
    owner = Client()
    owner.force_login(oncall)
    assert owner.post(f"/accounts/tokens/{record.pk}/revoke").status_code == 302
    record.refresh_from_db()
    assert record.revoked_at is not None and record.revoked_by == "olga"


# --- people: disabling ----------------------------------------------------------------------


@pytest.fixture
def admin_user(reference_data):
    return factories.make_user("ada", superuser=True)


def test_people_page__lists_roles_rights_and_two_factor(admin_user, reviewer, support_agent):
    factories.make_user("petra", agent_perms={"rollout.kill_agent": support_agent})
    give_second_factor(reviewer)
    client = Client()
    client.force_login(admin_user)
    page = client.get("/people").content.decode()
    row = page.split('data-person="petra"')[1].split("</tr>")[0]
    assert "support-assistant" in row and "kill" in row
    rita = page.split('data-person="rita"')[1].split("</tr>")[0]
    assert "reviewer" in rita and ">on<" in rita


def test_people_page__only_for_people_managers(reviewer):
    client = Client()
    client.force_login(reviewer)
    assert client.get("/people").status_code == 403


def test_disable__ends_sessions_and_tokens_at_once(admin_user, oncall, support_agent):
    # Given a person logged in twice, with a personal token
    browser_a, browser_b = Client(), Client()
    browser_a.force_login(oncall)
    browser_b.force_login(oncall)
    token = token_for(oncall, "decide")
    action = factories.submit(support_agent, "send_email")
    assert api(token).get(f"/api/v1/actions/{action.pk}").status_code == 200
    admin = Client()
    admin.force_login(admin_user)
    sessions_before = Session.objects.count()
    # When an administrator disables them with one click
    response = admin.post(f"/people/{oncall.pk}/disable", {"reason": "left the company"})
    assert response.status_code == 302
    # Then both sessions are gone, and the token no longer works
    assert Session.objects.count() == sessions_before - 2
    assert browser_a.get("/").status_code == 302
    assert browser_b.get("/api/v1/kill-switches").status_code in (401, 403)
    assert api(token).get(f"/api/v1/actions/{action.pk}").status_code == 401
    assert PersonalToken.objects.get().revoked_at is not None
    disabled = AuditEvent.objects.get(verb=verbs.USER_DISABLED)
    assert disabled.data == {
        "username": "olga",
        "reason": "left the company",
        "signed_out": 2,
        "revoked": 1,
    }
    assert AuditEvent.objects.filter(verb=verbs.PERSONAL_TOKEN_REVOKED).count() == 1
    # Re-enabling lets them log in again; the token stays revoked
    admin.post(f"/people/{oncall.pk}/enable")
    oncall.refresh_from_db()
    assert oncall.is_active
    assert api(token).get(f"/api/v1/actions/{action.pk}").status_code == 401


def test_disable__inactive_owner_token_refused_even_if_not_revoked(oncall, support_agent):
    token = token_for(oncall, "kill")
    type(oncall).objects.filter(pk=oncall.pk).update(is_active=False)  # e.g. via the admin
    assert api(token).get("/api/v1/kill-switches").status_code == 401


def test_disable__not_yourself_and_superusers_only_by_superusers(admin_user, reference_data):
    manager = factories.make_user("max", perms=("auth.change_user",))
    client = Client()
    client.force_login(manager)
    client.post(f"/people/{admin_user.pk}/disable")
    admin_user.refresh_from_db()
    assert admin_user.is_active
    client.post(f"/people/{manager.pk}/disable")
    manager.refresh_from_db()
    assert manager.is_active


def test_disabled_kill_switch_owner__engaged_switch_stays(
    admin_user, incident_owner, support_agent
):
    # Disabling a person changes nothing they did: a switch they engaged stays engaged.
    switch = engage_kill_switch(
        scope="agent", target=support_agent.slug, reason="x", actor=Actor.user(incident_owner)
    )
    admin = Client()
    admin.force_login(admin_user)
    admin.post(f"/people/{incident_owner.pk}/disable")
    switch.refresh_from_db()
    assert switch.engaged
