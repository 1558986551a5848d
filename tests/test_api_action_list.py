"""The people's list of actions, ``GET /api/v1/actions``: what a reviewer bot or a chat
integration reads — only what the person may see, filtered, in stable keyset pages."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.personal_tokens import create_personal_token
from approvals import actions
from tests import factories

URL = "/api/v1/actions"
CARD = "4111111111111111"


def person(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def bearer(token: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {token}"})


def listed(client: Client, **query) -> dict:
    response = client.get(URL, query)
    assert response.status_code == 200, response.content
    return response.json()


def ids(page: dict) -> list[int]:
    return [item["id"] for item in page["results"]]


@pytest.fixture
def world(support_agent, other_agent, reviewer):
    """Actions of two agents; a reviewer of the support agent only."""
    scoped = factories.make_user("scoped", agent_perms={"review_agent": support_agent})
    mine = [
        factories.submit(support_agent, "send_email", {"to": f"{n}@example.com"}) for n in range(3)
    ]
    read = factories.submit(
        support_agent, "get_order_status", {"order_id": "O-1"}, correlation_id="ticket-9"
    )
    theirs = factories.submit(other_agent, "send_email", {"to": "x@example.com"}, summary="theirs")
    return {"scoped": scoped, "mine": mine, "read": read, "theirs": theirs}


def test_list__scoped_reviewer__sees_only_their_agents_actions_newest_first(db, world):
    page = listed(person(world["scoped"]))
    expected = [world["read"].pk, *reversed([a.pk for a in world["mine"]])]
    assert ids(page) == expected
    assert page["next_cursor"] is None
    assert "theirs" not in str(page)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "allowed"}, ["read"]),
        ({"status": "pending,allowed"}, ["read", "mine", "theirs"]),
        ({"tool": "get_order_status"}, ["read"]),
        ({"correlation_id": "ticket-9"}, ["read"]),
        ({"risk": "low"}, ["read"]),
        ({"agent": "other-agent"}, ["theirs"]),
        ({"agent": "other-agent", "status": "allowed"}, []),
    ],
)
def test_list__filters__narrow_the_global_reviewers_list(db, world, reviewer, query, expected):
    want = set()
    for name in expected:
        value = world[name]
        want |= {a.pk for a in value} if isinstance(value, list) else {value.pk}
    assert set(ids(listed(person(reviewer), **query))) == want


def test_list__representation__summary_correlation_id_and_execution_report(
    db, support_agent, reviewer
):
    action = factories.submit(
        support_agent,
        "get_order_status",
        {"order_id": "O-7"},
        summary="Look up O-7",
        correlation_id="chat-42",
    )
    actions.report_execution(
        action_id=action.pk,
        agent=support_agent,
        outcome="succeeded",
        reported_hash=action.payload_hash,
        result={"status": "shipped"},
    )
    [item] = listed(person(reviewer), correlation_id="chat-42")["results"]
    assert (item["summary"], item["correlation_id"], item["status"]) == (
        "Look up O-7",
        "chat-42",
        "executed",
    )
    assert item["execution"]["outcome"] == "succeeded"
    assert item["execution"]["result"] == {"status": "shipped"}
    assert item["execution"]["payload_hash"] == action.payload_hash


def test_list__sensitive_arguments__masked_for_a_reviewer_without_the_right(
    db, support_agent, reviewer
):
    factories.submit(
        support_agent, "send_email", {"to": "a@example.com", "payment": {"card_number": CARD}}
    )
    body = listed(person(reviewer))
    assert CARD not in str(body)
    assert body["results"][0]["arguments"]["payment"]["card_number"] == "[masked]"


def test_list__keyset_pages__every_action_once_even_when_new_ones_arrive(
    db, support_agent, reviewer
):
    # Given seven actions and a reader paging three at a time
    made = [factories.submit(support_agent, "send_email", {"n": n}).pk for n in range(7)]
    client = person(reviewer)
    first = listed(client, limit=3)
    # When a new action arrives between pages
    factories.submit(support_agent, "send_email", {"n": "late"})
    second = listed(client, limit=3, cursor=first["next_cursor"])
    third = listed(client, limit=3, cursor=second["next_cursor"])
    # Then the pages hold every earlier action exactly once, newest first, and end
    seen = ids(first) + ids(second) + ids(third)
    assert seen == list(reversed(made))
    assert (len(ids(third)), third["next_cursor"]) == (1, None)


def test_list__a_page_costs_the_same_queries_whatever_its_size(
    db, support_agent, reviewer, reviewer2
):
    for n in range(12):
        action = factories.submit(support_agent, "send_email", {"n": n})
        if n % 2:
            actions.approve(action_id=action.pk, user=reviewer2)
    client = person(reviewer)
    listed(client, limit=2)  # warm the session and permission caches

    def queries(limit: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert len(listed(client, limit=limit)["results"]) == limit
        return len(captured)

    assert queries(12) == queries(2)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "approvedd"}, "status"),
        ({"status": ","}, "status"),
        ({"risk": "severe"}, "risk"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "WyJ4IiwxXQ"}, "cursor"),  # valid base64 of ["x",1]
        ({"agent": "no spaces allowed"}, "agent"),
        ({"correlation_id": "a\u200bb"}, "correlation_id"),
        ({"correlation_id": "nul\x00"}, "correlation_id"),
        ({"sort": "id"}, "sort"),
    ],
)
def test_list__bad_filter_or_cursor__400_naming_the_field(db, reviewer, query, field):
    response = person(reviewer).get(URL, query)
    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_list__agent_token__403(db, support_agent):
    factories.submit(support_agent, "send_email")
    response = bearer(factories.make_token(support_agent)).get(URL)
    assert response.status_code == 403
    assert "send_email" not in response.content.decode()


@pytest.mark.parametrize(
    ("scopes", "status"), [(["decide"], 200), (["read_audit"], 200), (["kill"], 403)]
)
def test_list__personal_token__needs_a_read_scope(db, support_agent, scopes, status):
    factories.submit(support_agent, "send_email")
    owner = factories.make_user("bot-owner", groups=("reviewer", "auditor", "incident_owner"))
    _, token = create_personal_token(user=owner, name="bot", scopes=scopes, expires_in_days=1)
    response = bearer(token).get(URL)
    assert response.status_code == status
    if status == 200:
        assert len(response.json()["results"]) == 1
    else:
        assert response.json()["code"] == "token_scope"


def test_list__anonymous__401(db):
    assert Client().get(URL).status_code == 401
