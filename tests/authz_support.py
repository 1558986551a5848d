"""The world and the endpoints of the authorization matrix (``tests/test_authz_matrix.py``).

``build_world`` creates, once per module, two agents — ``alpha-agent`` (the *own* agent:
every per-agent role and the agent token belong to it) and ``bravo-agent`` (the *other*
agent) — with one object of every kind each (actions in each state, a change request,
tokens, policy versions, audit events), every role's credential (session cookies, the agent
token, personal tokens) and a few people to act on.

``OPS`` says how to call every URL of the URLconf: its name, method, kind (``page``,
``api``, ``public``, ``machine`` or ``signed`` — Slack's requests, authenticated by Slack's
signature of the body, never by a session or token), the URL arguments and body for a target side (own or
other), and what must exist first (``prepare``, run inside the test's savepoint)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.apps import apps as django_apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.personal_tokens import create_personal_token
from approvals import actions as approval_actions
from approvals.models import Action
from audit.chain import Actor
from audit.models import AuditEvent
from core.digests import token_digest
from governance import actions as governance_actions
from governance.models import RegressionCase
from incidents.actions import engage_kill_switch
from rollout.models import Agent
from rollout.reference import ensure_reference_data
from slack_approvals.actions import SlackIdentity, link_token
from tests import factories

OWN, OTHER = "own", "other"
OWN_SLUG, OTHER_SLUG = "alpha-agent", "bravo-agent"
# Text that only the other agent's objects carry: a response to someone who may not see
# that agent must never contain it.
OTHER_MARKERS = (OTHER_SLUG, "bravo-secret")
# The own agent's pending action's summary (actions are read by their reviewers and
# auditors) and its change request's reason (read by governors and auditors).
ACTION_TEXT = "alpha-secret pending"
CHANGE_TEXT = "alpha-secret promote"
COMPENSATION = {"tool": "restore_order_note", "window_seconds": 3600}
# Every person's password (tests/factories.make_user): forms that ask for it again send it.
PASSWORD = "pw-for-tests"
# The Slack identity the matrix links (slack-link).
SLACK_TEAM, SLACK_USER = "T0MATRIX", "U0MATRIX"


@dataclass
class Side:
    """One agent's objects: ids and names an endpoint's URL or body refers to."""

    agent: Agent
    slug: str
    # A pending action (send_email, medium risk, one approval needed, an hour's lease).
    pending: int = 0
    allowed: int = 0  # an allowed action not yet reported
    allowed_hash: str = ""
    executed: int = 0  # executed, with a compensation, inside its reversible window
    rollback_requested: int = 0
    shadowed: int = 0
    change_request: int = 0
    change_revision: int = 1
    spare_token: int = 0  # an agent token nobody uses (to revoke)
    version_pk: int = 0
    event: int = 0  # an audit event in this agent's partition
    # Not an agent's, but owned the same way: own is reviewer_a's token, other someone else's.
    personal_token: int = 0
    switch: int = 0  # an engaged agent kill switch (made by ``prepare``)
    # The token of an email's Approve link of ``pending``, issued to mx-reviewer (``prepare``).
    email_link: str = ""
    standing: int = 0  # a standing approval in force (made by ``prepare``)
    case: int = 0  # a kept regression case (made by ``prepare``)


@dataclass
class World:
    own: Side
    other: Side
    users: dict[str, Any]
    sessions: dict[str, str] = field(default_factory=dict)  # role -> session key
    bearers: dict[str, str] = field(default_factory=dict)  # role -> bearer token

    def secrets(self) -> tuple[str, ...]:
        """Credentials no response may ever show again: the bearer tokens and the agents'
        webhook secrets (each shown once, when issued)."""
        secrets = [*self.bearers.values()]
        for side in (self.own, self.other):
            secrets.append(Agent.objects.get(pk=side.agent.pk).webhook_secret)
        return tuple(secret for secret in secrets if secret)

    def side(self, target: str) -> Side:
        return self.own if target == OWN else self.other

    def client(self, role: str, **kwargs: Any) -> Client:
        """A test client carrying ``role``'s credential (a session cookie or a bearer
        token; none for ``anonymous``)."""
        headers = {}
        if role in self.bearers:
            headers["Authorization"] = f"Bearer {self.bearers[role]}"
        client = Client(headers=headers, **kwargs)
        if role in self.sessions:
            client.cookies[settings.SESSION_COOKIE_NAME] = self.sessions[role]
        return client


# --- the world ------------------------------------------------------------------------------

# Session roles, and how each person is made. Per-agent grants are on the own agent only.
SESSION_PEOPLE = {
    "reviewer": {"groups": ("reviewer",)},
    "reviewer_a": {"agent_perms": ("rollout.review_agent",)},
    "critical": {"groups": ("reviewer",), "perms": ("rollout.critical_approve_agent",)},
    "governor": {"groups": ("governance_owner",)},
    "governor_a": {"agent_perms": ("rollout.govern_agent",)},
    "incident": {"groups": ("incident_owner",)},
    "incident_a": {"agent_perms": ("rollout.kill_agent",)},
    "auditor": {"groups": ("auditor",)},
    "auditor_a": {"agent_perms": ("rollout.audit_agent",)},
    "superuser": {"superuser": True},
    # Held every role (and superuser), logged in, then disabled: the session must be dead.
    "disabled": {
        "groups": ("reviewer", "governance_owner", "incident_owner", "auditor"),
        "superuser": True,
    },
}
ALL_ROLES = ("reviewer", "governance_owner", "incident_owner", "auditor")
# Personal tokens of one person holding every role, narrowed by the token's scopes.
PAT_SCOPES = {
    "pat_all": ["decide", "govern", "kill", "read_audit"],
    "pat_decide": ["decide"],
    "pat_audit": ["read_audit"],
}


def _person(username: str, own: Agent, spec: dict) -> Any:
    return factories.make_user(
        username,
        groups=spec.get("groups", ()),
        perms=spec.get("perms", ()),
        agent_perms=dict.fromkeys(spec.get("agent_perms", ()), own),
        superuser=spec.get("superuser", False),
    )


def _session_key(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def _submit(agent: Agent, tool: str, arguments: dict, **body: Any) -> Any:
    return factories.submit(agent, tool, arguments, **body)


def _populate(side: Side, *, marker: str, admin: Any, author: Any) -> None:
    """One object of every kind for ``side.agent``, through the write paths."""
    agent = side.agent
    side.pending = _submit(
        agent,
        "send_email",
        {"to": "a@example.com"},
        summary=f"{marker} pending",
        lease_seconds=3600,
    ).pk
    allowed = _submit(agent, "get_order_status", {"order": 1}, summary=f"{marker} allowed")
    side.allowed, side.allowed_hash = allowed.pk, allowed.payload_hash
    for attribute, order in (("executed", 2), ("rollback_requested", 3)):
        action = _submit(
            agent,
            "get_order_status",
            {"order": order},
            compensation=COMPENSATION,
            summary=f"{marker} {attribute}",
        )
        approval_actions.report_execution(
            action_id=action.pk,
            agent=agent,
            outcome="succeeded",
            reported_hash=action.payload_hash,
        )
        setattr(side, attribute, action.pk)
    approval_actions.request_rollback(action_id=side.rollback_requested, user=admin)
    # A demotion applies at once; then a write is recorded, never run (shadowed).
    governance_actions.propose_change(
        agent=agent, user=admin, changes={"tier": "shadow"}, reason="demote"
    )
    side.shadowed = _submit(
        agent, "send_email", {"to": "s@example.com"}, summary=f"{marker} shadowed"
    ).pk
    change = governance_actions.propose_change(
        agent=agent, user=author, changes={"tier": "supervised"}, reason=f"{marker} promote"
    ).change_request
    side.change_request, side.change_revision = change.pk, change.revision
    spare = factories.make_token(agent)
    side.spare_token = agent.tokens.get(token_hash=token_digest(spare)).pk
    agent.refresh_from_db()
    side.version_pk = agent.current_policy_id
    side.event = AuditEvent.objects.filter(agent_slug=agent.slug).order_by("id").first().pk


def build_world() -> World:
    """Everything the matrix needs (see the module docstring). Runs inside the module's
    transaction, rolled back at its end."""
    ensure_reference_data(django_apps)
    own = Side(agent=factories.make_agent(OWN_SLUG), slug=OWN_SLUG)
    other = Side(agent=factories.make_agent(OTHER_SLUG), slug=OTHER_SLUG)
    users = {role: _person(f"mx-{role}", own.agent, spec) for role, spec in SESSION_PEOPLE.items()}
    admin = factories.make_user("mx-setup", superuser=True)
    author_b = factories.make_user("mx-author-b", groups=("governance_owner",))
    users["pat_owner"] = factories.make_user("mx-pat-owner", groups=ALL_ROLES)
    users["victim"] = factories.make_user("mx-victim", groups=("reviewer",))
    users["dormant"] = factories.make_user("mx-dormant", groups=("reviewer",))
    get_user_model().objects.filter(pk=users["dormant"].pk).update(is_active=False)

    # The own agent's change request is written by its own governor (who may then edit or
    # withdraw it, but not approve it); the other agent's by someone outside the matrix.
    _populate(own, marker="alpha-secret", admin=admin, author=users["governor_a"])
    _populate(other, marker="bravo-secret", admin=admin, author=author_b)

    own.personal_token = create_personal_token(
        user=users["reviewer_a"], name="mine", scopes=["decide"], expires_in_days=30
    )[0].pk
    other.personal_token = create_personal_token(
        user=users["victim"], name="theirs", scopes=["decide"], expires_in_days=30
    )[0].pk

    world = World(own=own, other=other, users=users)
    for role in SESSION_PEOPLE:
        world.sessions[role] = _session_key(users[role])
    get_user_model().objects.filter(pk=users["disabled"].pk).update(is_active=False)
    world.bearers["agent"] = factories.make_token(own.agent)
    for role, scopes in PAT_SCOPES.items():
        world.bearers[role] = create_personal_token(
            user=users["pat_owner"], name=role, scopes=scopes, expires_in_days=30
        )[1]
    return world


def engage_switches(world: World) -> None:
    """An engaged kill switch on each agent (inside the request's savepoint: engaging
    cancels the agent's pending actions)."""
    for side in (world.own, world.other):
        side.switch = engage_kill_switch(
            scope="agent", target=side.slug, reason="matrix", actor=Actor.system("tests")
        ).pk


def issue_email_links(world: World) -> None:
    """An email Approve link of each agent's pending action, issued to the ``reviewer``
    role's person only (inside the request's savepoint): everyone else holds a link that
    is not theirs."""
    for side in (world.own, world.other):
        action = Action.objects.select_related("agent").get(pk=side.pending)
        tokens = approval_actions.issue_email_decision_links(
            action=action, person=world.users["reviewer"]
        )
        side.email_link = tokens["approve"]


def make_standing_approvals(world: World) -> None:
    """A standing approval in force on each agent (reused while one is)."""
    from datetime import timedelta

    from django.utils import timezone

    from approvals.models import StandingApproval

    for side in (world.own, world.other):
        found = StandingApproval.objects.filter(agent=side.agent, ended_at__isnull=True).first()
        if found is None:
            source = _submit(side.agent, "send_email", {"to": "standing@example.com"})
            found = StandingApproval.objects.create(
                agent=side.agent,
                tool="send_email",
                arguments={"to": "standing@example.com"},
                risk="medium",
                max_uses=5,
                minutes=60,
                expires_at=timezone.now() + timedelta(hours=1),
                source_action=source,
                policy_version=side.agent.current_policy
                or Agent.objects.get(pk=side.agent.pk).current_policy,
            )
        side.standing = found.pk


def make_cases(world: World) -> None:
    """A regression case of each agent, kept from its allowed action (inside the request's
    savepoint)."""
    for side in (world.own, world.other):
        side.case = RegressionCase.objects.create(
            agent=side.agent,
            source_action_id=side.allowed,
            tool="send_email",
            # An action's content: shown only to those who may read the agent's actions.
            arguments={"body": ACTION_TEXT if side is world.own else "bravo-secret pending"},
            expected="allowed",
            kept_by=world.users["superuser"],
        ).pk


# --- the endpoints ---------------------------------------------------------------------------

Kwargs = Callable[[Side], dict]
Body = Callable[[Side, World], dict]


@dataclass(frozen=True)
class Op:
    """How to call one URL with one method."""

    name: str  # the URL's name, with its namespace
    method: str
    kind: str  # "page" (HTML, session), "api" (JSON), "public", "machine" or "signed" (Slack)
    kwargs: Kwargs | None = None
    body: Body | None = None
    query: str = ""
    # Each call gets a fresh Idempotency-Key header (the gate's submission).
    idempotent: bool = False
    prepare: Callable[[World], None] | None = None
    # Run against the own and the other agent's object (by URL or, for engaging a kill
    # switch, by body); False: one request, no agent object involved.
    targeted: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.method)

    def url(self, side: Side) -> str:
        return reverse(self.name, kwargs=self.kwargs(side) if self.kwargs else None) + self.query


