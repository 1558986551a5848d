"""Governing ``blast_radius_from_arguments`` (risk from the arguments) through the API and
the pages: adding a dimension tightens and applies at once; dropping one or changing its
path loosens and waits for a second governance owner; bad mappings are refused per field;
the agent page and the diffs show it as "amount ← arguments.amount"."""

import json

import pytest
from django.test import Client

from governance.models import ChangeRequest
from rollout.models import ToolRule
from tests import factories

REFUND = "create_refund_request"


@pytest.fixture
def governor(reference_data):
    return factories.make_user("gwen", groups=("governance_owner",))


@pytest.fixture
def governor2(reference_data):
    return factories.make_user("gus", groups=("governance_owner",))


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


def api(user):
    client = logged_in(user)

    def call(method, url, body=None):
        response = client.generic(
            method,
            url,
            json.dumps(body) if body is not None else "",
            content_type="application/json",
        )
        return response.status_code, (response.json() if response.content else None)

    return call


def propose(call, mapping, reason="risk follows the arguments"):
    return call(
        "POST",
        "/api/v1/agents/support-assistant/changes",
        {
            "changes": {"tools": {REFUND: {"blast_radius_from_arguments": mapping}}},
            "reason": reason,
        },
    )


def live_mapping():
    return ToolRule.objects.get(
        agent__slug="support-assistant", tool=REFUND
    ).blast_radius_from_arguments


def test_api__add_mapping__tightening_applies_at_once_and_is_returned(support_agent, governor):
    gwen = api(governor)
    status, body = propose(gwen, {"amount": "amount"})
    assert status == 201
    assert (body["classification"], body["applied"], body["policy_version"]) == (
        "tightening",
        True,
        2,
    )
    assert body["changes"] == [
        {
            "path": f"tools.{REFUND}.blast_radius_from_arguments.amount",
            "direction": "tightening",
            "text": f"{REFUND}: risk from arguments, add amount ← arguments.amount",
        }
    ]
    assert live_mapping() == {"amount": "amount"}
    # The agent and its policy version return it (the snapshot key the gate reads)
    status, agent = gwen("GET", "/api/v1/agents/support-assistant")
    assert agent["tools"][REFUND]["blast_radius_from_arguments"] == {"amount": "amount"}
    status, version = gwen("GET", "/api/v1/agents/support-assistant/versions/2")
    assert version["snapshot"]["tools"][REFUND]["blast_radius_from_arguments"] == {
        "amount": "amount"
    }


def test_api__remove_mapping__change_request_not_applied(support_agent, governor, governor2):
    gwen, gus = api(governor), api(governor2)
    propose(gwen, {"amount": "amount"})
    # When the same owner proposes to drop it
    status, body = propose(gwen, {}, reason="too many approvals")
    # Then it waits for a second owner and the live rule keeps weighing the amount
    assert status == 201
    assert (body["classification"], body["applied"]) == ("loosening", False)
    change = body["change_request"]
    assert change["status"] == "open"
    assert [c["text"] for c in change["changes"]] == [
        f"{REFUND}: risk from arguments, drop amount ← arguments.amount"
    ]
    assert live_mapping() == {"amount": "amount"}
    status, body = gus("POST", f"/api/v1/changes/{change['id']}/approve", {"revision": 1})
    assert status == 200 and body["status"] == "applied"
    assert live_mapping() == {}


def test_api__change_mapping_path__loosening(support_agent, governor):
    gwen = api(governor)
    propose(gwen, {"amount": "amount"})
    _, body = propose(gwen, {"amount": "fee"})
    assert (body["classification"], body["applied"]) == ("loosening", False)
    assert [c["text"] for c in body["changes"]] == [
        f"{REFUND}: risk from arguments, amount ← arguments.amount → arguments.fee"
    ]
    assert live_mapping() == {"amount": "amount"}


def test_api__add_a_dimension_beside_one__tightening(support_agent, governor):
    gwen = api(governor)
    propose(gwen, {"amount": "amount"})
    _, body = propose(gwen, {"amount": "amount", "users_affected": "recipients.count"})
    assert (body["classification"], body["applied"]) == ("tightening", True)
    # and swapping one dimension for another is mixed: a loosening
    _, body = propose(gwen, {"amount": "amount", "records_affected": "rows"})
    assert (body["classification"], body["applied"]) == ("loosening", False)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"systems": "x"}, "unknown dimension 'systems'"),
        ({"amount": ""}, "amount: an argument path"),
        ({"amount": "a..b"}, "has an empty part"),
        ({"amount": 3}, "amount: an argument path"),
        (["amount"], "an object {dimension: argument path}"),
    ],
)
def test_api__invalid_mapping__400_with_field_error(support_agent, governor, mapping, message):
    status, body = propose(api(governor), mapping)
    assert status == 400 and body["code"] == "invalid"
    problems = body["fields"][f"tools.{REFUND}.blast_radius_from_arguments"]
    assert any(message in problem for problem in problems)
    assert live_mapping() == {}


def test_rule_form__mapping_text__applies_and_shows_on_the_agent_page(support_agent, governor):
    client = logged_in(governor)
    base = {
        "effect": "write",
        "rule": "requires_approval",
        "base_risk": "medium",
        "argument_limits": "amount <= 10000",
    }
    response = client.post(
        f"/agents/support-assistant/rules/edit/{REFUND}",
        {**base, "blast_radius_from_arguments": "amount ← arguments.amount", "reason": "weigh"},
        follow=True,
    )
    assert "Applied at once" in response.content.decode()
    assert live_mapping() == {"amount": "amount"}
    page = client.get("/agents/support-assistant/policy").content.decode()
    assert "<code>amount ← arguments.amount</code>" in page
    # The edit form shows it back as text, and the version diff reads it too
    form = client.get(f"/agents/support-assistant/rules/edit/{REFUND}").content.decode()
    assert "amount ← arguments.amount</textarea>" in form
    # Leaving the field empty drops it: a change request
    response = client.post(
        f"/agents/support-assistant/rules/edit/{REFUND}", {**base, "reason": "fewer approvals"}
    )
    cr = ChangeRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/changes/{cr.pk}"
    page = client.get(f"/changes/{cr.pk}").content.decode()
    assert "risk from arguments, drop amount ← arguments.amount" in page
    # as a readable line marked as a loosening, not a field-by-field JSON diff
    assert f"loosens</span> {REFUND}: risk from arguments, drop amount" in page


def test_rule_form__unparseable_mapping__refused_with_message(support_agent, governor):
    response = logged_in(governor).post(
        f"/agents/support-assistant/rules/edit/{REFUND}",
        {
            "effect": "write",
            "rule": "requires_approval",
            "base_risk": "medium",
            "blast_radius_from_arguments": "money ← arguments.amount",
            "reason": "typo",
        },
    )
    assert response.status_code == 200
    assert "unknown dimension" in response.content.decode()
    assert live_mapping() == {}
