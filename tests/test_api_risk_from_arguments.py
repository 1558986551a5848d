"""Risk from the arguments through the agent API, as an attacker would try it: an agent
declares a small blast radius while its arguments move much more. Black-box over HTTP
against the running ASGI server, with the default risk rules and approval matrix."""

import uuid

import pytest

from approvals import actions
from approvals.models import Action
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

AMOUNT_LIMIT = [{"field": "amount", "op": "<=", "value": 10000}]
RULES = [
    # The refund tool as seeded: amount ← arguments.amount beside a numeric limit.
    factories.rule(
        "create_refund_request",
        "write",
        "requires_approval",
        "medium",
        AMOUNT_LIMIT,
        radius={"amount": "amount"},
    ),
    # A tool without a numeric limit on its mapped field.
    factories.rule(
        "bulk_update", "write", "requires_approval", "low", radius={"records_affected": "rows"}
    ),
]
DECLARED_SMALL = {
    "environment": "production",
    "reversible": True,
    "amount": {"value": 42.18, "currency": "EUR"},
}


@pytest.fixture
def token(reference_data):
    return factories.make_token(factories.make_agent("refund-bot", rules=RULES))


def submit(client, token, body):
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
    response = client.post("/api/v1/actions", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def refund(amount):
    return {
        "tool": "create_refund_request",
        "arguments": {"order_id": "ORD-7711", "amount": amount},
        "summary": "Refund ORD-7711",
        "blast_radius": DECLARED_SMALL,
    }


def test_submit__declares_42_but_refunds_10000__critical_two_approvals_critical_approver(
    live_api, token, reviewer, reviewer2, critical_reviewer
):
    # When the agent declares 42.18 while its arguments refund 10000
    body = submit(live_api, token, refund(10000))
    # Then the arguments set the risk: critical, two approvals, one a critical approver
    assert (body["status"], body["reason_code"], body["risk"]) == (
        "pending",
        "requires_approval",
        "critical",
    )
    assert body["required_approvals"] == 2
    assert "arguments (amount 10000) raise risk to critical" in body["reasons"]
    action = Action.objects.get(pk=body["id"])
    assert action.needs_critical_approver is True
    # and two ordinary reviewers cannot carry it: the last slot is a critical approver's
    actions.approve(action_id=action.pk, user=reviewer)
    with pytest.raises(actions.ActionRefused, match="critical-approval permission"):
        actions.approve(action_id=action.pk, user=reviewer2)
    action.refresh_from_db()
    assert action.status == "pending"
    actions.approve(action_id=action.pk, user=critical_reviewer)
    action.refresh_from_db()
    assert action.status == "approved"


def test_submit__declares_42_but_refunds_1500__high(live_api, token):
    body = submit(live_api, token, refund(1500))
    assert (body["status"], body["risk"], body["required_approvals"]) == ("pending", "high", 2)
    assert "arguments (amount 1500) raise risk to high" in body["reasons"]
    assert Action.objects.get(pk=body["id"]).needs_critical_approver is False


def test_submit__amount_as_numeric_string__still_weighed(live_api, token):
    # A string that parses as a number counts; the limit reads it the same way.
    body = submit(live_api, token, refund("9999.99"))
    assert (body["status"], body["risk"]) == ("pending", "high")


def test_submit__honest_small_refund__medium_one_approval(live_api, token):
    body = submit(live_api, token, refund(42.18))
    assert (body["status"], body["risk"], body["required_approvals"]) == ("pending", "medium", 1)


@pytest.mark.parametrize("amount", ["10000 USD", [10000], {"cents": 1000000}, True, None])
def test_submit__amount_not_a_number__denied_by_the_limit_beside_the_mapping(
    live_api, token, amount
):
    body = submit(live_api, token, refund(amount))
    assert (body["status"], body["reason_code"]) == ("denied", "argument_limit")


@pytest.mark.parametrize("rows", ["lots", ["r1", "r2"], {"n": 5}, None, "12 rows"])
def test_submit__mapped_field_not_a_number__never_lowers_the_declared_risk(live_api, token, rows):
    # Given a declaration that is high on its own (500 records)
    body = submit(
        live_api,
        token,
        {
            "tool": "bulk_update",
            "arguments": {"rows": rows},
            "blast_radius": {"records_affected": 500},
        },
    )
    # Then an unreadable argument leaves it high, and says it was not weighed
    assert (body["status"], body["risk"], body["required_approvals"]) == ("pending", "high", 2)
    if rows is not None:
        assert (
            "argument 'rows' is not a number: records_affected not derived from it"
            in (body["reasons"])
        )


def test_submit__no_declaration_at_all__arguments_still_raise(live_api, token):
    body = submit(live_api, token, {"tool": "bulk_update", "arguments": {"rows": 20000}})
    assert (body["risk"], body["required_approvals"]) == ("critical", 2)
    assert "arguments (records_affected 20000) raise risk to critical" in body["reasons"]
