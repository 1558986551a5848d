"""Issue 16 class 9: every ``next`` goes through ``core.redirects`` — a foreign,
scheme-relative, backslash or ``javascript:`` target sends the person to the safe default,
and never answers 500."""

import pytest
from django.test import RequestFactory

from core.redirects import safe_redirect_target
from tests import factories

EVIL = [
    "https://evil.example/",
    "http://evil.example/phish",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "javascript:alert(1)",
    " javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https:evil.example",
    "http://testserver@evil.example/",
]
# The four kinds every view is checked with (the helper itself gets the whole list).
VIEW_EVIL = ["https://evil.example/", "//evil.example", "javascript:alert(1)", "/\\evil.example"]


@pytest.mark.parametrize("target", EVIL)
def test_safe_redirect_target__evil__fallback(target):
    request = RequestFactory().get("/")
    assert safe_redirect_target(request, target, "/safe") == "/safe"


@pytest.mark.parametrize("target", ["/decided", "/?risk=medium", "http://testserver/decided"])
def test_safe_redirect_target__own_site__kept(target):
    assert safe_redirect_target(RequestFactory().get("/"), target, "/safe") == target


def test_safe_redirect_target__http_from_secure_request__fallback():
    request = RequestFactory().get("/", secure=True)
    assert safe_redirect_target(request, "http://testserver/decided", "/safe") == "/safe"
    assert safe_redirect_target(request, "https://testserver/decided", "/safe") != "/safe"


@pytest.mark.parametrize("target", VIEW_EVIL)
@pytest.mark.parametrize("case", ["wrong_confirm", "engaged", "already_engaged"])
def test_incidents_engage__evil_next__redirected_to_incidents(
    client, incident_owner, support_agent, target, case
):
    client.force_login(incident_owner)
    body = {"scope": "agent", "target": support_agent.slug, "reason": "loop", "next": target}
    body["confirm"] = "nope" if case == "wrong_confirm" else support_agent.slug
    if case == "already_engaged":
        client.post("/incidents/engage", {**body, "next": ""})
    response = client.post("/incidents/engage", body)
    if case == "wrong_confirm":
        # A refusal re-renders the form with what was typed: no redirect at all
        assert response.status_code == 400 and not response.has_header("Location")
        return
    assert response.status_code == 302
    assert response["Location"] == "/incidents"


def test_incidents_engage__own_next__kept(client, incident_owner, support_agent):
    client.force_login(incident_owner)
    response = client.post(
        "/incidents/engage",
        {
            "scope": "agent",
            "target": support_agent.slug,
            "reason": "x",
            "confirm": support_agent.slug,
            "next": "/decided",
        },
    )
    assert response["Location"] == "/decided"


@pytest.mark.parametrize("target", VIEW_EVIL)
def test_approve__evil_next__redirected_to_the_action(client, reviewer, support_agent, target):
    action = factories.submit(support_agent, "send_email")
    client.force_login(reviewer)
    response = client.post(
        f"/actions/{action.pk}/approve", {"payload_hash": action.payload_hash, "next": target}
    )
    assert response.status_code == 302
    assert response["Location"] == f"/actions/{action.pk}"


@pytest.mark.parametrize("target", VIEW_EVIL)
def test_step_up__evil_next__page_offers_the_queue(client, reviewer, target):
    client.force_login(reviewer)
    response = client.get("/accounts/step-up/", {"next": target})
    assert response.status_code == 200
    assert response.context["next"] == "/"


@pytest.mark.parametrize("target", VIEW_EVIL)
def test_admin_login__evil_next__sends_to_admin(client, reference_data, target):
    response = client.get("/admin/login/", {"next": target})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2F"


@pytest.mark.parametrize("target", VIEW_EVIL)
def test_login__evil_next__lands_on_the_default(client, reference_data, target):
    factories.make_user("lena")
    response = client.post(
        f"/accounts/login/?next={target}", {"username": "lena", "password": "pw-for-tests"}
    )
    assert response.status_code == 302
    assert "evil" not in response["Location"] and "javascript" not in response["Location"].lower()
