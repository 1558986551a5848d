"""The incidents page: engage and release from the browser's forms, with confirmation and
permissions, history, breaker trips and drills."""

import pytest
from guardian.shortcuts import assign_perm

from approvals.models import Action
from rollout.models import KillSwitch
from tests import factories


@pytest.fixture
def scoped_incident_owner(support_agent):
    user = factories.make_user("scoped-ivan")
    assign_perm("rollout.kill_agent", user, support_agent)
    return user


def test_page__incident_owner_sees_controls_for_every_agent(
    client, incident_owner, support_agent, other_agent
):
    client.force_login(incident_owner)
    page = client.get("/incidents").content.decode()
    assert "Stop every agent" in page
    assert f"Stop {support_agent.slug}" in page and f"Stop {other_agent.slug}" in page


def test_page__scoped_owner_sees_only_their_agent_and_no_global(
    client, scoped_incident_owner, support_agent, other_agent
):
    client.force_login(scoped_incident_owner)
    page = client.get("/incidents").content.decode()
    assert f"Stop {support_agent.slug}" in page
    assert f"Stop {other_agent.slug}" not in page
    assert "Stop every agent" not in page


@pytest.mark.parametrize("who", ["reviewer", "governance"])
def test_page__people_without_kill_or_audit_rights__403(client, reference_data, who):
    user = factories.make_user(
        who, groups=(("reviewer",) if who == "reviewer" else ("governance_owner",))
    )
    client.force_login(user)
    assert client.get("/incidents").status_code == 403


def test_page__auditor_reads_without_controls(client, auditor, support_agent):
    client.force_login(auditor)
    page = client.get("/incidents").content.decode()
    assert "You may read incidents but not stop agents" in page
    response = client.post(
        "/incidents/engage",
        {
            "scope": "agent",
            "target": support_agent.slug,
            "reason": "x",
            "confirm": support_agent.slug,
        },
    )
    assert response.status_code == 403
    assert not KillSwitch.objects.exists()


def test_page__anonymous__redirected_to_login(client, reference_data):
    response = client.get("/incidents")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_engage_agent__needs_typed_name__then_stops_and_cancels(
    client, incident_owner, support_agent
):
    pending = factories.submit(support_agent, "send_email")
    client.force_login(incident_owner)
    wrong = client.post(
        "/incidents/engage",
        {"scope": "agent", "target": support_agent.slug, "reason": "loop", "confirm": "support"},
        follow=True,
    )
    assert "to confirm; nothing was engaged" in wrong.content.decode()
    assert not KillSwitch.objects.exists()
    done = client.post(
        "/incidents/engage",
        {
            "scope": "agent",
            "target": support_agent.slug,
            "reason": "loop",
            "confirm": support_agent.slug,
        },
        follow=True,
    )
    assert "1 pending cancelled" in done.content.decode()
    assert Action.objects.get(pk=pending.pk).status == "cancelled"
    assert KillSwitch.objects.get().engaged_by == f"user:{incident_owner.username}"


def test_engage_global__typed_global_and_release_with_reason(client, incident_owner, support_agent):
    client.force_login(incident_owner)
    client.post(
        "/incidents/engage", {"scope": "global", "reason": "incident 7", "confirm": "global"}
    )
    switch = KillSwitch.objects.get()
    assert (
        factories.submit(support_agent, "get_order_status", {"order_id": "1"}).reason_code
        == "kill_switch"
    )
    page = client.get("/incidents").content.decode()
    assert "incident 7" in page
    empty = client.post(f"/incidents/{switch.pk}/release", {"reason": ""}, follow=True)
    assert "needs a reason" in empty.content.decode()
    client.post(f"/incidents/{switch.pk}/release", {"reason": "resolved"})
    switch.refresh_from_db()
    assert not switch.engaged and switch.release_reason == "resolved"
    assert "resolved" in client.get("/incidents").content.decode()  # history


def test_engage_tool__from_the_page(client, incident_owner, support_agent):
    client.force_login(incident_owner)
    client.post(
        "/incidents/engage", {"scope": "tool", "target": "send_email", "reason": "mail storm"}
    )
    assert factories.submit(support_agent, "send_email").reason_code == "kill_switch"


def test_breaker_trip__shown_with_its_cause_before_release(client, incident_owner, support_agent):
    from rollout.models import Agent

    Agent.objects.filter(pk=support_agent.pk).update(circuit_breaker={"max_forbidden": 2})
    support_agent.refresh_from_db()
    for _ in range(2):
        factories.submit(support_agent, "approve_refund", {})
    client.force_login(incident_owner)
    page = client.get("/incidents").content.decode()
    assert "Tripped by the circuit breaker" in page and "forbidden 2 ≥ 2" in page


def test_drill__queued_from_the_page(client, incident_owner, support_agent, monkeypatch):
    from incidents import tasks

    queued = []
    monkeypatch.setattr(tasks.run_drill_task, "delay", lambda *args: queued.append(args))
    client.force_login(incident_owner)
    client.post(f"/incidents/drills/{support_agent.slug}")
    assert queued == [(support_agent.pk, incident_owner.username)]


def test_release__with_step_up_on__needs_a_fresh_code(
    client, incident_owner, support_agent, settings
):
    from tests.access_support import give_second_factor, next_code

    settings.STEP_UP_ENABLED = True
    give_second_factor(incident_owner)
    client.force_login(incident_owner)
    client.post("/incidents/engage", {"scope": "global", "reason": "incident", "confirm": "global"})
    switch = KillSwitch.objects.get()
    assert 'name="step_up_code"' in client.get("/incidents").content.decode()
    refused = client.post(f"/incidents/{switch.pk}/release", {"reason": "fixed"}, follow=True)
    assert "code" in refused.content.decode().lower()
    switch.refresh_from_db()
    assert switch.engaged
    client.post(
        f"/incidents/{switch.pk}/release",
        {"reason": "fixed", "step_up_code": next_code(incident_owner)},
    )
    switch.refresh_from_db()
    assert not switch.engaged