def perform(
    world: World,
    op: Op,
    client: Client,
    side: Side,
    *,
    body: dict | None = None,
    headers: dict | None = None,
) -> HttpResponse:
    """One request (``body`` replaces the op's own; ``headers`` are added); a streamed
    body is read to its end (and so closed)."""
    url = op.url(side)
    if body is None:
        body = op.body(side, world) if op.body else {}
    headers = dict(headers or {})
    if op.idempotent:
        headers["Idempotency-Key"] = f"matrix-{uuid.uuid4().hex}"
    if op.method == "GET":
        response = client.get(url, headers=headers)
    elif op.kind == "api":
        response = client.generic(
            op.method, url, json.dumps(body), content_type="application/json", headers=headers
        )
    else:
        response = client.generic(
            op.method,
            url,
            urlencode(body, doseq=True),
            content_type="application/x-www-form-urlencoded",
            headers=headers,
        )
    if response.streaming:
        response._consumed = b"".join(response.streaming_content)
    return response


def body_text(response: HttpResponse) -> str:
    raw = getattr(response, "_consumed", None)
    if raw is None:
        raw = response.content
    return raw.decode("utf-8", "replace")


def outcome(response: HttpResponse) -> str:
    """The matrix's word for a response: the status code, or ``login`` for a redirect to
    the login page (the admin's login URL redirects there too)."""
    if response.status_code in (301, 302, 303) and response["Location"].startswith(
        (settings.LOGIN_URL, reverse("admin:login"))
    ):
        return "login"
    return str(response.status_code)


