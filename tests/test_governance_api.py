"""The governance REST API end to end: scripted governance through JSON only."""

import json

import pytest
from django.test import Client

from rollout.models import AgentToken
from tests import factories


@pytest.fixture
def governor(reference_data):
    return factories.make_user("gwen", groups=("governance_owner",))


@pytest.fixture
def governor2(reference_data):
    return factories.make_user("gus", groups=("governance_owner",))


def api(user):
    client = Client()
    client.force_login(user)

    def call(method, url, body=None):
        response = client.generic(
            method,
            url,
            json.dumps(body) if body is not None else "",
            content_type="application/json",
        )
        return response.status_code, (response.json() if response.content else None)

    return call


def test_api__promote_by_script__change_request_then_second_owner_applies(
    support_agent, governor, governor2
):
    gwen, gus = api(governor), api(governor2)
    # A loosening opens a change request showing its exact diff
    status, body = gwen(
        "POST",
        "/api/v1/agents/support-assistant/changes",
        {"changes": {"tier": "autonomous"}, "reason": "ready"},
    )
    assert status == 201
    assert (body["classification"], body["applied"], body["policy_version"]) == (
        "loosening",
        False,
        None,
    )
    change = body["change_request"]
    assert change["status"] == "open" and change["author"] == "gwen" and change["revision"] == 1
    assert (
        change["diff"]["tier"]["before"] == "supervised"
        and change["diff"]["tier"]["after"] == "autonomous"
    )
    assert change["changes"] == [
        {"path": "tier", "direction": "loosening", "text": "promote supervised → autonomous"}
    ]
    assert change["proposal"] == {"tier": "autonomous"}
    # It is listed as open
    status, listed = gus("GET", "/api/v1/changes?status=open")
    assert [c["id"] for c in listed] == [change["id"]]
    # Its author cannot approve it; the second owner can, and it applies
    status, body = gwen("POST", f"/api/v1/changes/{change['id']}/approve", {"revision": 1})
    assert (status, body["code"]) == (403, "own_change_request")
    status, body = gus(
        "POST", f"/api/v1/changes/{change['id']}/approve", {"revision": 1, "comment": "ok"}
    )
    assert status == 200 and body["status"] == "applied" and body["applied_version"] == 2
    assert body["approvals"][0]["approver"] == "gus"
    status, agent = gus("GET", "/api/v1/agents/support-assistant")
    assert (agent["tier"], agent["policy_version"]) == ("autonomous", 2)
    # The diff endpoint shows the same change between versions
    status, diff = gus("GET", "/api/v1/agents/support-assistant/diff?from=1&to=2")
    assert status == 200 and diff["classification"] == "loosening"
    assert diff["tier"]["after"] == "autonomous"


def test_api__tightening_applies_at_once(support_agent, governor):
    status, body = api(governor)(
        "POST",
        "/api/v1/agents/support-assistant/changes",
        {
            "changes": {
                "tools": {
                    "create_refund_request": {
                        "argument_limits": [{"field": "amount", "op": "<=", "value": 100}]
                    }
                }
            },
            "reason": "smaller refunds",
        },
    )
    assert status == 201
    assert (body["classification"], body["applied"], body["policy_version"]) == (
        "tightening",
        True,
        2,
    )
    assert body["changes"][0]["text"] == "create_refund_request: limit amount ≤ 10,000 → ≤ 100"


def test_api__invalid_change__400_with_field_errors(support_agent, governor):
    status, body = api(governor)(
        "POST",
        "/api/v1/agents/support-assistant/changes",
        {
            "changes": {
                "tools": {
                    "send_email": {"argument_limits": [{"field": "amount", "op": "≈", "value": 1}]}
                }
            },
            "reason": "x",
        },
    )
    assert status == 400 and body["code"] == "invalid"
    assert "unknown operator" in body["fields"]["tools.send_email.argument_limits"][0]
    status, body = api(governor)(
        "POST",
        "/api/v1/agents/support-assistant/changes",
        {"changes": {}, "reason": "x", "extra": 1},
    )
    assert status == 400 and set(body["fields"]) == {"extra"}
    status, body = api(governor)(
        "POST", "/api/v1/agents/support-assistant/changes", {"changes": {}, "reason": "x"}
    )
    assert status == 400 and set(body["fields"]) == {"changes"}
    status, body = api(governor)(
        "POST",
        "/api/v1/agents/support-assistant/changes",
        {"changes": {"tier": "supervised"}, "reason": "x"},
    )
    assert (status, body["code"]) == (400, "no_change")


