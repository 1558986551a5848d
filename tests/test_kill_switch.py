"""Kill switches: engaging stops everything in scope at once, in every process; releasing
needs a reason; circuit breakers trip at their thresholds; drills measure the stop."""

import threading
import uuid
from unittest import mock

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from guardian.shortcuts import assign_perm

from approvals import actions, hooks
from approvals.actions import ActionRefused
from approvals.models import Action
from audit.chain import Actor
from audit.models import AuditEvent
from incidents.actions import KillSwitchError, engage_kill_switch, release_kill_switch
from incidents.breakers import check_circuit_breaker, tripped
from rollout.models import Agent, KillSwitch
from tests import factories
from tests.test_api_gate import REFUND, auth, session_client

INCIDENT = Actor.system("tests")


@pytest.fixture
def autonomous_agent(reference_data):
    return factories.make_agent("ops-agent", tier="autonomous")


def test_engage_agent__pending_cancelled_grants_revoked_new_calls_denied(
    db, support_agent, other_agent, reviewer, django_capture_on_commit_callbacks
):
    pending = factories.submit(support_agent, "send_email")
    approved = factories.submit(support_agent, "send_email")
    actions.approve(action_id=approved.pk, user=reviewer)
    allowed = factories.submit(support_agent, "get_order_status", {"order_id": "1"})
    executed = factories.submit(support_agent, "get_order_status", {"order_id": "2"})
    actions.report_execution(
        action_id=executed.pk,
        agent=support_agent,
        outcome="succeeded",
        reported_hash=executed.payload_hash,
    )
    elsewhere = factories.submit(other_agent, "send_email")

    with (
        mock.patch("approvals.events.broadcast_action") as sent,
        django_capture_on_commit_callbacks(execute=True),
    ):
        switch = engage_kill_switch(
            scope="agent", target=support_agent.slug, reason="refund loop", actor=INCIDENT
        )

    status = {a.pk: a.status for a in Action.objects.all()}
    assert status[pending.pk] == "cancelled"
    assert status[approved.pk] == "revoked"
    assert status[allowed.pk] == "revoked"
    assert status[executed.pk] == "executed"  # already reported: history stays
    assert status[elsewhere.pk] == "pending"  # other agents are untouched
    assert switch.stopped_counts == {"cancelled": 1, "revoked": 2}
    assert {c.args[0].pk for c in sent.call_args_list} == {pending.pk, approved.pk, allowed.pk}
    assert AuditEvent.objects.filter(verb="kill_switch.engaged", target_id=str(switch.pk)).exists()
    assert AuditEvent.objects.filter(verb="action.revoked").count() == 2
    with pytest.raises(ActionRefused) as exc:
        actions.report_execution(
            action_id=approved.pk,
            agent=support_agent,
            outcome="succeeded",
            reported_hash=approved.payload_hash,
        )
    assert exc.value.code == "revoked"
    denied = factories.submit(support_agent, "get_order_status", {"order_id": "3"})
    assert (denied.status, denied.reason_code) == ("denied", "kill_switch")
    assert factories.submit(other_agent, "get_order_status", {"order_id": "3"}).status == "allowed"


def test_engage_tool__stops_that_tool_across_agents_only(db, support_agent, other_agent):
    engage_kill_switch(scope="tool", target="send_email", reason="mail storm", actor=INCIDENT)
    for agent in (support_agent, other_agent):
        assert factories.submit(agent, "send_email").reason_code == "kill_switch"
        assert factories.submit(agent, "get_order_status", {"order_id": "1"}).status == "allowed"


def test_engage_global__stops_everything_and_release_restores(db, support_agent, other_agent):
    switch = engage_kill_switch(scope="global", target="", reason="incident 42", actor=INCIDENT)
    assert (
        factories.submit(other_agent, "get_order_status", {"order_id": "1"}).reason_code
        == "kill_switch"
    )
    with pytest.raises(KillSwitchError):
        release_kill_switch(switch_id=switch.pk, reason=" ", actor=INCIDENT)
    release_kill_switch(switch_id=switch.pk, reason="fixed", actor=INCIDENT)
    assert factories.submit(other_agent, "get_order_status", {"order_id": "2"}).status == "allowed"
    with pytest.raises(KillSwitchError):
        release_kill_switch(switch_id=switch.pk, reason="again", actor=INCIDENT)
    assert KillSwitch.objects.get().released_by == str(INCIDENT)


