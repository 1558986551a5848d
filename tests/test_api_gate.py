"""The agent API, black-box through a real HTTP client against the running ASGI server."""

import contextlib
import json
import threading
import time
import uuid

import httpx
import pytest

from approvals import actions
from approvals.models import Action
from audit.canonical import payload_hash
from audit.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

REFUND = {
    "tool": "create_refund_request",
    "arguments": {"order_id": "ORD-7711", "amount": 42.18},
    "summary": "Refund ORD-7711",
    "evidence": [{"kind": "shipping_status", "title": "Tracking", "content": "late"}],
    "blast_radius": {
        "environment": "production",
        "reversible": True,
        "amount": {"value": 42.18, "currency": "EUR"},
    },
    "release": {"model": "m-1", "prompt_version": "p-3"},
}


def auth(token: str, key: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not False:
        headers["Idempotency-Key"] = key or uuid.uuid4().hex
    return headers


@pytest.fixture
def token(support_agent):
    return factories.make_token(support_agent)


def submit(client: httpx.Client, token: str, body: dict, key: str | None = None) -> httpx.Response:
    return client.post("/api/v1/actions", json=body, headers=auth(token, key))


def test_submit__allowed_read__201_allowed_with_audit_event(live_api, token):
    response = submit(
        live_api, token, {"tool": "get_order_status", "arguments": {"order_id": "ORD-1"}}
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["reason_code"], body["risk"]) == ("allowed", "allowed", "low")
    assert body["payload_hash"] == payload_hash({"order_id": "ORD-1"})
    assert body["policy_version"] == 1
    event = AuditEvent.objects.get(verb="action.submitted", target_id=str(body["id"]))
    assert event.data["outcome"] == "allowed" and event.data["policy_version"] == 1


def test_submit__pending_refund__201_with_quorum_expiry_and_hash(live_api, token):
    body = submit(live_api, token, REFUND).json()
    assert body["status"] == "pending"
    assert body["reason_code"] == "requires_approval"
    assert body["risk"] == "medium"
    assert body["required_approvals"] == 1
    assert body["approvals"] == 0
    assert body["expires_at"]
    assert body["arguments"] == REFUND["arguments"]


@pytest.mark.parametrize(
    ("tool", "arguments", "reason"),
    [
        ("approve_refund", {"order_id": "x"}, "tool_forbidden"),
        ("launch_rocket", {}, "tool_unknown"),
        ("create_refund_request", {"order_id": "x", "amount": 10000.01}, "argument_limit"),
    ],
)
def test_submit__denials__are_201_answers_with_reason(live_api, token, tool, arguments, reason):
    response = submit(live_api, token, {"tool": tool, "arguments": arguments})
    assert response.status_code == 201
    assert (response.json()["status"], response.json()["reason_code"]) == ("denied", reason)
    assert response.json()["reasons"]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "not_authenticated"),
        ({"Authorization": "Bearer alk_nope"}, "not_authenticated"),
        ({"Authorization": "Bearer"}, "not_authenticated"),
    ],
)
def test_submit__missing_or_bad_token__401(live_api, support_agent, headers, code):
    response = live_api.post(
        "/api/v1/actions",
        json={"tool": "x", "arguments": {}},
        headers={**headers, "Idempotency-Key": "k"},
    )
    assert response.status_code == 401
    assert response.json()["code"] == code


