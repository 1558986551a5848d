"""Every route of the URLconf (discovered, so new ones are covered without editing this
file) sends the Content-Security-Policy; every form that posts refuses a post without its
CSRF token; the session-authenticated decision and governance APIs refuse a POST without
the CSRF header and write nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.personal_tokens import create_personal_token
from approvals.models import Action, Decision
from audit.chain import Actor
from governance import actions as governance_actions
from governance.models import ChangeRequest
from incidents.actions import engage_kill_switch
from rollout.models import KillSwitch
from tests import factories

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}
# The one page with an exception, and why: Swagger UI's stylesheet draws its icons as data:
# SVG images (images cannot run script).
EXCEPTIONS = {"/api/docs/": {"img-src": "'self' data:"}}

ROUTE_PARAMETER = re.compile(r"<(?:\w+:)?(?P<name>\w+)>")
REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>[^)]*\)")


def url_routes(patterns: list | None = None, prefix: str = "") -> Iterator[str]:
    """Every route of the URLconf as a template (``agents/<slug:slug>``), named or not."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            yield from url_routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern)


def concrete(route: str, values: dict[str, Any]) -> str:
    """``route`` with its parameters filled from ``values`` (a parameter without a value
    fails the test: give it one below)."""
    path = ROUTE_PARAMETER.sub(lambda m: str(values[m["name"]]), route)
    path = REGEX_GROUP.sub(lambda m: str(values[m["name"]]), path)
    return "/" + path.replace("^", "").replace("$", "")


@dataclass
class Site:
    """Data on every page: a pending and a decided action, an open change request, an
    engaged kill switch, tokens, a second person."""

    admin: Any
    values: dict[str, Any]

    def paths(self) -> list[str]:
        return sorted({concrete(route, self.values) for route in url_routes()})


@pytest.fixture
def site(support_agent: Any, other_agent: Any, reviewer: Any) -> Site:
    admin = factories.make_user("site-admin", superuser=True)
    factories.make_token(support_agent)
    pending = factories.submit(support_agent, "send_email", {"to": "dana@example.com"})
    factories.submit(support_agent, "get_order_status", {"order_id": "ORD-1"})
    factories.submit(support_agent, "create_refund_request", {"order_id": "ORD-2", "amount": 5})
    governor = factories.make_user("site-governor", groups=("governance_owner",))
    change = governance_actions.propose_change(
        agent=support_agent, user=governor, changes={"tier": "autonomous"}, reason="more autonomy"
    ).change_request
    switch = engage_kill_switch(
        scope=KillSwitch.Scope.AGENT,
        target=other_agent.slug,
        reason="refund loop",
        actor=Actor.user(admin),
    )
    device = TOTPDevice.objects.create(user=reviewer, name="phone", confirmed=False)
    token, _ = create_personal_token(
        user=admin, name="laptop", scopes=["decide"], expires_in_days=30
    )
    values = {
        "slug": support_agent.slug,
        "action_id": pending.pk,
        "change_id": change.pk,
        "switch_id": switch.pk,
        "token_id": token.pk,
        "user_id": reviewer.pk,
        "number": 1,
        "version_id": support_agent.policy_versions.order_by("number").first().pk,
        "event_id": 1,
        "standing_id": 1,
        "case_id": 1,
        "token": "no-such-link",  # an email decision link (unknown: its refusal page)
        "tool": "send_email",
        "object_id": admin.pk,
        "pk": device.pk,  # the admin's TOTP device pages
        "id": admin.pk,
        "content_type_id": 1,
        "app_label": "auth",
        "url": "no-such-admin-page/",
    }
    return Site(admin, values)


def policy_of(header: str) -> dict[str, str]:
    pairs = (part.strip().split(None, 1) for part in header.split(";") if part.strip())
    return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}


def test_every_route__as_superuser_and_anonymous__sends_the_csp(site: Site) -> None:
    # Given every route of the URLconf, with data present
    paths = site.paths()
    assert len(paths) > 150  # the pages, the API and the admin
    signed_in = Client()
    signed_in.force_login(site.admin)
    missing: list[str] = []
    for client, who in ((signed_in, "superuser"), (Client(), "anonymous")):
        for path in paths:
            # When it is fetched (whatever the answer: page, JSON, redirect, 404, 405)
            response = client.get(path)
            # Then it carries the policy: no inline script or style, nothing from elsewhere
            header = response.headers.get("Content-Security-Policy")
            expected = {**POLICY, **EXCEPTIONS.get(path, {})}
            if header is None or policy_of(header) != expected:
                missing.append(f"{who} GET {path} -> {response.status_code}: {header}")
    assert not missing, "\n".join(missing)


