"""Refused attempts leave a trace (issue 15, class 6): ``access.refused``.

Through HTTP, as an attacker would try: the refusal is answered as before, the refused write
left nothing, and exactly one ``access.refused`` event names who was refused, why and about
which agent. A flood of the same refusal writes one event a minute; the next one says how
many were held back. Counted correctly under concurrency; the chain still verifies."""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts import personal_tokens
from approvals.models import Decision
from audit import refusals, verbs
from audit.models import AuditEvent, RefusalWindow
from audit.search import describe
from audit.verification import verify_chain
from config import refusal_audit
from tests import factories

pytestmark = pytest.mark.django_db


def refused_events():
    return list(AuditEvent.objects.filter(verb=verbs.ACCESS_REFUSED).order_by("id"))


def person(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def agent_client(agent) -> Client:
    return Client(headers={"Authorization": f"Bearer {factories.make_token(agent)}"})


def decide(client: Client, action_id: int, verdict: str = "approve", **extra):
    return client.post(
        f"/api/v1/actions/{action_id}/decisions",
        data=json.dumps({"verdict": verdict, **extra}),
        content_type="application/json",
    )


@pytest.fixture
def frozen_now(monkeypatch):
    """Time held at 10 s past a minute (so a burst never straddles two windows), moved on
    with ``frozen_now.advance(seconds)``."""

    class Clock:
        def __init__(self) -> None:
            self.now = timezone.now().replace(second=10, microsecond=0)

        def advance(self, seconds: int) -> None:
            self.now += timedelta(seconds=seconds)

    clock = Clock()
    monkeypatch.setattr(timezone, "now", lambda: clock.now)
    return clock


# --- who is refused, and what is recorded --------------------------------------------------


def test_auditor_approves__api__403_one_event_and_no_decision(support_agent, auditor):
    # Given a pending action the auditor may read but not decide
    action = factories.submit(support_agent, "send_email")
    # When the auditor posts an approval through the API
    response = decide(person(auditor), action.pk)
    # Then it is refused as before, nothing was decided, and one event says so
    assert response.status_code == 403 and response.json()["code"] == "not_reviewer"
    assert not Decision.objects.filter(action=action).exists()
    [event] = refused_events()
    assert (event.actor_type, event.actor) == ("user", auditor.username)
    assert (event.agent_slug, event.target_type, event.target_id) == (
        support_agent.slug,
        "action",
        str(action.pk),
    )
    assert event.data["code"] == "not_reviewer"
    assert event.data["channel"] == "api"
    assert event.data["repeats_since_last_event"] == 0
    assert event.data["path"] == f"/api/v1/actions/{action.pk}/decisions"
    # And the audit log and the action's trace read it as a sentence
    sentence = f"{auditor.username} was refused (not_reviewer) on action #{action.pk}"
    assert describe(event) == sentence
    assert sentence in person(auditor).get(f"/audit/actions/{action.pk}").content.decode()
    assert sentence in person(auditor).get("/audit").content.decode()


def test_agent_token_decides__people_only_endpoint__403_one_event_naming_the_agent(
    support_agent,
):
    action = factories.submit(support_agent, "send_email")
    response = decide(agent_client(support_agent), action.pk)
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    assert not Decision.objects.filter(action=action).exists()
    [event] = refused_events()
    assert (event.actor_type, event.actor, event.agent_slug) == (
        "agent",
        support_agent.slug,
        support_agent.slug,
    )
    assert event.data["code"] == "permission_denied"


def test_reviewer_of_other_agent__api__404_and_one_not_visible_event(support_agent, other_agent):
    # Given a reviewer of the other agent only, and an action of the support agent
    scoped = factories.make_user("scoped", agent_perms={"review_agent": other_agent})
    action = factories.submit(support_agent, "send_email")
    # When they try to approve it through the API
    response = decide(person(scoped), action.pk)
    # Then they are told nothing exists, nothing was decided, and the log knows better
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert not Decision.objects.filter(action=action).exists()
    [event] = refused_events()
    assert (event.actor, event.agent_slug, event.target_id) == (
        "scoped",
        support_agent.slug,
        str(action.pk),
    )
    assert event.data["code"] == "not_visible"


def test_reviewer_of_other_agent__page__404_and_one_not_visible_event(support_agent, other_agent):
    scoped = factories.make_user("scoped", agent_perms={"review_agent": other_agent})
    action = factories.submit(support_agent, "send_email")
    response = person(scoped).post(f"/actions/{action.pk}/approve", {"comment": ""})
    assert response.status_code == 404
    assert not Decision.objects.filter(action=action).exists()
    [event] = refused_events()
    assert (event.actor, event.agent_slug) == ("scoped", support_agent.slug)
    assert (event.data["code"], event.data["channel"]) == ("not_visible", "page")


def test_agent_reads_other_agents_action__404_and_one_event(support_agent, other_agent):
    action = factories.submit(support_agent, "send_email")
    response = agent_client(other_agent).get(f"/api/v1/actions/{action.pk}")
    assert response.status_code == 404
    [event] = refused_events()
    assert (event.actor_type, event.actor) == ("agent", other_agent.slug)
    assert (event.agent_slug, event.data["code"]) == (support_agent.slug, "not_visible")


def test_personal_token_without_scope__token_scope_and_one_event(support_agent, reviewer):
    # Given a reviewer's personal token that may only read the audit log
    _, token = personal_tokens.create_personal_token(
        user=reviewer, name="reader", scopes=["read_audit"], expires_in_days=1
    )
    action = factories.submit(support_agent, "send_email")
    # When it is used to approve
    response = decide(Client(headers={"Authorization": f"Bearer {token}"}), action.pk)
    # Then the scope refuses it, and the refusal names the token's owner
    assert response.status_code == 403 and response.json()["code"] == "token_scope"
    [event] = refused_events()
    assert (event.actor, event.agent_slug, event.data["code"]) == (
        reviewer.username,
        support_agent.slug,
        "token_scope",
    )


def test_long_poll_on_other_agents_action__over_asgi__404_and_one_event(
    live_api, support_agent, other_agent
):
    # Given a real server (ASGI) and an agent waiting on another agent's action
    action = factories.submit(support_agent, "send_email")
    headers = {"Authorization": f"Bearer {factories.make_token(other_agent)}"}
    response = live_api.get(f"/api/v1/actions/{action.pk}?wait=1", headers=headers)
    # Then it is told nothing exists, and the attempt is recorded once
    assert response.status_code == 404
    [event] = refused_events()
    assert (event.actor, event.agent_slug, event.data["code"]) == (
        other_agent.slug,
        support_agent.slug,
        "not_visible",
    )


def test_own_action_reads_and_missing_actions__nothing_recorded(support_agent, reviewer):
    action = factories.submit(support_agent, "send_email")
    assert agent_client(support_agent).get(f"/api/v1/actions/{action.pk}").status_code == 200
    assert person(reviewer).get("/api/v1/actions/999999").status_code == 404
    assert refused_events() == []


def test_self_approval__api__own_request_and_one_event(support_agent, reviewer):
    # Given an action the reviewer asked for (on_behalf_of)
    action = factories.submit(support_agent, "send_email", on_behalf_of=reviewer.username)
    # When they approve it themselves
    response = decide(person(reviewer), action.pk)
    # Then it is refused, not decided, and recorded
    assert response.status_code == 403 and response.json()["code"] == "own_request"
    assert not Decision.objects.filter(action=action).exists()
    [event] = refused_events()
    assert (event.actor, event.agent_slug, event.data["code"]) == (
        reviewer.username,
        support_agent.slug,
        "own_request",
    )


def test_self_approval__page__own_request_card_and_one_event(support_agent, reviewer):
    action = factories.submit(support_agent, "send_email", on_behalf_of=reviewer.username)
    response = person(reviewer).post(
        f"/actions/{action.pk}/approve", {"comment": "", "payload_hash": action.payload_hash}
    )
    assert response.status_code == 403
    assert not Decision.objects.filter(action=action).exists()
    [event] = refused_events()
    assert (event.actor, event.data["code"], event.data["channel"]) == (
        reviewer.username,
        "own_request",
        "page",
    )


def test_governance_page_refused__permission_denied_page__one_event(support_agent, reviewer):
    # A reviewer may see the agent but not govern it: PermissionDenied, Django's 403 page
    response = person(reviewer).post(f"/agents/{support_agent.slug}/tier", {"tier": "shadow"})
    assert response.status_code == 403
    [event] = refused_events()
    assert (event.actor, event.agent_slug, event.target_type) == (
        reviewer.username,
        support_agent.slug,
        "agent",
    )
    assert event.data["channel"] == "page"


def test_people_page__superuser_disables_own_account__shown_refused_and_one_event(
    reference_data,
):
    # Given a superuser on the People page
    root = factories.make_user("root", superuser=True)
    client = person(root)
    # When they disable their own account
    response = client.post(f"/people/{root.pk}/disable", {"reason": "testing"}, follow=True)
    # Then the page shows the refusal, the account stays active ...
    assert response.redirect_chain == [("/people", 302)]
    assert "You cannot disable your own account." in response.content.decode()
    root.refresh_from_db()
    assert root.is_active
    # ... and the refusal is audited once, with its code
    [event] = refused_events()
    assert (event.actor, event.data["code"], event.data["channel"]) == (
        "root",
        "own_account",
        "page",
    )


def test_state_conflicts_anonymous_and_csrf__not_recorded(support_agent, reviewer, reviewer2):
    action = factories.submit(support_agent, "send_email")
    assert decide(person(reviewer), action.pk).status_code == 201
    # A decision on a decided action is a state conflict (409), not an access refusal
    assert decide(person(reviewer2), action.pk).json()["code"] == "not_pending"
    # No one to name
    assert decide(Client(), action.pk).status_code == 401
    # A forged request (no CSRF token) is not its session owner's attempt
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(reviewer2)
    assert decide(forged, action.pk).status_code == 403
    assert forged.post(f"/actions/{action.pk}/approve", {"comment": ""}).status_code == 403
    assert refused_events() == []


# --- floods --------------------------------------------------------------------------------


def test_flood__one_event_a_minute__next_one_reports_the_repeats(
    support_agent, auditor, frozen_now
):
    # Given an auditor trying 50 times within one minute
    action = factories.submit(support_agent, "send_email")
    client = person(auditor)
    for _ in range(50):
        assert decide(client, action.pk).status_code == 403
    # Then one event, and the rest counted
    [first] = refused_events()
    assert first.data["repeats_since_last_event"] == 0
    assert RefusalWindow.objects.get().refusals == 50
    # When they try again a minute later
    frozen_now.advance(61)
    assert decide(client, action.pk).status_code == 403
    # Then a second event says 49 were held back since the first, and from when
    assert len(refused_events()) == 2
    second = refused_events()[1]
    assert second.data["repeats_since_last_event"] == 49
    assert second.data["repeats_window_start"] == first.data["window_start"]
    assert second.data["window_start"] != first.data["window_start"]
    # And only the current minute is still counted
    assert list(RefusalWindow.objects.values_list("refusals", flat=True)) == [1]
    # Nothing was ever decided, and the chain verifies
    assert not Decision.objects.filter(action=action).exists()
    assert verify_chain(workers=1).ok


def test_flood__another_code_or_agent__gets_its_own_event(support_agent, other_agent, frozen_now):
    # Given a reviewer of the other agent only
    scoped = factories.make_user("scoped", agent_perms={"review_agent": other_agent})
    third = factories.make_agent("third-agent")
    client = person(scoped)
    theirs = factories.submit(support_agent, "send_email")
    own = factories.submit(other_agent, "send_email", on_behalf_of="scoped")
    thirds = factories.submit(third, "send_email")
    # When they are refused three ways, twice each, within one minute
    for _ in range(2):
        assert decide(client, theirs.pk).status_code == 404  # not_visible, support agent
        assert decide(client, own.pk).status_code == 403  # own_request, other agent
        assert decide(client, thirds.pk).status_code == 404  # not_visible, third agent
    # Then each (code, agent) has one event
    assert sorted((e.data["code"], e.agent_slug) for e in refused_events()) == [
        ("not_visible", support_agent.slug),
        ("not_visible", third.slug),
        ("own_request", other_agent.slug),
    ]
    assert sorted(RefusalWindow.objects.values_list("refusals", flat=True)) == [2, 2, 2]


def _refuse_at_barrier(token: str, action_id: int, barrier, answers: list) -> None:
    try:
        client = Client(headers={"Authorization": f"Bearer {token}"})
        barrier.wait()
        answers.append(decide(client, action_id).status_code)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_concurrent_refusals__eight_threads__one_event_and_the_right_count(
    support_agent, frozen_now
):
    # Given an agent token trying to decide, from 8 threads at once
    action = factories.submit(support_agent, "send_email")
    token = factories.make_token(support_agent)
    barrier = threading.Barrier(8)
    answers: list[int] = []
    threads = [
        threading.Thread(target=_refuse_at_barrier, args=(token, action.pk, barrier, answers))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every one was refused, one event was written, and all eight were counted
    assert answers == [403] * 8
    assert len(refused_events()) == 1
    assert RefusalWindow.objects.get().refusals == 8
    assert not Decision.objects.filter(action=action).exists()
    # And the next minute's event reports the seven held back; the chain verifies
    frozen_now.advance(60)
    assert decide(agent_client(support_agent), action.pk).status_code == 403
    assert refused_events()[-1].data["repeats_since_last_event"] == 7
    assert verify_chain(workers=1).ok


# --- when the trace cannot be written --------------------------------------------------------


def test_audit_write_fails__refusal_still_answered_error_logged_nothing_counted(
    support_agent, auditor, monkeypatch, caplog
):
    action = factories.submit(support_agent, "send_email")

    def broken(**kwargs):
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(refusals, "append_event", broken)
    with caplog.at_level(logging.ERROR, logger="audit.refusals"):
        response = decide(person(auditor), action.pk)
    assert response.status_code == 403 and response.json()["code"] == "not_reviewer"
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    assert refused_events() == []
    assert not RefusalWindow.objects.exists()  # so the next refusal writes the event


def test_codes__access_refusals_and_state_conflicts_do_not_overlap() -> None:
    assert not refusals.ACCESS_REFUSAL_CODES & refusals.NOT_RECORDED_CODES
    assert refusals.is_recorded("anything_new", 403)
    assert refusals.is_recorded("not_visible", 404)
    assert not refusals.is_recorded("not_pending", 409)


def test_agent_lookup_fails__refusal_still_answered_and_error_logged(
    support_agent, auditor, monkeypatch, caplog
):
    action = factories.submit(support_agent, "send_email")

    def broken(*args, **kwargs):
        raise RuntimeError("lookup failed")

    monkeypatch.setattr(refusal_audit, "_concerned", broken)
    with caplog.at_level(logging.ERROR, logger="config.refusal_audit"):
        response = decide(person(auditor), action.pk)
    assert response.status_code == 403 and response.json()["code"] == "not_reviewer"
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    assert refused_events() == []