def _slug(side: Side) -> dict:
    return {"slug": side.slug}


def _action(attribute: str) -> Kwargs:
    return lambda side: {"action_id": getattr(side, attribute)}


def _email_link(side: Side) -> dict:
    return {"action_id": side.pending, "token": side.email_link or "not-issued"}


def _change(side: Side) -> dict:
    return {"change_id": side.change_request}


def _fixed(data: dict) -> Body:
    return lambda side, world: dict(data)


def _seen(data: dict) -> Body:
    """A decision form as the card posts it: with the payload hash the person saw."""

    def body(side: Side, world: Any) -> dict:
        seen = Action.objects.values_list("payload_hash", flat=True).get(pk=side.pending)
        return {**data, "payload_hash": seen}

    return body


def _low_risk_pending(world: Any) -> None:
    """Bulk decisions cover low-risk actions only: the world's pending actions become low."""
    Action.objects.filter(pk__in=[world.own.pending, world.other.pending]).update(risk="low")


def _bulk_body(side: Side, world: Any) -> dict:
    seen = Action.objects.values_list("payload_hash", flat=True).get(pk=side.pending)
    return {"verdict": "approve", "action": str(side.pending), f"hash-{side.pending}": seen}


REASON = _fixed({"reason": "matrix"})
PAGE_EDIT = _seen({"arguments": json.dumps({"to": "b@example.com"}), "comment": "edited"})
TIER_PROMOTION = _fixed({"tier": "read_only", "reason": "matrix"})