class PostForms(HTMLParser):
    """The ``<form method="post">`` of a page: their actions and field names."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form" and (attributes.get("method") or "").lower() == "post":
            self.forms.append({"action": attributes.get("action") or "", "fields": {}})
        elif tag in {"input", "select", "textarea"} and self.forms and attributes.get("name"):
            self.forms[-1]["fields"][attributes["name"]] = attributes.get("value") or "x"


def post_forms(client: Client, paths: list[str]) -> dict[str, dict]:
    """Every form that posts, by action URL, found on the HTML pages among ``paths``."""
    found: dict[str, dict] = {}
    for path in paths:
        response = client.get(path)
        if response.status_code != 200 or "text/html" not in response.headers.get(
            "Content-Type", ""
        ):
            continue
        parser = PostForms()
        parser.feed(response.content.decode())
        for form in parser.forms:
            action = form["action"] or path
            if action.startswith("/"):
                found.setdefault(action.split("#")[0], {"page": path, **form})
    return found


def test_every_post_form__without_csrf_token__403_and_nothing_written(site: Site) -> None:
    # Given every form that posts, on every page a superuser (and anyone) can open
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(site.admin)
    forms = post_forms(browser, site.paths())
    anonymous = Client(enforce_csrf_checks=True)
    login_forms = post_forms(anonymous, ["/accounts/login/"])
    # (the pages' forms are there: decide, govern, stop, tokens, people, login, the admin)
    assert len(forms) >= 25, sorted(forms)
    for expected in (
        f"/actions/{site.values['action_id']}/approve",
        f"/changes/{site.values['change_id']}/approve",
        f"/incidents/{site.values['switch_id']}/release",
        "/incidents/engage",
        f"/people/{site.values['user_id']}/disable",
        "/accounts/tokens/",
    ):
        assert any(action.startswith(expected) for action in forms), (expected, sorted(forms))
    assert login_forms
    before = (Action.objects.count(), Decision.objects.count(), KillSwitch.objects.count())
    accepted: list[str] = []
    for client, found in ((browser, forms), (anonymous, login_forms)):
        for action, form in found.items():
            # When it is posted with its fields but without the CSRF token
            fields = {k: v for k, v in form["fields"].items() if k != "csrfmiddlewaretoken"}
            response = client.post(action, fields)
            # Then it is refused before the view runs
            if response.status_code != 403:
                accepted.append(f"{action} (on {form['page']}) -> {response.status_code}")
    assert not accepted, "\n".join(accepted)
    # and nothing was decided, stopped or created
    assert (Action.objects.count(), Decision.objects.count(), KillSwitch.objects.count()) == before
    assert Action.objects.get(pk=site.values["action_id"]).status == "pending"
    assert ChangeRequest.objects.get(pk=site.values["change_id"]).status == "open"


def test_session_apis__post_without_csrf_header__403__with_it__accepted(site: Site) -> None:
    # Given a superuser signed in by session (cookies only, as a browser would send them)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(site.admin)
    action_id, change_id = site.values["action_id"], site.values["change_id"]
    posts = [
        (f"/api/v1/actions/{action_id}/decisions", {"verdict": "approve"}),
        ("/api/v1/kill-switches", {"scope": "global", "reason": "forged"}),
        (f"/api/v1/kill-switches/{site.values['switch_id']}/release", {"reason": "forged"}),
        (f"/api/v1/changes/{change_id}/approve", {}),
        (f"/api/v1/changes/{change_id}/reject", {"comment": "forged"}),
        (
            "/api/v1/agents/support-assistant/changes",
            {"changes": {"tier": "read_only"}, "reason": "x"},
        ),
        ("/api/v1/agents/support-assistant/tokens", {"name": "forged"}),
        ("/api/v1/agents/support-assistant/webhook-secret", {}),
        ("/api/v1/agents", {"slug": "forged", "name": "Forged"}),
    ]
    before = (Decision.objects.count(), KillSwitch.objects.count(), ChangeRequest.objects.count())
    for path, body in posts:
        # When a page elsewhere makes the browser post without the CSRF header
        response = browser.post(path, body, content_type="application/json")
        # Then it is refused, with the API's error body
        assert response.status_code == 403, (path, response.status_code, response.content)
        assert response.json()["code"] == "permission_denied"
        assert "CSRF" in response.json()["detail"]
    # and nothing was written
    after = (Decision.objects.count(), KillSwitch.objects.count(), ChangeRequest.objects.count())
    assert after == before
    assert Action.objects.get(pk=action_id).status == "pending"

    # With the header (as the dashboard's own code sends it) the same decision is accepted
    browser.get("/queue")  # sets the CSRF cookie
    token = browser.cookies["csrftoken"].value
    response = browser.post(
        f"/api/v1/actions/{action_id}/decisions",
        {"verdict": "approve"},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 201, response.content