@pytest.mark.parametrize(
    ("scope", "target"), [("agent", ""), ("agent", "no-such-agent"), ("bogus", "x")]
)
def test_engage__bad_scope_or_target__refused_and_nothing_recorded(
    db, support_agent, scope, target
):
    with pytest.raises(KillSwitchError):
        engage_kill_switch(scope=scope, target=target, reason="r", actor=INCIDENT)
    assert not KillSwitch.objects.exists()


def test_cli__kill_and_release(db, support_agent, capsys):
    factories.submit(support_agent, "send_email")
    call_command("kill", "agent", support_agent.slug, "--reason", "from the terminal")
    assert "1 pending cancelled" in capsys.readouterr().out
    switch = KillSwitch.objects.get()
    assert switch.engaged
    with pytest.raises(CommandError):
        call_command("kill", "agent", "ghost", "--reason", "x")
    call_command("release", str(switch.pk), "--reason", "all clear")
    switch.refresh_from_db()
    assert not switch.engaged and switch.release_reason == "all clear"


# --- API and permissions ------------------------------------------------------------------


@pytest.fixture
def scoped_incident_owner(support_agent):
    user = factories.make_user("scoped-ivan")
    assign_perm("rollout.kill_agent", user, support_agent)
    return user


@pytest.mark.parametrize(
    ("who", "scope", "target", "expected"),
    [
        ("incident_owner", "global", "", 201),
        ("incident_owner", "tool", "send_email", 201),
        ("incident_owner", "agent", "support-assistant", 201),
        ("scoped_incident_owner", "agent", "support-assistant", 201),
        ("scoped_incident_owner", "agent", "other-agent", 403),
        ("scoped_incident_owner", "global", "", 403),
        ("scoped_incident_owner", "tool", "send_email", 403),
        ("reviewer", "agent", "support-assistant", 403),
        ("auditor", "global", "", 403),
    ],
)
def test_api_engage__permission_matrix(
    request, asgi_server, live_api, other_agent, support_agent, who, scope, target, expected
):
    user = request.getfixturevalue(who)
    with session_client(asgi_server, user) as person:
        response = person.post(
            "/api/v1/kill-switches", json={"scope": scope, "target": target, "reason": "test"}
        )
    assert response.status_code == expected, response.text
    assert KillSwitch.objects.count() == (1 if expected == 201 else 0)


def test_api__agent_token_cannot_engage_or_list(live_api, support_agent):
    token = factories.make_token(support_agent)
    headers = {"Authorization": f"Bearer {token}"}
    assert (
        live_api.post(
            "/api/v1/kill-switches", json={"scope": "global", "reason": "x"}, headers=headers
        ).status_code
        == 403
    )
    assert live_api.get("/api/v1/kill-switches", headers=headers).status_code == 403


def test_api_engage_release__round_trip_and_long_poll_answered(
    asgi_server, live_api, support_agent, incident_owner
):
    token = factories.make_token(support_agent)
    action_id = live_api.post("/api/v1/actions", json=REFUND, headers=auth(token)).json()["id"]
    result = {}

    def wait_for_decision():
        with httpx.Client(base_url=asgi_server.url, timeout=60) as agent:
            result["response"] = agent.get(
                f"/api/v1/actions/{action_id}?wait=40", headers=auth(token, key=False)
            )

    waiter = threading.Thread(target=wait_for_decision)
    waiter.start()
    with session_client(asgi_server, incident_owner) as person:
        engaged = person.post(
            "/api/v1/kill-switches",
            json={"scope": "agent", "target": support_agent.slug, "reason": "runaway"},
        )
        assert engaged.status_code == 201
        body = engaged.json()
        assert body["engaged"] and body["stopped"] == {"cancelled": 1, "revoked": 0}
        waiter.join(timeout=60)
        # The waiting agent is answered by the engage itself
        assert result["response"].json()["status"] == "cancelled"
        assert "kill switch" in result["response"].json()["feedback"].lower()
        listed = person.get("/api/v1/kill-switches").json()
        assert [s["id"] for s in listed] == [body["id"]]
        no_reason = person.post(f"/api/v1/kill-switches/{body['id']}/release", json={})
        assert no_reason.status_code == 400 and "reason" in no_reason.json()["fields"]
        released = person.post(
            f"/api/v1/kill-switches/{body['id']}/release", json={"reason": "fixed"}
        )
        assert released.status_code == 200 and released.json()["engaged"] is False


# --- every process, every time ------------------------------------------------------------