def test_submit__revoked_token__401(live_api, support_agent):
    from audit.chain import Actor
    from rollout.actions import revoke_agent_token
    from rollout.models import AgentToken

    token = factories.make_token(support_agent)
    revoke_agent_token(token_id=AgentToken.objects.get().pk, actor=Actor.system("t"))
    assert submit(live_api, token, REFUND).status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"arguments": {}}, "tool"),
        ({"tool": "send_email"}, "arguments"),
        ({"tool": "send_email", "arguments": []}, "arguments"),
        ({"tool": "send email!", "arguments": {}}, "tool"),
        ({"tool": "send_email", "arguments": {}, "status": "approved"}, "status"),
        ({"tool": "send_email", "arguments": {}, "risk": "low"}, "risk"),
        ({"tool": "send_email", "arguments": {}, "rationale": {"confidence": 2}}, "rationale"),
        (
            {"tool": "send_email", "arguments": {}, "evidence": [{"kind": "k", "title": "t"}]},
            "evidence",
        ),
        (
            {
                "tool": "send_email",
                "arguments": {},
                "evidence": [{"kind": "k", "title": "t", "content": "c"}] * 51,
            },
            "evidence",
        ),
        (
            {"tool": "send_email", "arguments": {}, "blast_radius": {"records_affected": -1}},
            "blast_radius",
        ),
        (
            {"tool": "send_email", "arguments": {}, "callback_url": "ftp://example.com/x"},
            "callback_url",
        ),
        (
            {"tool": "send_email", "arguments": {}, "callback_url": "http://127.0.0.1:9/hook"},
            "callback_url",
        ),
        ({"tool": "send_email", "arguments": {}, "summary": "x" * 2001}, "summary"),
    ],
)
def test_submit__schema_errors__400_with_field_detail_and_no_rows(live_api, token, body, field):
    response = submit(live_api, token, body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["code"] == "invalid"
    assert field in payload["fields"]
    assert Action.objects.count() == 0
    assert not AuditEvent.objects.filter(verb="action.submitted").exists()


def test_submit__malformed_json__400(live_api, token):
    response = live_api.post(
        "/api/v1/actions",
        content=b"{nope",
        headers={**auth(token), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"


def test_submit__without_idempotency_key__400(live_api, token):
    response = live_api.post("/api/v1/actions", json=REFUND, headers=auth(token, key=False))
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_required"


def test_submit__body_over_256_kib__413_json(live_api, token):
    big = {"tool": "send_email", "arguments": {"body": "x" * (300 * 1024)}}
    response = submit(live_api, token, big)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert Action.objects.count() == 0


def test_idempotency__same_key_same_body__200_same_action(live_api, token):
    first = submit(live_api, token, REFUND, key="k-1")
    again = submit(live_api, token, REFUND, key="k-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert Action.objects.count() == 1


def test_idempotency__same_key_different_body__409(live_api, token):
    submit(live_api, token, REFUND, key="k-2")
    response = submit(live_api, token, {**REFUND, "summary": "changed"}, key="k-2")
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_conflict"


def test_get__other_agents_action__404(live_api, token, other_agent):
    foreign = factories.submit(other_agent, "get_order_status", {"order_id": "1"})
    response = live_api.get(f"/api/v1/actions/{foreign.pk}", headers=auth(token, key=False))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_long_poll__released_by_a_decision_from_another_thread(live_api, token, reviewer):
    action_id = submit(live_api, token, REFUND).json()["id"]

    def decide_soon():
        time.sleep(1.0)  # decide while the agent is already waiting on its long-poll
        actions.approve(action_id=action_id, user=reviewer)

    decider = threading.Thread(target=decide_soon)
    started = time.monotonic()
    decider.start()
    response = live_api.get(f"/api/v1/actions/{action_id}?wait=30", headers=auth(token, key=False))
    decider.join()
    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    # Answered by the decision, not by the 30 s timeout.
    assert time.monotonic() - started < 25


def test_long_poll__nothing_happens__returns_current_state_after_wait(live_api, token):
    action_id = submit(live_api, token, REFUND).json()["id"]
    response = live_api.get(f"/api/v1/actions/{action_id}?wait=1", headers=auth(token, key=False))
    assert response.json()["status"] == "pending"


def test_execution_report__rules(live_api, token, reviewer):
    action = submit(live_api, token, REFUND).json()
    url = f"/api/v1/actions/{action['id']}/execution"
    good = {
        "outcome": "succeeded",
        "payload_hash": action["payload_hash"],
        "result": {"refund_id": "R1"},
    }
    # Pending: not executable yet
    response = live_api.post(url, json=good, headers=auth(token, key=False))
    assert (response.status_code, response.json()["code"]) == (409, "not_executable")
    actions.approve(action_id=action["id"], user=reviewer)
    # Wrong hash
    response = live_api.post(
        url, json={**good, "payload_hash": "0" * 64}, headers=auth(token, key=False)
    )
    assert (response.status_code, response.json()["code"]) == (409, "payload_mismatch")
    # Right hash
    response = live_api.post(url, json=good, headers=auth(token, key=False))
    assert response.status_code == 200 and response.json()["status"] == "executed"
    # Twice
    response = live_api.post(url, json=good, headers=auth(token, key=False))
    assert (response.status_code, response.json()["code"]) == (409, "already_reported")


def test_withdraw__pending__cancelled_then_409(live_api, token):
    action_id = submit(live_api, token, REFUND).json()["id"]
    response = live_api.post(
        f"/api/v1/actions/{action_id}/withdraw", headers=auth(token, key=False)
    )
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    response = live_api.post(
        f"/api/v1/actions/{action_id}/withdraw", headers=auth(token, key=False)
    )
    assert (response.status_code, response.json()["code"]) == (409, "not_pending")


def test_agent_token__cannot_decide__403(live_api, token):
    action_id = submit(live_api, token, REFUND).json()["id"]
    response = live_api.post(
        f"/api/v1/actions/{action_id}/decisions",
        json={"verdict": "approve"},
        headers=auth(token, key=False),
    )
    assert response.status_code == 403
    assert Action.objects.get(pk=action_id).status == "pending"


@contextlib.contextmanager
def session_client(asgi_server, user):
    """A logged-in browser-like client: session cookie plus CSRF token."""
    client = httpx.Client(base_url=asgi_server.url, timeout=60)
    page = client.get("/accounts/login/")
    csrf = client.cookies["csrftoken"]
    response = client.post(
        "/accounts/login/",
        data={"username": user.username, "password": "pw-for-tests", "csrfmiddlewaretoken": csrf},
        headers={"Referer": asgi_server.url + "/accounts/login/"},
    )
    assert response.status_code == 302, page.text[:200]
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    client.headers["Referer"] = asgi_server.url + "/"
    try:
        yield client
    finally:
        client.close()


def test_decisions__edit_then_approve__changes_hash_and_agent_executes_edited(
    asgi_server, live_api, token, reviewer
):
    action = submit(live_api, token, REFUND).json()
    edited = {"order_id": "ORD-7711", "amount": 40.00}
    with session_client(asgi_server, reviewer) as person:
        response = person.post(
            f"/api/v1/actions/{action['id']}/decisions",
            json={"verdict": "approve", "arguments": edited, "comment": "cap at 40"},
        )
    assert response.status_code == 201
    decided = response.json()
    assert decided["status"] == "approved"
    assert decided["arguments"] == edited and decided["original_arguments"] == REFUND["arguments"]
    assert decided["payload_hash"] == payload_hash(edited) != action["payload_hash"]
    url = f"/api/v1/actions/{action['id']}/execution"
    stale = live_api.post(
        url,
        json={"outcome": "succeeded", "payload_hash": action["payload_hash"]},
        headers=auth(token, key=False),
    )
    assert stale.status_code == 409
    fresh = live_api.post(
        url,
        json={"outcome": "succeeded", "payload_hash": decided["payload_hash"]},
        headers=auth(token, key=False),
    )
    assert fresh.status_code == 200


def test_decisions__reject__feedback_reaches_agent(asgi_server, live_api, token, reviewer):
    action_id = submit(live_api, token, REFUND).json()["id"]
    with session_client(asgi_server, reviewer) as person:
        missing = person.post(f"/api/v1/actions/{action_id}/decisions", json={"verdict": "reject"})
        assert (missing.status_code, missing.json()["code"]) == (400, "comment_required")
        person.post(
            f"/api/v1/actions/{action_id}/decisions",
            json={"verdict": "reject", "comment": "Refund exceeds the order value"},
        )
    body = live_api.get(f"/api/v1/actions/{action_id}", headers=auth(token, key=False)).json()
    assert body["status"] == "rejected"
    assert body["feedback"] == "Refund exceeds the order value"
    assert body["decisions"][0]["verdict"] == "reject"


def test_decisions__without_csrf__403(asgi_server, live_api, token, reviewer):
    action_id = submit(live_api, token, REFUND).json()["id"]
    with session_client(asgi_server, reviewer) as person:
        del person.headers["X-CSRFToken"]
        response = person.post(
            f"/api/v1/actions/{action_id}/decisions", json={"verdict": "approve"}
        )
    assert response.status_code == 403
    assert Action.objects.get(pk=action_id).status == "pending"


def test_decisions__on_behalf_of_requester__cannot_approve(asgi_server, live_api, token, reviewer):
    action_id = submit(live_api, token, {**REFUND, "on_behalf_of": reviewer.username}).json()["id"]
    with session_client(asgi_server, reviewer) as person:
        response = person.post(
            f"/api/v1/actions/{action_id}/decisions", json={"verdict": "approve"}
        )
    assert (response.status_code, response.json()["code"]) == (403, "own_request")


def test_decisions__quorum_of_two__second_distinct_reviewer_decides(
    asgi_server, live_api, token, reviewer, reviewer2
):
    high = {
        **REFUND,
        "blast_radius": {"amount": {"value": 5000, "currency": "EUR"}},
        "arguments": {"order_id": "O", "amount": 5000},
    }
    action = submit(live_api, token, high).json()
    assert (action["risk"], action["required_approvals"]) == ("high", 2)
    with session_client(asgi_server, reviewer) as first:
        one = first.post(f"/api/v1/actions/{action['id']}/decisions", json={"verdict": "approve"})
        twice = first.post(f"/api/v1/actions/{action['id']}/decisions", json={"verdict": "approve"})
    assert one.json()["status"] == "pending" and one.json()["approvals"] == 1
    assert (twice.status_code, twice.json()["code"]) == (409, "already_approved")
    with session_client(asgi_server, reviewer2) as second:
        two = second.post(f"/api/v1/actions/{action['id']}/decisions", json={"verdict": "approve"})
    assert two.json()["status"] == "approved" and two.json()["approvals"] == 2


def test_openapi_schema__served_and_documents_the_gate(live_api):
    response = live_api.get("/api/schema/", headers={"Accept": "application/json"})
    assert response.status_code == 200
    schema = (
        json.loads(response.text)
        if response.headers["content-type"].startswith("application/json")
        else None
    )
    if schema is None:
        import yaml

        schema = yaml.safe_load(response.text)
    assert "/api/v1/actions" in schema["paths"]
    assert "/api/v1/actions/{action_id}" in schema["paths"]
    docs = live_api.get("/api/docs/")
    assert docs.status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        b'{"tool": "send_email", "arguments": ' + b'{"a": ' * 200 + b"1" + b"}" * 200 + b"}",
        b'{"tool": "send_email", "arguments": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"tool": "send_email", "arguments": {"amount": 1e400}}',
        b'{"tool": "send_email", "arguments": {"amount": NaN}}',
        b'{"tool": "send_email", "arguments": {"n": ' + b"9" * 5000 + b"}}",
        b'{"tool": "send_email", "arguments": {"to": "\xff\xfe"}}',
    ],
    ids=["deep-objects", "deep-arrays", "huge-float", "nan", "huge-int", "invalid-utf8"],
)
def test_submit__hostile_json__clean_400_and_no_rows(live_api, token, raw):
    response = live_api.post(
        "/api/v1/actions", content=raw, headers={**auth(token), "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["code"] in {"malformed_json", "invalid"}
    assert Action.objects.count() == 0


def test_long_poll__decided_before_the_poll_started__answers_at_once(live_api, token, reviewer):
    action_id = submit(live_api, token, REFUND).json()["id"]
    actions.approve(action_id=action_id, user=reviewer)
    started = time.monotonic()
    body = live_api.get(
        f"/api/v1/actions/{action_id}?wait=30", headers=auth(token, key=False)
    ).json()
    assert body["status"] == "approved"
    assert time.monotonic() - started < 10


def test_long_poll__known_status_differs__answers_at_once(live_api, token):
    action_id = submit(live_api, token, REFUND).json()["id"]
    started = time.monotonic()
    body = live_api.get(
        f"/api/v1/actions/{action_id}?wait=30&status=approved", headers=auth(token, key=False)
    ).json()
    assert body["status"] == "pending"
    assert time.monotonic() - started < 10


def test_get__pending_past_expiry__is_expired_by_the_read_and_audited(live_api, token):
    from datetime import timedelta

    from django.utils import timezone

    action_id = submit(live_api, token, REFUND).json()["id"]
    Action.objects.filter(pk=action_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    body = live_api.get(f"/api/v1/actions/{action_id}", headers=auth(token, key=False)).json()
    assert body["status"] == "expired"
    assert AuditEvent.objects.filter(verb="action.expired", target_id=str(action_id)).count() == 1


# --- the gate's hot path ------------------------------------------------------------------


def test_action_serializer__written_out_fields__equal_drfs_for_every_kind_of_action(
    support_agent, reviewer, reviewer2
):
    # Given actions in several states: allowed, denied, pending, one approval recorded on
    # edited arguments, approved by two, rejected
    from rest_framework import serializers

    from approvals.serializers import ActionSerializer

    allowed = factories.submit(support_agent, "get_order_status", {"order_id": "O-1"})
    denied = factories.submit(support_agent, "made_up_tool", {})
    pending = factories.submit(support_agent, REFUND["tool"], REFUND["arguments"])
    edited = factories.submit(support_agent, REFUND["tool"], REFUND["arguments"])
    actions.approve(action_id=edited.pk, user=reviewer, arguments={"order_id": "X", "amount": 1})
    high = factories.submit(
        support_agent,
        REFUND["tool"],
        {"order_id": "O", "amount": 5000},
        blast_radius={"amount": {"value": 5000, "currency": "EUR"}},
    )
    actions.approve(action_id=high.pk, user=reviewer)
    actions.approve(action_id=high.pk, user=reviewer2)
    rejected = factories.submit(support_agent, REFUND["tool"], REFUND["arguments"])
    actions.reject(action_id=rejected.pk, user=reviewer, comment="no")
    # When each is serialised by the written-out fields and by DRF's generic walk
    statuses = set()
    for action in Action.objects.select_related("agent", "policy_version"):
        serializer = ActionSerializer(action)
        ours = serializer.to_representation(action)
        drfs = serializers.ModelSerializer.to_representation(serializer, action)
        # Then both are the same JSON
        assert json.dumps(ours, sort_keys=True) == json.dumps(drfs, sort_keys=True)
        statuses.add(action.status)
    assert {allowed.status, denied.status, pending.status, "approved", "rejected"} <= statuses


def test_gate__one_call__four_statements_plus_begin_and_commit(support_agent):
    # Given an agent with a token that was used a moment ago
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    token = factories.make_token(support_agent)
    client = Client()
    body = {"tool": "get_order_status", "arguments": {"order_id": "O-1"}}

    def call():
        return client.post(
            "/api/v1/actions", body, content_type="application/json", headers=auth(token)
        )

    assert call().status_code == 201
    # When the agent calls the gate again
    with CaptureQueriesContext(connection) as queries:
        response = call()
    # Then the token lookup and the gate's three statements are all it costs the database
    assert (response.status_code, response.json()["status"]) == (201, "allowed")
    sql = [q["sql"] for q in queries.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
    assert len(sql) == 4, sql
    assert "rollout_agenttoken" in sql[0]
    assert "pg_advisory_xact_lock_shared" in sql[1]
    assert "FOR UPDATE SKIP LOCKED" in sql[2]
    assert "INSERT INTO" in sql[3] and "audit_auditevent" in sql[3]
    event = AuditEvent.objects.get(target_id=str(response.json()["id"]))
    assert event.verb == "action.submitted"


def test_agent_throttle__over_the_http_rate__429_until_the_window_ends(live_api, token, settings):
    # Given an HTTP flood limit of 3 calls per minute for an agent's token
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"agent": "3/min", "person": "600/min"},
    }
    body = {"tool": "get_order_status", "arguments": {"order_id": "O-1"}}
    # When it calls the gate five times
    answers = [submit(live_api, token, body) for _ in range(5)]
    # Then the fourth and fifth are refused with 429 and a Retry-After, and wrote nothing
    assert [a.status_code for a in answers[:3]] == [201, 201, 201]
    assert [a.status_code for a in answers[3:]] == [429, 429]
    assert 0 < int(answers[3].headers["Retry-After"]) <= 60
    assert Action.objects.count() == 3
