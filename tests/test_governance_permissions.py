"""Who may see and change governance: every governance page and API endpoint, by every role
and own or other agent. A thing you may not see is 404; one you may see but not change is 403;
anonymous pages go to the login, anonymous API calls are 401; an agent token is 403 on
every governance endpoint (agents never touch their own policy)."""

import json

import pytest
from django.db import transaction
from django.test import Client

from governance import actions as governance_actions
from governance.models import ChangeRequest
from rollout.models import Agent
from tests import factories

ROLES = ["anonymous", "agent", "reviewer", "auditor", "incident", "governor_a", "governor"]


@pytest.fixture
def world(reference_data):
    agent_a = factories.make_agent("agent-a")
    agent_b = factories.make_agent("agent-b")
    author = factories.make_user("author", groups=("governance_owner",))
    users = {
        "reviewer": factories.make_user("rev", groups=("reviewer",)),
        "auditor": factories.make_user("aud", groups=("auditor",)),
        "incident": factories.make_user("inc", groups=("incident_owner",)),
        "governor_a": factories.make_user("gova", agent_perms={"rollout.govern_agent": agent_a}),
        "governor": factories.make_user("gov", groups=("governance_owner",)),
    }
    promote = {"tier": "autonomous"}
    cr_a = governance_actions.propose_change(
        agent=agent_a, user=author, changes=promote, reason="a"
    ).change_request
    cr_b = governance_actions.propose_change(
        agent=agent_b, user=author, changes=promote, reason="b"
    ).change_request
    return {
        "a": agent_a,
        "b": agent_b,
        "cr_a": cr_a,
        "cr_b": cr_b,
        "users": users,
        "token": factories.make_token(agent_a),
    }


def client_for(role, world):
    if role == "agent":
        return Client(HTTP_AUTHORIZATION=f"Bearer {world['token']}")
    client = Client()
    if role != "anonymous":
        client.force_login(world["users"][role])
    return client


def request(client, method, url, body=None):
    if method == "GET":
        return client.get(url)
    return client.generic(method, url, json.dumps(body or {}), content_type="application/json")


def form_post(client, url, data):
    return client.post(url, data)


LOGIN = "login"  # a redirect to the login page

# --- pages ---------------------------------------------------------------------------------
#            anonymous agent  reviewer auditor incident governor_a governor
PAGES = [
    ("/agents", [LOGIN, LOGIN, 200, 200, 200, 200, 200]),
    ("/agents/agent-a", [LOGIN, LOGIN, 200, 200, 200, 200, 200]),
    ("/agents/agent-b", [LOGIN, LOGIN, 200, 200, 200, 404, 200]),
    ("/agents/agent-a/versions/1", [LOGIN, LOGIN, 200, 200, 200, 200, 200]),
    ("/agents/agent-b/versions/1", [LOGIN, LOGIN, 200, 200, 200, 404, 200]),
    ("/agents/agent-a/shadow", [LOGIN, LOGIN, 200, 200, 200, 200, 200]),
    ("/agents/agent-a/rules/add", [LOGIN, LOGIN, 403, 403, 403, 200, 200]),
    ("/agents/agent-a/rules/edit/send_email", [LOGIN, LOGIN, 403, 403, 403, 200, 200]),
    ("/agents/agent-b/rules/add", [LOGIN, LOGIN, 403, 403, 403, 404, 200]),
    ("/agents/new", [LOGIN, LOGIN, 403, 403, 403, 403, 200]),
    ("/changes", [LOGIN, LOGIN, 200, 200, 200, 200, 200]),
    ("/changes/{cr_a}", [LOGIN, LOGIN, 404, 200, 404, 200, 200]),
    ("/changes/{cr_b}", [LOGIN, LOGIN, 404, 200, 404, 404, 200]),
    ("/changes/{cr_a}/edit", [LOGIN, LOGIN, 404, 403, 404, 403, 403]),  # only its author
]


def _url(template, world):
    return template.format(cr_a=world["cr_a"].pk, cr_b=world["cr_b"].pk)


def _status(response):
    """The status, or LOGIN for a redirect to the login page."""
    if response.status_code == 302 and response["Location"].startswith("/accounts/login/"):
        return LOGIN
    return response.status_code


def each_role_in_a_savepoint(world, run):
    """Run ``run(role_index)`` for every role, each inside a savepoint rolled back after,
    so every role starts from the same world (one fixture for the whole row)."""
    wrong = []
    for role_index, role in enumerate(ROLES):
        with transaction.atomic():
            problem = run(role_index)
            if problem:
                wrong.append((role, *problem))
            transaction.set_rollback(True)
    return wrong


@pytest.mark.parametrize("role_index", range(len(ROLES)), ids=ROLES)
def test_pages__get__by_role(world, role_index):
    client = client_for(ROLES[role_index], world)
    answers = {url: _status(client.get(_url(url, world))) for url, _ in PAGES}
    assert answers == {url: expected[role_index] for url, expected in PAGES}


