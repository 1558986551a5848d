"""Searching the audit log: each filter selects exactly the matching events, keyset pages
walk the whole selection both ways without repeats or gaps, and rows link to their
targets — on the page and through the API."""

from __future__ import annotations

import pytest
from django.db import transaction

from audit import verbs
from audit.chain import Actor, append_event
from audit.models import AuditEvent
from audit.search import AuditFilters, AuditScope, search_events
from tests import factories

EVERYTHING = AuditScope(everything=True)
AGENTS = ["alpha", "beta", ""]
VERBS = [verbs.ACTION_VIEWED, verbs.ACTION_APPROVAL_RECORDED, verbs.KILL_SWITCH_ENGAGED]


@pytest.fixture(autouse=True)
def checkpoint_dir(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"


@pytest.fixture
def log(db):
    """120 events: agents, actors, verbs, correlation ids and texts in rotation."""
    for i in range(120):
        with transaction.atomic():
            append_event(
                verb=VERBS[i % 3],
                actor=Actor.user_named(f"user{i % 4}") if i % 2 else Actor.system("gate"),
                target_type="action",
                target_id=i % 10,
                agent_slug=AGENTS[i % 3] if i % 5 else "alpha",
                correlation_id=f"conv-{i % 7}",
                data={"i": i, "reasons": ["Needle in reasons" if i % 11 == 0 else "routine"]},
            )
    return list(AuditEvent.objects.order_by("id"))


def _ids(page) -> list[int]:
    return [e.pk for e in page.events]


def _all_pages(filters: AuditFilters, limit: int) -> list[int]:
    seen, before = [], None
    while True:
        page = search_events(EVERYTHING, filters, before=before, limit=limit)
        seen += _ids(page)
        if page.older is None:
            return seen
        before = page.older


@pytest.mark.parametrize(
    ("filters", "predicate"),
    [
        (AuditFilters(agent="beta"), lambda e: e.agent_slug == "beta"),
        (AuditFilters(actor="user1"), lambda e: e.actor == "user1"),
        (
            AuditFilters(verb=verbs.KILL_SWITCH_ENGAGED),
            lambda e: e.verb == verbs.KILL_SWITCH_ENGAGED,
        ),
        (AuditFilters(action_id=3), lambda e: e.target_type == "action" and e.target_id == "3"),
        (AuditFilters(correlation_id="conv-2"), lambda e: e.correlation_id == "conv-2"),
        (AuditFilters(text="needle in"), lambda e: "Needle in" in e.data["reasons"][0]),
        (
            AuditFilters(agent="alpha", verb=verbs.ACTION_VIEWED, actor="gate"),
            lambda e: (
                e.agent_slug == "alpha" and e.verb == verbs.ACTION_VIEWED and e.actor == "gate"
            ),
        ),
    ],
    ids=["agent", "actor", "verb", "action", "correlation", "text", "combined"],
)
def test_filters__select_exactly_the_matching_events(log, filters, predicate):
    expected = [e.pk for e in reversed(log) if predicate(e)]
    assert expected, "the fixture should hold matches"
    assert _all_pages(filters, limit=7) == expected


def test_filters__time_range__since_inclusive_until_exclusive(log):
    since, until = log[30].created_at, log[70].created_at
    expected = [e.pk for e in reversed(log) if since <= e.created_at < until]
    assert _all_pages(AuditFilters(since=since, until=until), limit=9) == expected


def test_pagination__older_then_newer__walks_the_selection_both_ways(log):
    everything = [e.pk for e in reversed(log)]
    # Older pages: every event once, newest first
    assert _all_pages(AuditFilters(), limit=50) == everything
    first = search_events(EVERYTHING, AuditFilters(), limit=50)
    second = search_events(EVERYTHING, AuditFilters(), before=first.older, limit=50)
    third = search_events(EVERYTHING, AuditFilters(), before=second.older, limit=50)
    assert len(_ids(third)) == 20 and third.older is None and first.newer is None
    # Newer pages from the last one lead back to the first
    back = search_events(EVERYTHING, AuditFilters(), after=third.newer, limit=50)
    assert _ids(back) == _ids(second)
    front = search_events(EVERYTHING, AuditFilters(), after=back.newer, limit=50)
    assert _ids(front) == _ids(first) and front.newer is None


def test_pagination__new_events_arriving__do_not_shift_older_pages(log):
    first = search_events(EVERYTHING, AuditFilters(), limit=10)
    with transaction.atomic():
        append_event(verb=verbs.ACTION_VIEWED, actor=Actor.system("late"))
    second = search_events(EVERYTHING, AuditFilters(), before=first.older, limit=10)
    assert _ids(second) == [e.pk for e in reversed(log)][10:20]


def test_scope__agent_auditor__sees_only_that_agent(log):
    scope = AuditScope(everything=False, agent_slugs=frozenset({"beta"}))
    page = search_events(scope, AuditFilters(), limit=500)
    assert {e.agent_slug for e in page.events} == {"beta"}
    assert search_events(scope, AuditFilters(agent="alpha"), limit=500).events == []


# --- the page ---------------------------------------------------------------------------------


def test_page__filters_and_links(db, support_agent, client, auditor):
    action = factories.submit(support_agent, "send_email", {"to": "<b>x</b>"})
    client.force_login(auditor)
    response = client.get("/audit", {"agent": "support-assistant", "verb": verbs.ACTION_SUBMITTED})
    html = response.content.decode()
    assert response.status_code == 200
    assert f'href="/actions/{action.pk}"' in html
    assert f"action #{action.pk} (send_email)" in html
    assert "/audit/export?" in html and "format=jsonl" in html and "format=csv" in html
    assert 'id="event-' in html
    assert html.count('<tr id="event-') == 1


def test_page__keyset_links__carry_the_filters(log, client, auditor):
    client.force_login(auditor)
    html = client.get("/audit", {"agent": "alpha"}).content.decode()
    assert "agent=alpha&amp;before=" in html
    older_id = next(e.pk for e in reversed(log) if e.agent_slug == "alpha")
    html = client.get("/audit", {"agent": "alpha", "before": older_id + 1}).content.decode()
    assert "after=" in html


def test_page__invalid_filter__shown_and_ignored(log, client, auditor):
    client.force_login(auditor)
    response = client.get("/audit", {"since": "not a date", "agent": "beta"})
    html = response.content.decode()
    assert response.status_code == 200 and "Enter a valid date/time" in html
    beta = sum(1 for e in log if e.agent_slug == "beta")
    assert html.count('<tr id="event-') == min(beta, 50)  # the agent filter still applies


def test_page__queries__do_not_grow_with_the_page(
    log, client, auditor, django_assert_max_num_queries
):
    client.force_login(auditor)
    # A fixed number, whatever the page size (the verification status reads the latest run,
    # the events past it and the newest "Verify now" job: three of them).
    with django_assert_max_num_queries(14):
        client.get("/audit")


# --- the API ------------------------------------------------------------------------------------


def test_api__list_filters_and_follows_keyset_links(log, client, auditor):
    client.force_login(auditor)
    body = client.get("/api/v1/audit/events", {"agent": "beta", "limit": 15}).json()
    assert len(body["results"]) == 15 and body["newer"] is None
    assert {e["agent_slug"] for e in body["results"]} == {"beta"}
    event = body["results"][0]
    assert set(event) >= {
        "id",
        "partition",
        "chain_seq",
        "created_at",
        "hash",
        "prev_hash",
        "description",
    }
    second = client.get(body["older"]).json()
    ids = [e["id"] for e in body["results"] + second["results"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 30


def test_api__detail_and_verbs(log, client, auditor):
    client.force_login(auditor)
    event = log[5]
    body = client.get(f"/api/v1/audit/events/{event.pk}").json()
    assert body["hash"] == event.hash and body["created_at"] == event.created_at.isoformat()
    assert client.get("/api/v1/audit/events/999999").status_code == 404
    names = [v["name"] for v in client.get("/api/v1/audit/verbs").json()]
    assert verbs.ACTION_SUBMITTED in names and verbs.AUDIT_RETENTION_APPLIED in names


def test_api__invalid_filters__400_with_fields(log, client, auditor):
    client.force_login(auditor)
    response = client.get("/api/v1/audit/events", {"since": "yesterday-ish", "before": "x"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_api__documented_in_openapi(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    for path in (
        "/api/v1/audit/events",
        "/api/v1/audit/export",
        "/api/v1/audit/status",
        "/api/v1/audit/actions/{action_id}/trace",
        "/api/v1/audit/actions/{action_id}/replay",
    ):
        assert path in schema
