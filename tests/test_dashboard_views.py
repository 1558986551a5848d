"""The reviewer dashboard's pages and decision forms, through Django's test client: who sees
what, what each decision does, and what the HTML offers."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from approvals import actions
from approvals.models import Action
from audit.canonical import payload_hash
from audit.models import AuditEvent
from tests import factories

HIGH = {"blast_radius": {"amount": {"value": 5000, "currency": "EUR"}}}
CRITICAL = {"blast_radius": {"amount": {"value": 20000, "currency": "EUR"}}}
HTMX = {"HTTP_HX_REQUEST": "true"}


# --- people ---------------------------------------------------------------------------------


@pytest.fixture
def reviewer_of_a(support_agent):
    """Reviews support-assistant only (a django-guardian object permission)."""
    return factories.make_user("alice", agent_perms={"rollout.review_agent": support_agent})


@pytest.fixture
def governance_owner(reference_data):
    return factories.make_user("gina", groups=("governance_owner",))


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture
def pending_a(support_agent):
    return factories.submit(support_agent, "send_email", {"to": "a@example.com"}, summary="to A")


@pytest.fixture
def pending_b(other_agent):
    return factories.submit(other_agent, "send_email", {"to": "b@example.com"}, summary="to B")


def card_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'id="card-(\d+)"', html)]


def verbs_for(action: Action) -> list[str]:
    return list(
        AuditEvent.objects.filter(target_type="action", target_id=str(action.pk))
        .order_by("id")
        .values_list("verb", flat=True)
    )


# --- the permission matrix ------------------------------------------------------------------

ROLES = ["reviewer_of_a", "reviewer", "auditor", "governance_owner", "incident_owner"]

# role -> (sees A in queue, sees B in queue)
QUEUE = {
    "reviewer_of_a": (True, False),
    "reviewer": (True, True),
    "auditor": (False, False),
    "governance_owner": (False, False),
    "incident_owner": (False, False),
}
# role -> (status of A's page, status of B's page); 200 pages offer decisions only to reviewers
DETAIL = {
    "reviewer_of_a": (200, 404),
    "reviewer": (200, 200),
    "auditor": (200, 200),
    "governance_owner": (404, 404),
    "incident_owner": (404, 404),
}
# role -> (HTTP status of approving A, of approving B) without JavaScript
APPROVE = {
    "reviewer_of_a": (302, 404),
    "reviewer": (302, 302),
    "auditor": (403, 403),
    "governance_owner": (404, 404),
    "incident_owner": (404, 404),
}


@pytest.mark.parametrize("role", ROLES)
def test_queue__each_role__shows_only_reviewable_cards(
    request, role, as_user, pending_a, pending_b
):
    # Given pending actions of agents A and B
    # When each role opens the queue
    response = as_user(request.getfixturevalue(role)).get("/queue")
    # Then they see the cards of the agents they review, and no others
    assert response.status_code == 200
    shown = card_ids(response.content.decode())
    assert (pending_a.pk in shown, pending_b.pk in shown) == QUEUE[role]
    assert ("to B" in response.content.decode()) == QUEUE[role][1]


@pytest.mark.parametrize("role", ROLES)
def test_action_page__each_role__visible_to_reviewers_and_auditors_only(
    request, role, as_user, pending_a, pending_b
):
    client = as_user(request.getfixturevalue(role))
    for action, expected in zip((pending_a, pending_b), DETAIL[role], strict=True):
        response = client.get(f"/actions/{action.pk}")
        assert response.status_code == expected, (role, action.agent.slug)
        if expected == 200:
            offers_decision = f"/actions/{action.pk}/approve" in response.content.decode()
            assert offers_decision == (role != "auditor")


@pytest.mark.parametrize("role", ROLES)
def test_approve__each_role__only_reviewers_of_the_agent_decide(
    request, role, as_user, pending_a, pending_b
):
    client = as_user(request.getfixturevalue(role))
    for action, expected in zip((pending_a, pending_b), APPROVE[role], strict=True):
        response = client.post(
            f"/actions/{action.pk}/approve", {"payload_hash": action.payload_hash, "comment": ""}
        )
        assert response.status_code == expected, (role, action.agent.slug)
        action.refresh_from_db()
        assert action.status == ("approved" if expected == 302 else "pending")


@pytest.mark.parametrize("role", ROLES)
def test_decided__each_role__lists_visible_decisions_only(
    request, role, as_user, reviewer2, pending_a, pending_b
):
    for action in (pending_a, pending_b):
        actions.reject(action_id=action.pk, user=reviewer2, comment="no")
    response = as_user(request.getfixturevalue(role)).get("/decided")
    assert response.status_code == 200
    html = response.content.decode()
    sees_a, sees_b = f"/actions/{pending_a.pk}" in html, f"/actions/{pending_b.pk}" in html
    expected = {
        "reviewer_of_a": (True, False),
        "reviewer": (True, True),
        "auditor": (True, True),
        "governance_owner": (False, False),
        "incident_owner": (False, False),
    }[role]
    assert (sees_a, sees_b) == expected


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/"),
        ("get", "/decided"),
        ("get", "/actions/{pk}"),
        ("post", "/actions/{pk}/approve"),
        ("post", "/actions/{pk}/reject"),
        ("post", "/actions/{pk}/edit"),
        ("post", "/actions/{pk}/rollback"),
    ],
)
def test_anonymous__any_page__redirected_to_login(client, pending_a, method, path):
    response = getattr(client, method)(path.format(pk=pending_a.pk))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
    pending_a.refresh_from_db()
    assert pending_a.status == "pending"


def test_decision__without_csrf_token__403(reviewer, pending_a):
    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)
    response = client.post(
        f"/actions/{pending_a.pk}/approve", {"payload_hash": pending_a.payload_hash, "comment": ""}
    )
    assert response.status_code == 403
    pending_a.refresh_from_db()
    assert pending_a.status == "pending"


def test_decision__get__405(as_user, reviewer, pending_a):
    assert as_user(reviewer).get(f"/actions/{pending_a.pk}/approve").status_code == 405


# --- decisions ------------------------------------------------------------------------------


def test_approve__without_js__approves_audits_and_redirects_to_next(as_user, reviewer, pending_a):
    response = as_user(reviewer).post(
        f"/actions/{pending_a.pk}/approve",
        {"payload_hash": pending_a.payload_hash, "comment": "fine", "next": "/?risk=medium"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/?risk=medium"
    pending_a.refresh_from_db()
    assert pending_a.status == "approved"
    assert verbs_for(pending_a)[-2:] == ["action.approval_recorded", "action.approved"]
    page = as_user(reviewer).get("/?risk=medium").content.decode()
    assert "Approved: the agent may now run" in page


def test_approve__foreign_next__redirects_to_the_action_instead(as_user, reviewer, pending_a):
    response = as_user(reviewer).post(
        f"/actions/{pending_a.pk}/approve",
        {"payload_hash": pending_a.payload_hash, "next": "https://evil.example/phish"},
    )
    assert response["Location"] == f"/actions/{pending_a.pk}"


def test_approve__htmx__answers_the_updated_card(as_user, reviewer, pending_a):
    response = as_user(reviewer).post(
        f"/actions/{pending_a.pk}/approve", {"payload_hash": pending_a.payload_hash}, **HTMX
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith("<article") and f'id="card-{pending_a.pk}"' in html
    assert 'data-status="approved"' in html and "Approved: the agent may now run" in html
    assert f"/actions/{pending_a.pk}/approve" not in html  # nothing left to decide


def test_reject__without_reason__422_and_stays_pending(as_user, reviewer, pending_a):
    response = as_user(reviewer).post(
        f"/actions/{pending_a.pk}/reject",
        {"payload_hash": pending_a.payload_hash, "comment": "  "},
        **HTMX,
    )
    assert response.status_code == 422
    assert "Say why you reject it" in response.content.decode()
    pending_a.refresh_from_db()
    assert pending_a.status == "pending"


def test_reject__with_reason__rejects_and_returns_feedback(as_user, reviewer, pending_a):
    response = as_user(reviewer).post(
        f"/actions/{pending_a.pk}/reject",
        {"payload_hash": pending_a.payload_hash, "comment": "Wrong customer"},
    )
    assert response.status_code == 302
    pending_a.refresh_from_db()
    assert (pending_a.status, pending_a.feedback) == ("rejected", "Wrong customer")
    assert verbs_for(pending_a)[-1] == "action.rejected"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"to": "x@example.com",}', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("", "This field is required"),
    ],
)
def test_edit__invalid_json__422_keeps_draft_and_stays_pending(
    as_user, reviewer, pending_a, text, message
):
    response = as_user(reviewer).post(
        f"/actions/{pending_a.pk}/edit",
        {"payload_hash": pending_a.payload_hash, "arguments": text, "comment": ""},
        **HTMX,
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert message in html
    assert '<details class="decision decision-edit" data-form="edit" open>' in html
    if text:
        assert "x@example.com" in html or "[1, 2]" in html  # the draft is shown again
    pending_a.refresh_from_db()
    assert pending_a.status == "pending"


def test_edit__without_js_invalid__shows_the_action_page_with_the_error(
    as_user, reviewer, pending_a
):
    response = as_user(reviewer).post(
        f"/actions/{pending_a.pk}/edit", {"payload_hash": pending_a.payload_hash, "arguments": "{"}
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "not valid JSON" in html and 'id="trace-title"' in html


def test_edit__valid__approves_edited_arguments_and_shows_diff(as_user, reviewer, support_agent):
    action = factories.submit(
        support_agent, "create_refund_request", {"order_id": "ORD-1", "amount": 42.5}
    )
    edited = '{"order_id": "ORD-1", "amount": 40}'
    response = as_user(reviewer).post(
        f"/actions/{action.pk}/edit",
        {"payload_hash": action.payload_hash, "arguments": edited, "comment": "cap"},
        **HTMX,
    )
    assert response.status_code == 200
    action.refresh_from_db()
    assert action.status == "approved"
    assert action.arguments == {"order_id": "ORD-1", "amount": 40}
    assert action.original_arguments == {"order_id": "ORD-1", "amount": 42.5}
    assert action.payload_hash == payload_hash({"order_id": "ORD-1", "amount": 40})
    html = response.content.decode()
    assert '<span class="diff-removed">-   &quot;amount&quot;: 42.5,</span>' in html
    assert '<span class="diff-added">+   &quot;amount&quot;: 40,</span>' in html
    assert "action.edited" in verbs_for(action)
    detail = as_user(reviewer).get(f"/actions/{action.pk}").content.decode()
    assert "diff-added" in detail and "edited the arguments of" in detail


def test_edit__breaks_tool_limit__refused_with_message_and_draft_kept(
    as_user, reviewer, support_agent
):
    action = factories.submit(
        support_agent, "create_refund_request", {"order_id": "ORD-1", "amount": 42.5}
    )
    response = as_user(reviewer).post(
        f"/actions/{action.pk}/edit",
        {
            "payload_hash": action.payload_hash,
            "arguments": '{"order_id": "ORD-1", "amount": 20000}',
        },
        **HTMX,
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "break the tool&#x27;s limits" in html and "20000" in html
    action.refresh_from_db()
    assert action.status == "pending"


def test_own_request__approve_not_offered_and_refused(as_user, reviewer, support_agent):
    action = factories.submit(support_agent, "send_email", on_behalf_of=reviewer.username)
    client = as_user(reviewer)
    page = client.get("/").content.decode()
    assert f"/actions/{action.pk}/approve" not in page
    assert f"/actions/{action.pk}/reject" in page  # they may still stop it
    assert "You requested this action" in page
    response = client.post(
        f"/actions/{action.pk}/approve", {"payload_hash": action.payload_hash}, **HTMX
    )
    assert response.status_code == 403
    action.refresh_from_db()
    assert action.status == "pending"


def test_second_vote__same_reviewer__not_offered_and_refused(
    as_user, reviewer, reviewer2, support_agent
):
    action = factories.submit(support_agent, "send_email", **HIGH)
    client = as_user(reviewer)
    assert (
        client.post(
            f"/actions/{action.pk}/approve", {"payload_hash": action.payload_hash}
        ).status_code
        == 302
    )
    page = client.get("/").content.decode()
    assert "<strong>1 of 2</strong> approvals" in page and "by rita" in page
    assert f"/actions/{action.pk}/approve" not in page
    assert (
        client.post(
            f"/actions/{action.pk}/approve", {"payload_hash": action.payload_hash}, **HTMX
        ).status_code
        == 409
    )
    # and the other reviewer is offered the deciding vote
    assert f"/actions/{action.pk}/approve" in as_user(reviewer2).get("/").content.decode()


def test_critical__last_slot__offered_only_to_a_critical_approver(
    as_user, reviewer, reviewer2, critical_reviewer, support_agent
):
    action = factories.submit(support_agent, "send_email", **CRITICAL)
    actions.approve(action_id=action.pk, user=reviewer2)
    assert f"/actions/{action.pk}/approve" not in as_user(reviewer).get("/").content.decode()
    response = as_user(reviewer).post(
        f"/actions/{action.pk}/approve", {"payload_hash": action.payload_hash}
    )
    assert response.status_code == 403
    assert "critical-approval permission" in response.content.decode()
    action.refresh_from_db()
    assert action.status == "pending"
    page = as_user(critical_reviewer).get("/").content.decode()
    assert f"/actions/{action.pk}/approve" in page


def test_decision__on_decided_action__409_with_fresh_card(as_user, reviewer, reviewer2, pending_a):
    actions.reject(action_id=pending_a.pk, user=reviewer2, comment="no")
    response = as_user(reviewer).post(
        f"/actions/{pending_a.pk}/approve", {"payload_hash": pending_a.payload_hash}, **HTMX
    )
    assert response.status_code == 409
    html = response.content.decode()
    assert "This action is rejected, not pending." in html and 'data-status="rejected"' in html


def test_decision__expired_action__refused_and_expired(as_user, reviewer, pending_a):
    Action.objects.filter(pk=pending_a.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = as_user(reviewer).post(
        f"/actions/{pending_a.pk}/approve", {"payload_hash": pending_a.payload_hash}, **HTMX
    )
    assert response.status_code == 409
    pending_a.refresh_from_db()
    assert pending_a.status == "expired"


# --- rollback -------------------------------------------------------------------------------


def executed(agent, compensation=None):
    action = factories.submit(agent, "send_email", compensation=compensation)
    actions.approve(action_id=action.pk, user=factories.make_user(groups=("reviewer",)))
    action.refresh_from_db()
    return actions.report_execution(
        action_id=action.pk, agent=agent, outcome="succeeded", reported_hash=action.payload_hash
    )


def test_rollback__executed_with_compensation__offered_and_requested(
    as_user, reviewer, support_agent
):
    action = executed(support_agent, {"tool": "send_email", "note": "send a correction"})
    client = as_user(reviewer)
    page = client.get(f"/actions/{action.pk}").content.decode()
    assert f"/actions/{action.pk}/rollback" in page and "send a correction" in page
    assert client.post(f"/actions/{action.pk}/rollback", {"comment": ""}).status_code == 422
    response = client.post(f"/actions/{action.pk}/rollback", {"comment": "wrong recipient"})
    assert response.status_code == 302
    action.refresh_from_db()
    assert (action.status, action.feedback) == ("rollback_requested", "wrong recipient")


def test_rollback__no_compensation_or_window_closed__not_offered(as_user, reviewer, support_agent):
    plain = executed(support_agent)
    closed = executed(support_agent, {"note": "undo"})
    Action.objects.filter(pk=closed.pk).update(reversible_until=timezone.now())
    client = as_user(reviewer)
    for action in (plain, closed):
        assert (
            f"/actions/{action.pk}/rollback"
            not in client.get(f"/actions/{action.pk}").content.decode()
        )
    response = client.post(f"/actions/{closed.pk}/rollback", {"comment": "x"}, **HTMX)
    assert response.status_code == 409
    assert "reversible window has closed" in response.content.decode()


def test_rollback__auditor__not_offered_and_refused(as_user, auditor, support_agent):
    action = executed(support_agent, {"note": "undo"})
    client = as_user(auditor)
    assert (
        f"/actions/{action.pk}/rollback" not in client.get(f"/actions/{action.pk}").content.decode()
    )
    assert client.post(f"/actions/{action.pk}/rollback", {"comment": "x"}).status_code == 403


# --- the queue ------------------------------------------------------------------------------


def test_queue__order__highest_risk_then_least_time_left(as_user, reviewer, support_agent):
    low = factories.submit(support_agent, "send_email", summary="x")  # medium by its rule
    Action.objects.filter(pk=low.pk).update(risk="low")
    medium_late = factories.submit(support_agent, "send_email")
    medium_soon = factories.submit(support_agent, "send_email")
    Action.objects.filter(pk=medium_soon.pk).update(
        expires_at=timezone.now() + timedelta(minutes=5)
    )
    critical = factories.submit(support_agent, "send_email", **CRITICAL)
    high = factories.submit(support_agent, "send_email", **HIGH)
    shown = card_ids(as_user(reviewer).get("/").content.decode())
    assert shown == [critical.pk, high.pk, medium_soon.pk, medium_late.pk, low.pk]


def test_queue__filters__narrow_cards_and_count(as_user, reviewer, support_agent, other_agent):
    email_a = factories.submit(support_agent, "send_email")
    refund_a = factories.submit(
        support_agent, "create_refund_request", {"order_id": "1", "amount": 5}, **HIGH
    )
    email_b = factories.submit(other_agent, "send_email")
    client = as_user(reviewer)
    cases = {
        "": {email_a.pk, refund_a.pk, email_b.pk},
        "?agent=support-assistant": {email_a.pk, refund_a.pk},
        "?risk=high": {refund_a.pk},
        "?tool=send_email": {email_a.pk, email_b.pk},
        "?agent=other-agent&tool=send_email": {email_b.pk},
        "?agent=no-such-agent": {email_a.pk, refund_a.pk, email_b.pk},  # stale link: ignored
    }
    for query, expected in cases.items():
        html = client.get("/" + query).content.decode()
        assert set(card_ids(html)) == expected, query
        assert f"<strong data-queue-count>{len(expected)}</strong> pending" in html


def test_queue__pagination__25_per_page(as_user, reviewer, support_agent):
    for _ in range(27):
        factories.submit(support_agent, "send_email")
    client = as_user(reviewer)
    first = client.get("/").content.decode()
    second = client.get("/?page=2").content.decode()
    assert len(card_ids(first)) == 25 and len(card_ids(second)) == 2
    assert "page 1 of 2" in first and 'href="/queue?page=2"' in first


def test_queue__partial__fragment_with_cards_that_left_the_queue(
    as_user, reviewer, reviewer2, pending_a, support_agent
):
    still = factories.submit(support_agent, "send_email")
    actions.approve(action_id=pending_a.pk, user=reviewer2)
    response = as_user(reviewer).get(f"/?partial=1&shown={pending_a.pk},{still.pk},x")
    assert response["X-Airlock-Fragment"] == "queue"
    html = response.content.decode()
    assert "<html" not in html
    assert card_ids(html) == [pending_a.pk, still.pk]
    assert "card--compact" in html and "Approved by rob" in html


def test_queue__partial__shown_ids_of_other_agents_never_leak(
    as_user, reviewer_of_a, reviewer2, pending_b
):
    actions.approve(action_id=pending_b.pk, user=reviewer2)
    html = as_user(reviewer_of_a).get(f"/?partial=1&shown={pending_b.pk}").content.decode()
    assert pending_b.pk not in card_ids(html)


# Session, user, permissions, filters, count, ids, page rows, decisions, and permission
# scopes asked once per person (viewer and distinct approvers), the standing approvals in
# force and the viewer's desktop-notification choice: never once per card.
MAX_QUEUE_QUERIES = 26


def test_queue__query_count__bounded_whatever_the_number_of_cards(
    as_user,
    reviewer,
    reviewer2,
    critical_reviewer,
    support_agent,
    other_agent,
    django_assert_max_num_queries,
):
    # Given cards that need every per-card fact: approvals by others, critical approvers
    client = as_user(reviewer)

    def add(count):
        for index in range(count):
            agent = support_agent if index % 2 else other_agent
            action = factories.submit(agent, "send_email", **(CRITICAL if index % 3 else HIGH))
            actions.approve(action_id=action.pk, user=reviewer2 if index % 2 else critical_reviewer)

    add(10)
    client.get("/")  # the first request also fills process caches and saves the session
    with django_assert_max_num_queries(MAX_QUEUE_QUERIES) as few:
        assert len(card_ids(client.get("/").content.decode())) == 10
    add(190)
    with django_assert_max_num_queries(MAX_QUEUE_QUERIES) as many:
        assert len(card_ids(client.get("/").content.decode())) == 25
    assert len(many.captured_queries) == len(few.captured_queries)


# --- escaping -------------------------------------------------------------------------------


def test_card__agent_text__escaped_and_urls_not_links(as_user, reviewer, support_agent):
    action = factories.submit(
        support_agent,
        "send_email",
        {"body": "<img src=x onerror=alert(1)>"},
        summary="<script>alert('summary')</script>",
        rationale={"objective": "<b>bold</b>", "alternatives": ["<i>x</i>"]},
        evidence=[
            {"kind": "<svg onload=alert(1)>", "title": "t", "url": "javascript:alert(1)"},
            {"kind": "page", "title": "Order", "url": "https://shop.example.com/o/1?a=<x>"},
        ],
    )
    for path in ("/", f"/actions/{action.pk}"):
        html = as_user(reviewer).get(path).content.decode()
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold" not in html
        assert "<svg" not in html
        assert "&lt;script&gt;alert(&#x27;summary&#x27;)&lt;/script&gt;" in html
        assert 'href="javascript:' not in html
        assert "javascript:alert(1)</code>" in html  # shown as text
        assert '<span class="host">shop.example.com</span>' in html


# --- the action page ------------------------------------------------------------------------


def test_action_page__trace__events_in_order_with_actors(as_user, reviewer, support_agent):
    action = factories.submit(support_agent, "send_email", **HIGH)
    actions.approve(action_id=action.pk, user=reviewer, comment="ok")
    html = as_user(reviewer).get(f"/actions/{action.pk}").content.decode()
    # The trace is approvals' (approvals.trace), shared with /audit/actions/<id>
    trace = html[html.index('id="trace-title"') :]
    verbs = ["action.submitted", "action.approval_recorded"]
    assert [trace.index(f'<code class="muted">{verb}</code>') for verb in verbs] == sorted(
        trace.index(f'<code class="muted">{verb}</code>') for verb in verbs
    )
    assert "agent support-assistant" in trace and "user rita" in trace
    assert "policy v1" in html and "<code>requires_approval</code>" in html


def test_action_page__partial__fragment_for_live_refresh(as_user, reviewer, pending_a):
    response = as_user(reviewer).get(f"/actions/{pending_a.pk}?partial=1")
    assert response["X-Airlock-Fragment"] == "action"
    assert "<html" not in response.content.decode()


def test_decided__filters__status_and_tool(as_user, reviewer, reviewer2, support_agent):
    rejected = factories.submit(support_agent, "send_email")
    actions.reject(action_id=rejected.pk, user=reviewer2, comment="no")
    approved = factories.submit(
        support_agent, "create_refund_request", {"order_id": "1", "amount": 5}
    )
    actions.approve(action_id=approved.pk, user=reviewer2)
    factories.submit(support_agent, "send_email")  # still pending: not listed
    client = as_user(reviewer)

    def listed(query):
        return {
            int(pk)
            for pk in re.findall(r'href="/actions/(\d+)"', client.get(query).content.decode())
        }

    assert listed("/decided") == {rejected.pk, approved.pk}
    assert listed("/decided?status=rejected") == {rejected.pk}
    assert listed("/decided?tool=create_refund_request") == {approved.pk}


def test_action_page__opened__audits_one_view_live_refreshes_do_not(as_user, reviewer, pending_a):
    client = as_user(reviewer)
    client.get(f"/actions/{pending_a.pk}")
    client.get(f"/actions/{pending_a.pk}?partial=1")
    client.get(f"/actions/{pending_a.pk}")  # within the dedup window
    assert verbs_for(pending_a).count("action.viewed") == 1