def test_pages__lists_show_only_what_the_person_may_see(world):
    governor_a = client_for("governor_a", world)
    agents = governor_a.get("/agents").content.decode()
    assert "agent-a" in agents and "agent-b" not in agents
    changes = governor_a.get("/changes").content.decode()
    assert (
        f"/changes/{world['cr_a'].pk}" in changes and f"/changes/{world['cr_b'].pk}" not in changes
    )
    assert (
        "No open change requests" in client_for("reviewer", world).get("/changes").content.decode()
    )


# Page writes. Each: (url, form data, expected per role, did-it-happen check)
DEMOTE_FORM = {"tier": "read_only", "reason": "incident"}
PAGE_WRITES = [
    (
        "/agents/agent-a/tier",
        DEMOTE_FORM,
        [LOGIN, LOGIN, 403, 403, 403, 302, 302],
        lambda w: Agent.objects.get(slug="agent-a").tier.name == "read_only",
    ),
    (
        "/agents/agent-b/tier",
        DEMOTE_FORM,
        [LOGIN, LOGIN, 403, 403, 403, 404, 302],
        lambda w: Agent.objects.get(slug="agent-b").tier.name == "read_only",
    ),
    (
        "/agents/agent-a/settings",
        {"rate_limit_per_minute": 10, "active": "on", "reason": "calm"},
        [LOGIN, LOGIN, 403, 403, 403, 302, 302],
        lambda w: Agent.objects.get(slug="agent-a").rate_limit_per_minute == 10,
    ),
    (
        "/agents/agent-a/rules/remove/send_email",
        {"reason": "unused"},
        [LOGIN, LOGIN, 403, 403, 403, 302, 302],
        lambda w: not w["a"].tool_rules.filter(tool="send_email").exists(),
    ),
    (
        "/agents/agent-a/tokens",
        {"name": "ci"},
        [LOGIN, LOGIN, 403, 403, 403, 200, 200],
        lambda w: w["a"].tokens.filter(name="ci").exists(),
    ),
    (
        "/changes/{cr_a}/approve",
        {"revision": 1},
        [LOGIN, LOGIN, 404, 403, 404, 302, 302],
        lambda w: ChangeRequest.objects.get(pk=w["cr_a"].pk).status == "applied",
    ),
    (
        "/changes/{cr_b}/approve",
        {"revision": 1},
        [LOGIN, LOGIN, 404, 403, 404, 404, 302],
        lambda w: ChangeRequest.objects.get(pk=w["cr_b"].pk).status == "applied",
    ),
    (
        "/changes/{cr_a}/reject",
        {"comment": "no"},
        [LOGIN, LOGIN, 404, 403, 404, 302, 302],
        lambda w: ChangeRequest.objects.get(pk=w["cr_a"].pk).status == "rejected",
    ),
    (
        "/agents/new",
        {"slug": "fresh", "name": "Fresh"},
        [LOGIN, LOGIN, 403, 403, 403, 403, 302],
        lambda w: Agent.objects.filter(slug="fresh").exists(),
    ),
]


@pytest.mark.parametrize(
    ("url", "data", "expected", "happened"), PAGE_WRITES, ids=[w[0] for w in PAGE_WRITES]
)
def test_pages__post__by_role_and_only_allowed_writes_happen(world, url, data, expected, happened):
    def run(role_index):
        status = _status(form_post(client_for(ROLES[role_index], world), _url(url, world), data))
        did = happened(world)
        if status != expected[role_index] or did is not (expected[role_index] in (200, 302)):
            return (status, did)
        return None

    assert each_role_in_a_savepoint(world, run) == []


# --- API ------------------------------------------------------------------------------------
#            anonymous agent  reviewer auditor incident governor_a governor
API_READS = [
    ("/api/v1/agents", [401, 403, 200, 200, 200, 200, 200]),
    ("/api/v1/agents/agent-a", [401, 403, 200, 200, 200, 200, 200]),
    ("/api/v1/agents/agent-b", [401, 403, 200, 200, 200, 404, 200]),
    ("/api/v1/agents/agent-a/versions", [401, 403, 200, 200, 200, 200, 200]),
    ("/api/v1/agents/agent-a/versions/1", [401, 403, 200, 200, 200, 200, 200]),
    ("/api/v1/agents/agent-a/diff?from=1&to=1", [401, 403, 200, 200, 200, 200, 200]),
    ("/api/v1/agents/agent-a/readiness", [401, 403, 200, 200, 200, 200, 200]),
    ("/api/v1/agents/agent-b/readiness", [401, 403, 200, 200, 200, 404, 200]),
    ("/api/v1/agents/agent-a/tokens", [401, 403, 200, 200, 200, 200, 200]),
    ("/api/v1/agents/agent-a/changes", [401, 403, 403, 200, 403, 200, 200]),
    ("/api/v1/changes", [401, 403, 200, 200, 200, 200, 200]),
    ("/api/v1/changes/{cr_a}", [401, 403, 404, 200, 404, 200, 200]),
    ("/api/v1/changes/{cr_b}", [401, 403, 404, 200, 404, 404, 200]),
]


