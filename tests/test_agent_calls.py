"""Agents' bearer-token calls to the agent API skip the people's middlewares (session, CSRF,
the signed-in user, messages, htmx, idle timeout: config/agent_calls.py); people's calls and
pages keep them all, and no header combination turns a session's unsafe request into one
that skips CSRF."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from approvals.models import Action, Decision
from tests import factories
from tests.test_page_security import POLICY, policy_of

GATE_BODY = {"tool": "get_order_status", "arguments": {"order_id": "ORD-1"}}
# What every JSON answer carries, an agent's included.
JSON_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@pytest.fixture
def admin(reference_data: None) -> Any:
    return factories.make_user("boss", superuser=True)


def signed_in(user: Any) -> Client:
    """A browser with ``user``'s session cookie, refusing posts without the CSRF token."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    return browser


def assert_json_security_headers(response: Any) -> None:
    for name, value in JSON_SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.headers)
    assert policy_of(response.headers["Content-Security-Policy"]) == POLICY


def people_tables(queries: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in queries.captured_queries
        if "django_session" in q["sql"] or "auth_user" in q["sql"]
    ]


def test_agent_call__with_a_session_cookie_too__no_session_read_no_cookie_headers_kept(
    support_agent: Any, admin: Any
) -> None:
    # Given an agent token, and a browser that also holds a person's session cookie
    token = factories.make_token(support_agent)
    for client in (Client(), signed_in(admin)):
        # When the agent calls the gate (with the cookie, if the client has one)
        with CaptureQueriesContext(connection) as queries:
            response = client.post(
                "/api/v1/actions",
                GATE_BODY,
                content_type="application/json",
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
            )
        # Then the call is the agent's, decided as usual
        assert response.status_code == 201, response.content
        action = Action.objects.get(pk=response.json()["id"])
        assert (action.agent_id, action.status) == (support_agent.pk, "allowed")
        # without reading the session or the user, and without setting or varying on a cookie
        assert people_tables(queries) == []
        assert not response.cookies
        assert "Cookie" not in response.headers.get("Vary", "")
        # and with the security headers that apply to a JSON answer
        assert_json_security_headers(response)


def test_people__session_api_and_page__keep_csrf_session_csp_and_idle_timeout(
    admin: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a person signed in by session (the login starts the idle clock)
    settings.SESSION_IDLE_TIMEOUT_SECONDS = 600
    browser = signed_in(admin)
    # When they open a page: the session is read, the CSRF cookie set, the policy sent
    page = browser.get("/queue")
    assert page.status_code == 200
    assert "csrftoken" in page.cookies
    assert "Cookie" in page.headers["Vary"]
    assert policy_of(page.headers["Content-Security-Policy"]) == POLICY
    # When they call the API with their session: it is theirs, read from the session table
    with CaptureQueriesContext(connection) as queries:
        listed = browser.get("/api/v1/actions")
    assert listed.status_code == 200
    assert any("django_session" in sql for sql in people_tables(queries))
    assert "Cookie" in listed.headers["Vary"]
    assert_json_security_headers(listed)
    # and an unsafe call without the CSRF header is refused
    refused = browser.post("/api/v1/kill-switches", {"scope": "global", "reason": "x"},
                           content_type="application/json")  # fmt: skip
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    # When the session then sits idle past the timeout, the next API call ends it
    later = time.time() + 601
    monkeypatch.setattr("accounts.login_protection.time.time", lambda: later)
    assert browser.get("/api/v1/actions").status_code in (401, 403)
    assert not Session.objects.exists()


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        # An agent token: the call is the agent's, which may not decide (before any CSRF talk)
        ("Bearer {agent}", "agent_refused"),
        # Malformed: the whole chain, and DRF refuses the header itself
        ("Bearer {agent} extra", "401"),
        ("Bearer", "401"),
        # Split as the token's authenticator splits it (any whitespace): still the agent's
        ("Bearer\u00a0{agent}", "agent_refused"),
        # Not an agent token: the session authenticates, so CSRF is enforced
        ("Bearer not-a-token", "csrf"),
        ("Token {agent}", "csrf"),
    ],
)
def test_session_cookie_and_a_bearer__unsafe_decision_without_csrf__refused_nothing_written(
    support_agent: Any, admin: Any, authorization: str, expected: str
) -> None:
    # Given a pending action and a browser holding a person's session cookie
    pending = factories.submit(support_agent, "send_email", {"to": "dana@example.com"})
    header = authorization.format(agent=factories.make_token(support_agent))
    browser = signed_in(admin)
    # When a page elsewhere makes it post a decision with that Authorization header and no
    # CSRF token
    response = browser.post(
        f"/api/v1/actions/{pending.pk}/decisions",
        {"verdict": "approve"},
        content_type="application/json",
        headers={"Authorization": header},
    )
    # Then it is refused, and nothing is decided
    if expected == "agent_refused":
        assert response.status_code == 403
        assert "CSRF" not in response.json()["detail"]
        assert not response.cookies
    elif expected == "401":
        assert response.status_code == 401
    else:
        assert response.status_code == 403
        assert "CSRF" in response.json()["detail"]
    assert Decision.objects.count() == 0
    assert Action.objects.get(pk=pending.pk).status == "pending"
