"""Who may read what of the audit log, as one table: every role, every audit page and
endpoint, own and other agent. Auditors and admins see everything; an auditor of one agent
sees that agent's events; reviewers see the traces of the agents they review and nothing
of the log itself; anyone else is refused (403 for the log, 404 for an action); an
anonymous visitor is sent to log in (pages) or answered 401 (API); agents' tokens get
nothing."""

from __future__ import annotations

import json

import pytest

from audit.console.access import audit_scope
from rollout.models import PolicyVersion
from tests import factories

ROLES = [
    "anonymous",
    "auditor",
    "superuser",
    "auditor_of_a",
    "reviewer",
    "reviewer_of_a",
    "incident_owner",
    "governance_owner",
    "nobody",
]

# operation -> {role: expected status}; "a" = agent A's action / event, "b" = agent B's
LOGIN = "login"
MATRIX = {
    "search_page": {
        "anonymous": LOGIN, "auditor": 200, "superuser": 200, "auditor_of_a": 200,
        "reviewer": 403, "reviewer_of_a": 403, "incident_owner": 403, "governance_owner": 403,
        "nobody": 403,
    },
    "export_page": {
        "anonymous": LOGIN, "auditor": 200, "superuser": 200, "auditor_of_a": 200,
        "reviewer": 403, "reviewer_of_a": 403, "incident_owner": 403, "governance_owner": 403,
        "nobody": 403,
    },
    "trace_page_a": {
        "anonymous": LOGIN, "auditor": 200, "superuser": 200, "auditor_of_a": 200,
        "reviewer": 200, "reviewer_of_a": 200, "incident_owner": 404, "governance_owner": 404,
        "nobody": 404,
    },
    "trace_page_b": {
        "anonymous": LOGIN, "auditor": 200, "superuser": 200, "auditor_of_a": 404,
        "reviewer": 200, "reviewer_of_a": 404, "incident_owner": 404, "governance_owner": 404,
        "nobody": 404,
    },
    "policy_page_b": {
        "anonymous": LOGIN, "auditor": 200, "superuser": 200, "auditor_of_a": 404,
        "reviewer": 200, "reviewer_of_a": 404, "incident_owner": 200, "governance_owner": 200,
        "nobody": 404,
    },
    "api_events": {
        "anonymous": 401, "auditor": 200, "superuser": 200, "auditor_of_a": 200,
        "reviewer": 403, "reviewer_of_a": 403, "incident_owner": 403, "governance_owner": 403,
        "nobody": 403,
    },
    "api_event_b": {
        "anonymous": 401, "auditor": 200, "superuser": 200, "auditor_of_a": 404,
        "reviewer": 403, "reviewer_of_a": 403, "incident_owner": 403, "governance_owner": 403,
        "nobody": 403,
    },
    "api_export": {
        "anonymous": 401, "auditor": 200, "superuser": 200, "auditor_of_a": 200,
        "reviewer": 403, "reviewer_of_a": 403, "incident_owner": 403, "governance_owner": 403,
        "nobody": 403,
    },
    "api_status": {
        "anonymous": 401, "auditor": 200, "superuser": 200, "auditor_of_a": 403,
        "reviewer": 403, "reviewer_of_a": 403, "incident_owner": 403, "governance_owner": 403,
        "nobody": 403,
    },
    "api_trace_a": {
        "anonymous": 401, "auditor": 200, "superuser": 200, "auditor_of_a": 200,
        "reviewer": 200, "reviewer_of_a": 200, "incident_owner": 404, "governance_owner": 404,
        "nobody": 404,
    },
    "api_trace_b": {
        "anonymous": 401, "auditor": 200, "superuser": 200, "auditor_of_a": 404,
        "reviewer": 200, "reviewer_of_a": 404, "incident_owner": 404, "governance_owner": 404,
        "nobody": 404,
    },
    "api_replay_b": {
        "anonymous": 401, "auditor": 200, "superuser": 200, "auditor_of_a": 404,
        "reviewer": 200, "reviewer_of_a": 404, "incident_owner": 404, "governance_owner": 404,
        "nobody": 404,
    },
}  # fmt: skip