@pytest.mark.parametrize("role_index", range(len(ROLES)), ids=ROLES)
def test_api__reads__by_role(world, role_index):
    client = client_for(ROLES[role_index], world)
    wrong = []
    for url, expected in API_READS:
        response = client.get(_url(url, world))
        if response.status_code != expected[role_index]:
            wrong.append((url, expected[role_index], response.status_code))
        elif response.status_code >= 400 and not set(response.json()) >= {"code", "detail"}:
            wrong.append((url, "error body", response.content[:100]))
    assert wrong == []


DEMOTE = {"changes": {"tier": "read_only"}, "reason": "incident"}
API_WRITES = [
    (
        "POST",
        "/api/v1/agents/agent-a/changes",
        DEMOTE,
        [401, 403, 403, 403, 403, 201, 201],
        lambda w: Agent.objects.get(slug="agent-a").tier.name == "read_only",
    ),
    (
        "POST",
        "/api/v1/agents/agent-b/changes",
        DEMOTE,
        [401, 403, 403, 403, 403, 404, 201],
        lambda w: Agent.objects.get(slug="agent-b").tier.name == "read_only",
    ),
    (
        "POST",
        "/api/v1/agents/agent-a/tokens",
        {"name": "ci"},
        [401, 403, 403, 403, 403, 201, 201],
        lambda w: w["a"].tokens.filter(name="ci").exists(),
    ),
    (
        "POST",
        "/api/v1/changes/{cr_a}/approve",
        {"revision": 1},
        [401, 403, 404, 403, 404, 200, 200],
        lambda w: ChangeRequest.objects.get(pk=w["cr_a"].pk).status == "applied",
    ),
    (
        "POST",
        "/api/v1/changes/{cr_b}/approve",
        {},
        [401, 403, 404, 403, 404, 404, 200],
        lambda w: ChangeRequest.objects.get(pk=w["cr_b"].pk).status == "applied",
    ),
    (
        "POST",
        "/api/v1/changes/{cr_a}/reject",
        {"comment": "no"},
        [401, 403, 404, 403, 404, 200, 200],
        lambda w: ChangeRequest.objects.get(pk=w["cr_a"].pk).status == "rejected",
    ),
    (
        "PATCH",
        "/api/v1/changes/{cr_a}",
        {"changes": {"tier": "draft_only"}},
        [401, 403, 404, 403, 404, 403, 403],
        lambda w: ChangeRequest.objects.get(pk=w["cr_a"].pk).revision == 2,
    ),
    (
        "POST",
        "/api/v1/changes/{cr_a}/withdraw",
        {},
        [401, 403, 404, 403, 404, 403, 403],
        lambda w: ChangeRequest.objects.get(pk=w["cr_a"].pk).status == "withdrawn",
    ),
    (
        "POST",
        "/api/v1/agents",
        {"slug": "fresh", "name": "Fresh"},
        [401, 403, 403, 403, 403, 403, 201],
        lambda w: Agent.objects.filter(slug="fresh").exists(),
    ),
    # read-only, so "happened" is whether it answered
    (
        "POST",
        "/api/v1/agents/agent-a/backtest",
        {"tier": "autonomous"},
        [401, 403, 200, 200, 200, 200, 200],
        None,
    ),
]


@pytest.mark.parametrize(
    ("method", "url", "body", "expected", "happened"),
    API_WRITES,
    ids=[f"{w[0]} {w[1]}" for w in API_WRITES],
)
def test_api__writes__by_role_and_only_allowed_writes_happen(
    world, method, url, body, expected, happened
):
    def run(role_index):
        response = request(client_for(ROLES[role_index], world), method, _url(url, world), body)
        should = expected[role_index] < 300
        did = should if happened is None else happened(world)
        if response.status_code != expected[role_index] or did is not should:
            return (response.status_code, did, response.content[:120])
        if response.status_code >= 400 and not set(response.json()) >= {"code", "detail"}:
            return ("error body", response.content[:120])
        return None

    assert each_role_in_a_savepoint(world, run) == []


def test_api__author_and_revoked_or_bad_token(world):
    # The author of a change request cannot approve it through the API either
    author = Client()
    author.force_login(world["cr_a"].author)
    response = request(author, "POST", f"/api/v1/changes/{world['cr_a'].pk}/approve")
    assert (response.status_code, response.json()["code"]) == (403, "own_change_request")
    # A bad bearer token is 401; the agent's own valid token is 403 on its own policy
    bad = Client(HTTP_AUTHORIZATION="Bearer alk_not-a-real-token")
    assert bad.get("/api/v1/agents/agent-a").status_code == 401
    mine = client_for("agent", world)
    response = request(
        mine,
        "POST",
        "/api/v1/agents/agent-a/changes",
        {"changes": {"tier": "autonomous"}, "reason": "I deserve it"},
    )
    assert response.status_code == 403
    assert world["a"].change_requests.count() == 1


def test_api__session_writes_need_csrf(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["users"]["governor"])
    response = request(client, "POST", "/api/v1/agents/agent-a/changes", DEMOTE)
    assert response.status_code == 403
    assert Agent.objects.get(slug="agent-a").tier.name == "supervised"