OPS: list[Op] = [
    # --- infrastructure and public pages
    Op("healthz", "GET", "public"),
    Op("readyz", "GET", "public"),
    Op("grants:key-set", "GET", "public"),
    Op("metrics", "GET", "machine"),
    Op("api-schema", "GET", "public"),
    Op("api-docs", "GET", "public"),
    Op("login", "GET", "public"),
    Op("admin-login-redirect", "GET", "public"),
    Op("admin:index", "GET", "page"),
    Op("login-verify", "GET", "public"),
    Op("login-verify", "POST", "public", body=_fixed({"code": "123456"})),
    Op("login-enrol", "GET", "public"),
    Op("login-enrol", "POST", "public", body=_fixed({"code": "123456"})),
    Op("logout", "POST", "public"),
    # --- accounts
    Op("two-factor", "GET", "page"),
    Op(
        "two-factor",
        "POST",
        "page",
        # With the password typed again (accounts.reauth), as the page's form sends it.
        body=_fixed({"operation": "enrol", "code": "000000", "current_password": PASSWORD}),
    ),
    Op("step-up", "GET", "page"),
    Op("step-up", "POST", "page"),
    Op("profile", "GET", "page"),
    Op(
        "personal-token-create",
        "POST",
        "page",
        body=_fixed(
            {
                "name": "cli",
                "scopes": ["decide"],
                "expires_in_days": "30",
                "current_password": PASSWORD,
            }
        ),
    ),
    Op(
        "personal-token-revoke",
        "POST",
        "page",
        kwargs=lambda side: {"token_id": side.personal_token},
        targeted=True,
    ),
    Op("people", "GET", "page"),
    Op(
        "person-disable",
        "POST",
        "page",
        kwargs=lambda side: {"user_id": _user_id("victim")},
        body=REASON,
    ),
    Op(
        "person-enable",
        "POST",
        "page",
        kwargs=lambda side: {"user_id": _user_id("dormant")},
        body=REASON,
    ),
    # --- Slack: requests signed by Slack; a person's own Slack link and threshold
    Op("slack-interactivity", "POST", "signed", body=_fixed({"payload": "{}"})),
    Op("slack-command", "POST", "signed", body=_fixed({"text": "link"})),
    Op(
        "slack-link",
        "POST",
        "page",
        body=lambda side, world: {
            "token": link_token(SlackIdentity(SLACK_TEAM, SLACK_USER, "matrix")),
            "current_password": PASSWORD,
        },
    ),
    Op("slack-unlink", "POST", "page"),
    Op("slack-threshold", "POST", "page", body=_fixed({"min_risk": "medium"})),
    # --- the dashboard
    Op("home", "GET", "page"),
    Op("home-choose", "POST", "page", body=_fixed({"home": ""})),
    Op("desktop-notifications-choose", "POST", "page", body=_fixed({"min_risk": "high"})),
    Op("queue", "GET", "page"),
    Op("decided", "GET", "page"),
    Op("action-detail", "GET", "page", kwargs=_action("pending"), targeted=True),
    Op(
        "action-approve",
        "POST",
        "page",
        kwargs=_action("pending"),
        body=_seen({"comment": "ok"}),
        targeted=True,
    ),
    Op(
        "email-decision",
        "GET",
        "page",
        kwargs=_email_link,
        prepare=issue_email_links,
        targeted=True,
    ),
    Op(
        "email-decision",
        "POST",
        "page",
        kwargs=_email_link,
        body=_fixed({"comment": "ok"}),
        prepare=issue_email_links,
        targeted=True,
    ),
    Op(
        "action-edit-approve",
        "POST",
        "page",
        kwargs=_action("pending"),
        body=PAGE_EDIT,
        targeted=True,
    ),
    Op(
        "action-reject",
        "POST",
        "page",
        kwargs=_action("pending"),
        body=_seen({"comment": "no"}),
        targeted=True,
    ),
    Op("actions-bulk", "POST", "page", body=_bulk_body, prepare=_low_risk_pending),
    Op(
        "action-extend",
        "POST",
        "page",
        kwargs=_action("pending"),
        body=_fixed({"seconds": "900"}),
        targeted=True,
    ),
    Op(
        "action-rollback",
        "POST",
        "page",
        kwargs=_action("executed"),
        body=_fixed({"comment": "undo"}),
        targeted=True,
    ),
    # --- governance pages
    Op("rollout:agent-list", "GET", "page"),
    Op("rollout:agent-register", "GET", "page"),
    Op(
        "rollout:agent-register",
        "POST",
        "page",
        body=_fixed({"slug": "charlie-agent", "name": "Charlie"}),
    ),
    Op("rollout:agent-detail", "GET", "page", kwargs=_slug, targeted=True),
    # The agent page's sections: seen like the overview
    Op("rollout:agent-policy", "GET", "page", kwargs=_slug, targeted=True),
    Op("rollout:agent-access", "GET", "page", kwargs=_slug, targeted=True),
    Op("rollout:token-issue", "GET", "page", kwargs=_slug, targeted=True),
    Op("rollout:agent-metrics", "GET", "page", kwargs=_slug, targeted=True),
    Op("rollout:agent-history", "GET", "page", kwargs=_slug, targeted=True),
    Op("rollout:agent-tier", "POST", "page", kwargs=_slug, body=TIER_PROMOTION, targeted=True),
    Op(
        "rollout:agent-settings",
        "POST",
        "page",
        kwargs=_slug,
        body=_fixed({"rate_limit_per_minute": "10", "active": "on", "reason": "matrix"}),
        targeted=True,
    ),
    Op("rollout:rule-add", "GET", "page", kwargs=_slug, targeted=True),
    Op(
        "rollout:rule-add",
        "POST",
        "page",
        kwargs=_slug,
        body=_fixed(
            {
                "tool": "lookup_invoice",
                "effect": "read",
                "rule": "allowed",
                "base_risk": "low",
                "reason": "matrix",
            }
        ),
        targeted=True,
    ),
    Op(
        "rollout:rule-edit",
        "GET",
        "page",
        kwargs=lambda side: {"slug": side.slug, "tool": "send_email"},
        targeted=True,
    ),
    Op(
        "rollout:rule-edit",
        "POST",
        "page",
        kwargs=lambda side: {"slug": side.slug, "tool": "send_email"},
        body=_fixed(
            {"effect": "write", "rule": "forbidden", "base_risk": "medium", "reason": "matrix"}
        ),
        targeted=True,
    ),
    Op(
        "rollout:rule-remove",
        "POST",
        "page",
        kwargs=lambda side: {"slug": side.slug, "tool": "send_email"},
        body=REASON,
        targeted=True,
    ),
    Op(
        "rollout:environment-tier",
        "POST",
        "page",
        kwargs=_slug,
        body=_fixed({"environment": "production", "tier": "read_only", "reason": "matrix"}),
        targeted=True,
    ),
    Op("rollout:environment-rule", "GET", "page", kwargs=_slug, targeted=True),
    Op(
        "rollout:environment-rule",
        "POST",
        "page",
        kwargs=_slug,
        body=_fixed(
            {
                "environment": "production",
                "tool": "send_email",
                "effect": "write",
                "rule": "forbidden",
                "base_risk": "medium",
                "reason": "matrix",
            }
        ),
        targeted=True,
    ),
    Op(
        "rollout:environment-rule-clear",
        "POST",
        "page",
        kwargs=_slug,
        body=_fixed({"environment": "production", "tool": "send_email", "reason": "matrix"}),
        targeted=True,
    ),
    Op(
        "rollout:token-issue",
        "POST",
        "page",
        kwargs=_slug,
        body=_fixed({"name": "ci"}),
        targeted=True,
    ),
    Op("rollout:webhook-secret-rotate", "POST", "page", kwargs=_slug, targeted=True),
    Op(
        "rollout:token-revoke",
        "POST",
        "page",
        kwargs=lambda side: {"slug": side.slug, "token_id": side.spare_token},
        targeted=True,
    ),
    Op(
        "rollout:agent-access",
        "POST",
        "page",
        kwargs=_slug,
        body=_fixed({"operation": "grant", "right": "review", "kind": "user", "name": "mx-victim"}),
        targeted=True,
    ),
    Op(
        "rollout:version-detail",
        "GET",
        "page",
        kwargs=lambda side: {"slug": side.slug, "number": 1},
        targeted=True,
    ),
    Op(
        "rollout:version-revert",
        "POST",
        "page",
        kwargs=lambda side: {"slug": side.slug, "number": 1},
        body=_fixed({"reason": "matrix", "step": "propose"}),
        targeted=True,
    ),
    Op("rollout:shadow-actions", "GET", "page", kwargs=_slug, targeted=True),
    Op(
        "rollout:shadow-label",
        "POST",
        "page",
        kwargs=lambda side: {"slug": side.slug, "action_id": side.shadowed},
        body=_fixed({"label": "would_approve"}),
        targeted=True,
    ),
    Op("rollout:agent-cases", "GET", "page", kwargs=_slug, prepare=make_cases, targeted=True),
    Op(
        "rollout:case-keep",
        "POST",
        "page",
        kwargs=_slug,
        body=lambda side, world: {"action_id": side.pending, "expected": "denied", "note": "x"},
        targeted=True,
    ),
    Op(
        "rollout:case-retire",
        "POST",
        "page",
        kwargs=lambda side: {"slug": side.slug, "case_id": side.case},
        prepare=make_cases,
        targeted=True,
    ),
    Op("rollout:change-list", "GET", "page"),
    Op("rollout:change-detail", "GET", "page", kwargs=_change, targeted=True),
    Op(
        "rollout:change-approve",
        "POST",
        "page",
        kwargs=_change,
        body=lambda side, world: {"revision": side.change_revision, "comment": "ok"},
        targeted=True,
    ),
    Op(
        "rollout:change-reject",
        "POST",
        "page",
        kwargs=_change,
        body=_fixed({"comment": "no"}),
        targeted=True,
    ),
    Op("rollout:change-withdraw", "POST", "page", kwargs=_change, targeted=True),
    Op("rollout:change-edit", "GET", "page", kwargs=_change, targeted=True),
    Op(
        "rollout:change-edit",
        "POST",
        "page",
        kwargs=_change,
        body=_fixed(
            {
                "changes": json.dumps({"tier": "read_only"}),
                "reason": "smaller step",
                "required_approvals": "1",
            }
        ),
        targeted=True,
    ),
    # --- audit pages
    Op("audit-search", "GET", "page"),
    Op("audit-export", "GET", "page"),
    Op("audit-verification", "GET", "page"),
    Op("audit-verification", "POST", "page"),
    Op("audit-action", "GET", "page", kwargs=_action("pending"), targeted=True),
    Op(
        "audit-policy-version",
        "GET",
        "page",
        kwargs=lambda side: {"version_id": side.version_pk},
        targeted=True,
    ),
    # --- incidents
    Op(
        "standing-revoke",
        "POST",
        "page",
        kwargs=lambda side: {"standing_id": side.standing},
        prepare=make_standing_approvals,
        targeted=True,
    ),
    Op("incidents", "GET", "page"),
    Op(
        "incident-engage",
        "POST",
        "page",
        body=lambda side, world: {
            "scope": "agent",
            "target": side.slug,
            "confirm": side.slug,
            "reason": "matrix",
        },
        targeted=True,
    ),
    Op(
        "incident-release",
        "POST",
        "page",
        kwargs=lambda side: {"switch_id": side.switch},
        body=REASON,
        prepare=engage_switches,
        targeted=True,
    ),
    Op(
        "incident-detail",
        "GET",
        "page",
        kwargs=lambda side: {"switch_id": side.switch},
        prepare=engage_switches,
        targeted=True,
    ),
    Op("incident-drill", "POST", "page", kwargs=_slug, targeted=True),
    # --- the agent API (and the people's list of actions)
    Op("api-action-submit", "GET", "api"),
    Op(
        "api-action-submit",
        "POST",
        "api",
        body=_fixed({"tool": "get_order_status", "arguments": {"order": 9}}),
        idempotent=True,
    ),
    Op("api-action-detail", "GET", "api", kwargs=_action("pending"), targeted=True),
    Op(
        "api-action-execution",
        "POST",
        "api",
        kwargs=_action("allowed"),
        body=lambda side, world: {"outcome": "succeeded", "payload_hash": side.allowed_hash},
        targeted=True,
    ),
    Op("api-action-withdraw", "POST", "api", kwargs=_action("pending"), targeted=True),
    Op("api-action-heartbeat", "POST", "api", kwargs=_action("pending"), targeted=True),
    # Tool services' endpoints: a service token only (tests/test_grants_online.py); every
    # role of the matrix is refused before the body is read.
    Op("api-grant-verify", "POST", "api", body=_fixed({"grant": "x.y.z"})),
    Op("api-grant-revocations", "GET", "api"),
    Op(
        "api-action-rollback",
        "POST",
        "api",
        kwargs=_action("rollback_requested"),
        body=_fixed({"outcome": "rolled_back"}),
        targeted=True,
    ),
    Op(
        "api-action-decisions",
        "POST",
        "api",
        kwargs=_action("pending"),
        body=_fixed({"verdict": "approve", "comment": "ok"}),
        targeted=True,
    ),
    Op("api-standing-list", "GET", "api", prepare=make_standing_approvals),
    Op(
        "api-standing-detail",
        "GET",
        "api",
        kwargs=lambda side: {"standing_id": side.standing},
        prepare=make_standing_approvals,
        targeted=True,
    ),
    Op(
        "api-standing-revoke",
        "POST",
        "api",
        kwargs=lambda side: {"standing_id": side.standing},
        prepare=make_standing_approvals,
        targeted=True,
    ),
    Op("api-kill-switches", "GET", "api"),
    Op(
        "api-kill-switches",
        "POST",
        "api",
        body=lambda side, world: {"scope": "agent", "target": side.slug, "reason": "matrix"},
        targeted=True,
    ),
    Op(
        "api-kill-switch-release",
        "POST",
        "api",
        kwargs=lambda side: {"switch_id": side.switch},
        body=REASON,
        prepare=engage_switches,
        targeted=True,
    ),
    # --- the governance API
    Op("rollout:api-agents", "GET", "api"),
    Op(
        "rollout:api-agents",
        "POST",
        "api",
        body=_fixed({"slug": "charlie-agent", "name": "Charlie"}),
    ),
    Op("rollout:api-agent", "GET", "api", kwargs=_slug, targeted=True),
    Op("rollout:api-agent-changes", "GET", "api", kwargs=_slug, targeted=True),
    Op(
        "rollout:api-agent-changes",
        "POST",
        "api",
        kwargs=_slug,
        body=_fixed({"changes": {"tier": "read_only"}, "reason": "matrix"}),
        targeted=True,
    ),
    Op("rollout:api-agent-versions", "GET", "api", kwargs=_slug, targeted=True),
    Op(
        "rollout:api-agent-version",
        "GET",
        "api",
        kwargs=lambda side: {"slug": side.slug, "number": 1},
        targeted=True,
    ),
    Op(
        "rollout:api-agent-version-revert",
        "POST",
        "api",
        kwargs=lambda side: {"slug": side.slug, "number": 1},
        body=_fixed({"reason": "matrix"}),
        targeted=True,
    ),
    Op("rollout:api-agent-diff", "GET", "api", kwargs=_slug, query="?from=1&to=2", targeted=True),
    Op("rollout:api-agent-readiness", "GET", "api", kwargs=_slug, targeted=True),
    Op(
        "rollout:api-agent-backtest",
        "POST",
        "api",
        kwargs=_slug,
        body=_fixed({"tier": "supervised"}),
        targeted=True,
    ),
    Op("rollout:api-agent-tokens", "GET", "api", kwargs=_slug, targeted=True),
    Op(
        "rollout:api-agent-tokens",
        "POST",
        "api",
        kwargs=_slug,
        body=_fixed({"name": "ci"}),
        targeted=True,
    ),
    Op("rollout:api-agent-webhook-secret", "POST", "api", kwargs=_slug, targeted=True),
    Op(
        "rollout:api-agent-token-revoke",
        "POST",
        "api",
        kwargs=lambda side: {"slug": side.slug, "token_id": side.spare_token},
        targeted=True,
    ),
    Op(
        "rollout:api-agent-shadow-labels",
        "POST",
        "api",
        kwargs=_slug,
        body=lambda side, world: {"action_id": side.shadowed, "label": "would_reject"},
        targeted=True,
    ),
    Op("rollout:api-changes", "GET", "api"),
    Op("rollout:api-change", "GET", "api", kwargs=_change, targeted=True),
    Op(
        "rollout:api-change",
        "PATCH",
        "api",
        kwargs=_change,
        body=_fixed({"changes": {"tier": "read_only"}}),
        targeted=True,
    ),
    Op(
        "rollout:api-change-approve",
        "POST",
        "api",
        kwargs=_change,
        body=lambda side, world: {"revision": side.change_revision},
        targeted=True,
    ),
    Op(
        "rollout:api-change-reject",
        "POST",
        "api",
        kwargs=_change,
        body=_fixed({"comment": "no"}),
        targeted=True,
    ),
    Op("rollout:api-change-withdraw", "POST", "api", kwargs=_change, targeted=True),
    # --- the audit API
    Op("api-audit-events", "GET", "api"),
    Op(
        "api-audit-event",
        "GET",
        "api",
        kwargs=lambda side: {"event_id": side.event},
        targeted=True,
    ),
    Op("api-audit-export", "GET", "api"),
    Op("api-audit-status", "GET", "api"),
    Op("api-audit-verbs", "GET", "api"),
    Op("api-audit-trace", "GET", "api", kwargs=_action("pending"), targeted=True),
    Op("api-audit-replay", "GET", "api", kwargs=_action("pending"), targeted=True),
]


def _user_id(username_role: str) -> int:
    return get_user_model().objects.get(username=f"mx-{username_role}").pk


# --- discovering the URLconf -----------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str  # with its namespace, e.g. "rollout:agent-detail"; "" when unnamed
    path: str  # the route as written, e.g. "agents/<slug:slug>"
    view: str  # dotted name of the view callable
    callback: Any = field(compare=False, repr=False, default=None)


def discover_routes() -> list[Route]:
    """Every URL pattern of the project's URLconf, walking includes and namespaces."""

    def walk(patterns: list, prefix: str, namespace: str) -> list[Route]:
        found = []
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = namespace
                if pattern.namespace:
                    inner = f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace
                found += walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
            elif isinstance(pattern, URLPattern):
                name = pattern.name or ""
                if name and namespace:
                    name = f"{namespace}:{name}"
                view = pattern.callback
                dotted = f"{view.__module__}.{getattr(view, '__qualname__', view.__name__)}"
                found.append(Route(name, prefix + str(pattern.pattern), dotted, view))
        return found

    return walk(get_resolver().url_patterns, "", "")