@pytest.fixture(autouse=True)
def checkpoint_dir(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"


@pytest.fixture
def world(db, support_agent, other_agent):
    a_action = factories.submit(support_agent, "send_email", {"to": "a@example.com"})
    b_action = factories.submit(other_agent, "send_email", {"to": "b@example.com"})
    return {
        "a": support_agent,
        "b": other_agent,
        "a_action": a_action,
        "b_action": b_action,
        "b_event": b_action.pk,
        "b_version": PolicyVersion.objects.filter(agent=other_agent).first(),
    }


def _person(role: str, agent_a):
    if role == "anonymous":
        return None
    factory = {
        "auditor": lambda: factories.make_user("m-auditor", groups=("auditor",)),
        "superuser": lambda: factories.make_user("m-root", superuser=True),
        "auditor_of_a": lambda: factories.make_user(
            "m-auditor-a", agent_perms={"rollout.audit_agent": agent_a}
        ),
        "reviewer": lambda: factories.make_user("m-reviewer", groups=("reviewer",)),
        "reviewer_of_a": lambda: factories.make_user(
            "m-reviewer-a", agent_perms={"rollout.review_agent": agent_a}
        ),
        "incident_owner": lambda: factories.make_user("m-incident", groups=("incident_owner",)),
        "governance_owner": lambda: factories.make_user("m-gov", groups=("governance_owner",)),
        "nobody": lambda: factories.make_user("m-nobody"),
    }
    return factory[role]()


def _url(operation: str, world: dict) -> str:
    from audit.models import AuditEvent

    b_event = AuditEvent.objects.filter(agent_slug=world["b"].slug).first().pk
    return {
        "search_page": "/audit",
        "export_page": "/audit/export?format=jsonl",
        "trace_page_a": f"/audit/actions/{world['a_action'].pk}",
        "trace_page_b": f"/audit/actions/{world['b_action'].pk}",
        "policy_page_b": f"/audit/policy-versions/{world['b_version'].pk}",
        "api_events": "/api/v1/audit/events",
        "api_event_b": f"/api/v1/audit/events/{b_event}",
        "api_export": "/api/v1/audit/export?format=csv",
        "api_status": "/api/v1/audit/status",
        "api_trace_a": f"/api/v1/audit/actions/{world['a_action'].pk}/trace",
        "api_trace_b": f"/api/v1/audit/actions/{world['b_action'].pk}/trace",
        "api_replay_b": f"/api/v1/audit/actions/{world['b_action'].pk}/replay",
    }[operation]


@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(world, client, role):
    # Given a person in this role (one setup per role; every operation asked in turn)
    person = _person(role, world["a"])
    if person is not None:
        client.force_login(person)
    # When they ask for every audit page and endpoint
    wrong = {}
    for operation, expectations in MATRIX.items():
        response = client.get(_url(operation, world))
        expected = expectations[role]
        if expected == LOGIN:
            ok = response.status_code == 302 and response["Location"].startswith("/accounts/login/")
        else:
            ok = response.status_code == expected
        if not ok:
            wrong[operation] = (expected, response.status_code)
    # Then each answer is the one in the table
    assert wrong == {}


def test_auditor_of_one_agent__search_and_export_hold_only_that_agent(world, client):
    person = _person("auditor_of_a", world["a"])
    client.force_login(person)
    html = client.get("/audit").content.decode()
    assert world["a"].slug in html and f">{world['b'].slug}<" not in html
    body = b"".join(client.get("/audit/export?format=jsonl").streaming_content).decode()
    lines = [json.loads(line) for line in body.splitlines()]
    assert {e["agent_slug"] for e in lines[:-1]} == {world["a"].slug}
    assert set(lines[-1]["chain_heads"]) == {world["a"].slug}  # no other partition leaks
    api = client.get("/api/v1/audit/events", {"agent": world["b"].slug}).json()
    assert api["results"] == []


def test_agent_token__refused_by_every_audit_endpoint(world, client):
    token = factories.make_token(world["a"])
    for operation in ("api_events", "api_export", "api_status", "api_trace_a", "api_replay_b"):
        response = client.get(_url(operation, world), HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 403, operation


def test_audit_scope__inactive_user__nothing(world):
    person = _person("auditor", world["a"])
    person.is_active = False
    person.save()
    assert audit_scope(person) is None