def test_api__edit_voids_approvals_and_stale_is_409(support_agent, governor, governor2):
    gwen, gus = api(governor), api(governor2)
    _, body = gwen(
        "POST",
        "/api/v1/agents/support-assistant/changes",
        {"changes": {"tier": "autonomous"}, "reason": "r", "required_approvals": 2},
    )
    change_id = body["change_request"]["id"]
    status, body = gus("POST", f"/api/v1/changes/{change_id}/approve", {})
    assert status == 200 and body["approvals_count"] == 1 and body["status"] == "open"
    status, body = gwen(
        "PATCH", f"/api/v1/changes/{change_id}", {"changes": {"tier": "draft_only"}}
    )
    assert status == 200 and body["revision"] == 2 and body["approvals_count"] == 0
    assert body["approvals"][0]["voided"] is True
    status, body = gus("POST", f"/api/v1/changes/{change_id}/approve", {"revision": 1})
    assert (status, body["code"]) == (409, "revision_changed")
    # a demotion under it makes it stale
    gus(
        "POST",
        "/api/v1/agents/support-assistant/changes",
        {"changes": {"tier": "read_only"}, "reason": "incident"},
    )
    status, body = gus("POST", f"/api/v1/changes/{change_id}/approve", {"revision": 2})
    assert (status, body["code"]) == (409, "stale")


def test_api__tokens_shown_once_and_revoked(support_agent, governor):
    gwen = api(governor)
    status, body = gwen("POST", "/api/v1/agents/support-assistant/tokens", {"name": "ci"})
    assert (
        status == 201 and body["token"].startswith("alk_") and body["prefix"] == body["token"][:10]
    )
    status, listed = gwen("GET", "/api/v1/agents/support-assistant/tokens")
    assert all("token" not in t and "token_hash" not in t for t in listed)
    status, body = gwen("POST", f"/api/v1/agents/support-assistant/tokens/{body['id']}/revoke")
    assert status == 200 and body["revoked_at"]
    assert AgentToken.objects.get(name="ci").revoked_at is not None


def test_api__readiness_backtest_and_shadow_labels(reference_data, governor, reviewer):
    agent = factories.make_agent("shadow-bot", tier="shadow")
    shadowed = factories.submit(agent, "update_crm_note", {"note": "x"})
    factories.submit(agent, "get_order_status", {"order_id": "1"})
    status, body = api(reviewer)(
        "POST",
        "/api/v1/agents/shadow-bot/shadow-labels",
        {"action_id": shadowed.pk, "label": "would_approve"},
    )
    assert status == 201 and body["label"] == "would_approve"
    status, body = api(governor)(
        "POST",
        "/api/v1/agents/shadow-bot/shadow-labels",
        {"action_id": shadowed.pk, "label": "would_approve"},
    )
    assert (status, body["code"]) == (403, "not_reviewer")
    status, readiness = api(governor)("GET", "/api/v1/agents/shadow-bot/readiness")
    assert (
        status == 200
        and readiness["next_tier"] == "read_only"
        and readiness["counts"]["labels"] == 1
    )
    status, result = api(governor)(
        "POST", "/api/v1/agents/shadow-bot/backtest", {"tier": "autonomous", "days": 7}
    )
    assert status == 200 and result["classification"] == "loosening"
    assert (
        result["replayed"],
        result["would_run_without_human"],
        result["newly_without_human"],
    ) == (2, 2, 1)
    assert {a["tool"] for a in result["actions"]} == {"update_crm_note", "get_order_status"}
    status, result = api(governor)(
        "POST",
        "/api/v1/agents/shadow-bot/backtest",
        {"changes": {"tools": {"update_crm_note": {"effect": "read"}}}},
    )
    assert status == 200 and result["would_run_without_human"] == 2


def test_api__register_agent(reference_data, governor):
    status, body = api(governor)("POST", "/api/v1/agents", {"slug": "new-bot", "name": "New bot"})
    assert status == 201 and (body["tier"], body["policy_version"]) == ("shadow", 1)
    status, body = api(governor)("POST", "/api/v1/agents", {"slug": "new-bot", "name": "Again"})
    assert (status, body["code"]) == (409, "slug_taken")