@pytest.mark.multiprocess
@pytest.mark.django_db(transaction=True)
def test_multiprocess__gate_call_after_engage__denied_by_every_server_every_time(
    support_agent, incident_owner
):
    from tests.servers import start_servers

    token = factories.make_token(support_agent)
    servers = start_servers(2)
    try:
        clients = [httpx.Client(base_url=s.url, timeout=30) for s in servers]
        read = {"tool": "get_order_status", "arguments": {"order_id": "1"}}
        stale_allows = 0
        for round_number in range(25):
            assert (
                clients[round_number % 2]
                .post("/api/v1/actions", json=read, headers=auth(token))
                .json()["status"]
                == "allowed"
            )
            switch = engage_kill_switch(
                scope="agent",
                target=support_agent.slug,
                reason=f"round {round_number}",
                actor=INCIDENT,
            )
            # A call that starts after the engage returned, on either process, is denied
            for client in clients:
                for _ in range(2):
                    answer = client.post("/api/v1/actions", json=read, headers=auth(token)).json()
                    stale_allows += answer["reason_code"] != "kill_switch"
            release_kill_switch(switch_id=switch.pk, reason="next round", actor=INCIDENT)
        assert stale_allows == 0
    finally:
        for server in servers:
            server.stop()


def _race_round(agent, reviewer, errors):
    pending = factories.submit(agent, "send_email")
    allowed = factories.submit(agent, "get_order_status", {"order_id": uuid.uuid4().hex})
    barrier = threading.Barrier(2)
    engaged = {}

    def approve():
        barrier.wait()
        try:
            actions.approve(action_id=pending.pk, user=reviewer)
        except ActionRefused:
            pass  # cancelled first: the engage won
        finally:
            connection.close()

    def engage():
        barrier.wait()
        engaged["switch"] = engage_kill_switch(
            scope="agent", target=agent.slug, reason="race", actor=INCIDENT
        )
        connection.close()

    threads = [threading.Thread(target=approve), threading.Thread(target=engage)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # After the engage committed, nothing in scope may be executed
    for action in (pending, allowed):
        try:
            actions.report_execution(
                action_id=action.pk,
                agent=agent,
                outcome="succeeded",
                reported_hash=Action.objects.get(pk=action.pk).payload_hash,
            )
            errors.append(f"action {action.pk} executed after the engage committed")
        except ActionRefused:
            pass
    late = factories.submit(agent, "get_order_status", {"order_id": uuid.uuid4().hex})
    if late.status != "denied":
        errors.append(f"gate allowed {late.pk} after the engage")
    release_kill_switch(switch_id=engaged["switch"].pk, reason="next", actor=INCIDENT)


@pytest.mark.django_db(transaction=True)
def test_race__approvals_racing_an_engage__never_execute_after_it(support_agent, reviewer):
    errors = []
    for _ in range(15):
        _race_round(support_agent, reviewer, errors)
    assert errors == []
    assert not Action.objects.filter(status="executed").exists()


# --- circuit breakers ----------------------------------------------------------------------


def test_tripped__exactly_at_threshold():
    config = {"max_forbidden": 3, "max_actions": 100}
    assert tripped(config, {"forbidden": 2, "actions": 99}) == []
    trips = tripped(config, {"forbidden": 3, "actions": 99})
    assert [(t.metric, t.count, t.threshold) for t in trips] == [("forbidden", 3, 3)]


def test_circuit_breaker__forbidden_attempts__engage_agent_switch_at_threshold(db, support_agent):
    Agent.objects.filter(pk=support_agent.pk).update(
        circuit_breaker={"window_seconds": 300, "max_forbidden": 3}
    )
    support_agent.refresh_from_db()
    for _ in range(2):
        factories.submit(support_agent, "approve_refund", {"order_id": "x"})
    assert not KillSwitch.objects.exists()
    factories.submit(support_agent, "approve_refund", {"order_id": "x"})
    switch = KillSwitch.objects.get()
    assert (switch.scope, switch.target, switch.engaged_by) == (
        "agent",
        support_agent.slug,
        "system:circuit-breaker",
    )
    assert switch.trip["tripped"] == [{"metric": "forbidden", "count": 3, "threshold": 3}]
    event = AuditEvent.objects.get(verb="circuit_breaker.tripped")
    assert event.actor == "circuit-breaker" and event.data["counts"]["forbidden"] == 3
    assert (
        factories.submit(support_agent, "get_order_status", {"order_id": "1"}).reason_code
        == "kill_switch"
    )
    # It does not trip twice while engaged
    assert check_circuit_breaker(support_agent.pk) is None


def test_circuit_breaker__demote_response__lowers_tier_with_new_policy_version(
    db, autonomous_agent
):
    Agent.objects.filter(pk=autonomous_agent.pk).update(
        circuit_breaker={"max_denials": 2, "response": "demote", "demote_to": "read_only"}
    )
    autonomous_agent.refresh_from_db()
    factories.submit(autonomous_agent, "launch_rocket", {})
    assert factories.submit(autonomous_agent, "update_crm_note", {"id": 1}).status == "allowed"
    factories.submit(autonomous_agent, "launch_rocket", {})
    autonomous_agent.refresh_from_db()
    assert autonomous_agent.tier.name == "read_only"
    assert autonomous_agent.current_policy.number == 2
    denied = factories.submit(autonomous_agent, "update_crm_note", {"id": 2})
    assert (denied.status, denied.reason_code, denied.policy_version.number) == (
        "denied",
        "tier_denies",
        2,
    )


def _count_one(agent: Agent, path: str, reviewer) -> Action:
    """One outcome the breaker counts, through approvals' write path."""
    if path == "gate call":
        return factories.submit(agent, "approve_refund", {"order_id": "x"})  # forbidden
    if path == "rejection":
        pending = factories.submit(agent, "send_email")
        return actions.reject(action_id=pending.pk, user=reviewer, comment="no")
    allowed = factories.submit(agent, "get_order_status", {"order_id": "1"})
    return actions.report_execution(
        action_id=allowed.pk,
        agent=agent,
        outcome="failed",
        reported_hash=allowed.payload_hash,
        error="upstream 500",
    )


@pytest.mark.parametrize(
    ("path", "metric", "status"),
    [
        ("gate call", "forbidden", "denied"),
        ("rejection", "rejections", "rejected"),
        ("failed report", "failures", "failed"),
    ],
)
def test_circuit_breaker__counted_outcome__trips_through_the_hook_after_its_commit(
    transactional_db, support_agent, reviewer, monkeypatch, path, metric, status
):
    # Given a breaker that stops the agent at its first such outcome, and a spy on the hook
    # approvals calls (incidents connected the real breaker to it)
    Agent.objects.filter(pk=support_agent.pk).update(circuit_breaker={f"max_{metric}": 1})
    support_agent.refresh_from_db()
    breaker = hooks.after_counted_outcome._handler
    calls = []

    def spy(agent_id):
        calls.append((agent_id, connection.in_atomic_block))
        return breaker(agent_id)

    monkeypatch.setattr(hooks.after_counted_outcome, "_handler", spy)
    # When approvals records the outcome
    action = _count_one(support_agent, path, reviewer)
    # Then the breaker was asked once, outside the outcome's transaction (it had committed),
    # the outcome stands, and the breaker's own switch stops the agent
    assert calls[-1] == (support_agent.pk, False)
    assert Action.objects.get(pk=action.pk).status == status
    switch = KillSwitch.objects.get()
    assert (switch.scope, switch.target, switch.engaged_by) == (
        "agent",
        support_agent.slug,
        "system:circuit-breaker",
    )
    assert [t["metric"] for t in switch.trip["tripped"]] == [metric]
    assert factories.submit(support_agent, "send_email").reason_code == "kill_switch"


# --- drills --------------------------------------------------------------------------------


@pytest.mark.multiprocess
def test_drill__probe_in_another_process_is_stopped_and_real_work_untouched(
    live_api, asgi_server, support_agent, reviewer
):
    from incidents.drills import run_drill

    pending = factories.submit(support_agent, "send_email")
    approved = factories.submit(support_agent, "send_email")
    actions.approve(action_id=approved.pk, user=reviewer)
    drill = run_drill(agent=support_agent, actor=INCIDENT, gate_url=asgi_server.url)
    assert drill.succeeded, drill.detail
    assert drill.stop_ms is not None and drill.stop_ms >= 0
    assert drill.notify_ms is not None
    assert Action.objects.get(pk=pending.pk).status == "pending"
    assert Action.objects.get(pk=approved.pk).status == "approved"
    assert not KillSwitch.objects.filter(released_at__isnull=True).exists()
    assert (
        factories.submit(support_agent, "get_order_status", {"order_id": "1"}).status == "allowed"
    )
    assert AuditEvent.objects.filter(verb="drill.completed", target_id=str(drill.pk)).exists()
