"""Per-agent access through the asymmetric governance workflow: a grant is a change request
for a second governance owner, a removal applies at once; both are audited and make a new
policy version whose snapshot carries the access. Then the permission matrix, re-run while
rights are granted and removed at run time: pages, API and the queue's websocket follow
without a new login."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from guardian.shortcuts import assign_perm

from approvals.notifications import escalation_people
from audit import verbs
from audit.models import AuditEvent
from governance import actions as governance_actions
from governance.access import live_access
from governance.actions import GovernanceRefused
from governance.models import ChangeRequest
from rollout import permissions as agent_perms
from rollout.models import KillSwitch
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def owners(reference_data):
    return (
        factories.make_user("gwen", groups=("governance_owner",)),
        factories.make_user("gus", groups=("governance_owner",)),
    )


@pytest.fixture
def petra(reference_data):
    """A person with no role at all."""
    return factories.make_user("petra")


def grant(agent, author, approver, right: str, holder: str) -> ChangeRequest:
    """Grant through the workflow: proposed by ``author``, approved by ``approver``."""
    result = governance_actions.propose_change(
        agent=agent,
        user=author,
        changes={"access": {right: {holder: True}}},
        reason=f"{holder} needs {right}",
    )
    assert result.change_request is not None
    return governance_actions.approve_change_request(
        change_request_id=result.change_request.pk, user=approver
    )


def remove(agent, user, right: str, holder: str):
    return governance_actions.propose_change(
        agent=agent, user=user, changes={"access": {right: {holder: None}}}, reason="no longer"
    )


def verbs_after(event_id: int) -> list[str]:
    return list(
        AuditEvent.objects.filter(id__gt=event_id).order_by("id").values_list("verb", flat=True)
    )


def last_event_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


# --- the workflow ---------------------------------------------------------------------------


def test_grant__is_a_change_request__applied_by_a_second_owner(owners, petra, support_agent):
    gwen, gus = owners
    start = last_event_id()
    # When an owner grants petra review on the agent
    result = governance_actions.propose_change(
        agent=support_agent,
        user=gwen,
        changes={"access": {"grant": [{"right": "review", "user": "petra"}]}},
        reason="petra joins support on-call",
    )
    # Then nothing is granted yet: it is a loosening change request
    assert result.classification == "loosening" and not result.applied
    assert [c.text for c in result.changes] == ["grant review to user:petra"]
    assert not agent_perms.can_review(petra, support_agent)
    change_request = result.change_request
    # The author cannot approve it
    with pytest.raises(GovernanceRefused) as refused:
        governance_actions.approve_change_request(change_request_id=change_request.pk, user=gwen)
    assert refused.value.code == "own_change_request"
    # A second owner approves: petra may review, at once, in a new policy version
    version_before = support_agent.policy_versions.count()
    governance_actions.approve_change_request(change_request_id=change_request.pk, user=gus)
    petra = type(petra).objects.get(pk=petra.pk)  # a fresh request's user
    assert agent_perms.can_review(petra, support_agent)
    support_agent.refresh_from_db()
    assert support_agent.policy_versions.count() == version_before + 1
    snapshot = support_agent.current_policy.snapshot
    assert snapshot["access"]["review"] == {"user:petra": True}
    assert verbs_after(start) == [
        verbs.CHANGE_REQUEST_CREATED,
        verbs.CHANGE_REQUEST_APPROVAL_RECORDED,
        verbs.ACCESS_GRANTED,
        verbs.POLICY_VERSION_CREATED,
        verbs.CHANGE_REQUEST_APPLIED,
    ]
    granted = AuditEvent.objects.get(verb=verbs.ACCESS_GRANTED)
    assert (granted.actor, granted.agent_slug, granted.data) == (
        "gus",
        "support-assistant",
        {"right": "review", "holder": "user:petra", "change_request": change_request.pk},
    )
    created = AuditEvent.objects.get(verb=verbs.CHANGE_REQUEST_CREATED)
    assert created.data["after"]["access"] == [
        {"right": "review", "holder": "user:petra", "granted": True}
    ]


def test_removal__applies_at_once__audited__new_version(owners, petra, support_agent):
    gwen, gus = owners
    grant(support_agent, gwen, gus, "kill", "user:petra")
    start = last_event_id()
    # When one owner alone removes it
    result = remove(support_agent, gwen, "kill", "user:petra")
    # Then it is gone at once, in a new policy version, audited
    assert result.classification == "tightening" and result.applied
    assert not agent_perms.can_kill(type(petra).objects.get(pk=petra.pk), support_agent)
    assert result.policy_version.snapshot["access"]["kill"] == {}
    assert verbs_after(start) == [
        verbs.ACCESS_REMOVED,
        verbs.POLICY_VERSION_CREATED,
        verbs.GOVERNANCE_CHANGE_APPLIED,
    ]
    applied = AuditEvent.objects.get(verb=verbs.GOVERNANCE_CHANGE_APPLIED)
    assert applied.data["changes"] == ["remove kill from user:petra"]


def test_grant_and_removal_together__a_loosening(owners, petra, reviewer, support_agent):
    gwen, gus = owners
    grant(support_agent, gwen, gus, "review", "user:rita")
    result = governance_actions.propose_change(
        agent=support_agent,
        user=gwen,
        changes={"access": {"review": {"user:rita": None, "user:petra": True}}},
        reason="swap",
    )
    assert result.classification == "loosening" and result.change_request
    # nothing applied yet, not even the removal: the approver sees the whole change
    assert live_access(support_agent)["review"] == {"user:rita": True}


def test_group_grant__members_gain_the_right(owners, support_agent):
    from django.contrib.auth.models import Group

    gwen, gus = owners
    oncall = Group.objects.create(name="oncall")
    member = factories.make_user("mo")
    member.groups.add(oncall)
    grant(support_agent, gwen, gus, "critical_approve", "group:oncall")
    assert agent_perms.can_approve_critical(type(member).objects.get(pk=member.pk), support_agent)
    assert live_access(support_agent)["critical_approve"] == {"group:oncall": True}


def test_escalation__routes_escalations(owners, petra, support_agent, critical_reviewer):
    gwen, gus = owners
    # Without a route, escalations go to the critical approvers
    assert escalation_people(support_agent) == {critical_reviewer}
    grant(support_agent, gwen, gus, "escalation", "user:petra")
    assert escalation_people(support_agent) == {petra}
    remove(support_agent, gwen, "escalation", "user:petra")
    assert escalation_people(support_agent) == {critical_reviewer}


def test_invalid_access_changes__refused(owners, support_agent):
    gwen, _ = owners
    cases = [
        {"access": {"sudo": {"user:gwen": True}}},
        {"access": {"review": {"user:nobody": True}}},
        {"access": {"review": {"robot:x": True}}},
        {"access": {"review": {"user:gwen": False}}},
        {"access": {"grant": [{"right": "review"}]}},
    ]
    for changes in cases:
        with pytest.raises(GovernanceRefused) as refused:
            governance_actions.propose_change(
                agent=support_agent, user=gwen, changes=changes, reason="x"
            )
        assert refused.value.code == "invalid", changes


def test_not_a_governor__cannot_change_access(petra, support_agent, reviewer):
    with pytest.raises(GovernanceRefused) as refused:
        remove(support_agent, reviewer, "review", "user:rita")
    assert refused.value.status == 403


def test_stale__a_removal_under_an_open_grant_of_the_same_holder(owners, petra, support_agent):
    gwen, gus = owners
    grant(support_agent, gwen, gus, "kill", "user:petra")
    opened = governance_actions.propose_change(
        agent=support_agent,
        user=gwen,
        changes={"access": {"review": {"user:petra": True}}},
        reason="more",
    ).change_request
    # An unrelated removal does not make the open grant stale
    remove(support_agent, gus, "kill", "user:petra")
    assert not governance_actions.is_stale(opened)


# --- pages ----------------------------------------------------------------------------------


def test_agent_page__access_section_preview_then_confirm(owners, petra, support_agent):
    gwen, gus = owners
    client = Client()
    client.force_login(gwen)
    page = client.get(f"/agents/{support_agent.slug}/access").content.decode()
    assert 'data-testid="access-table"' in page and 'id="access-form"' in page
    # Preview: nothing saved, the effect is shown
    data = {"operation": "grant", "right": "review", "kind": "user", "name": "petra"}
    preview = client.post(f"/agents/{support_agent.slug}/access", data)
    html = preview.content.decode()
    assert preview.status_code == 200
    assert "change request" in html and "grant review to user:petra" in html
    assert '<th scope="row">petra' in html
    assert not ChangeRequest.objects.exists()
    # Confirm: a change request
    confirmed = client.post(
        f"/agents/{support_agent.slug}/access", {**data, "reason": "on-call", "confirm": "1"}
    )
    change_request = ChangeRequest.objects.get()
    assert confirmed["Location"] == f"/changes/{change_request.pk}"
    detail = client.get(f"/changes/{change_request.pk}").content.decode()
    assert "grant review to user:petra" in detail
    # The second owner approves on the page; the agent page lists petra
    other = Client()
    other.force_login(gus)
    other.post(f"/changes/{change_request.pk}/approve", {"revision": 1, "comment": ""})
    page = other.get(f"/agents/{support_agent.slug}/access").content.decode()
    assert 'data-holder="user:petra"' in page
    # Removal from the table: preview says at once; confirm applies it
    removal = {"operation": "remove", "right": "review", "kind": "user", "name": "petra"}
    preview = other.post(f"/agents/{support_agent.slug}/access", removal).content.decode()
    assert "at once" in preview
    other.post(
        f"/agents/{support_agent.slug}/access", {**removal, "reason": "left", "confirm": "1"}
    )
    assert live_access(support_agent)["review"] == {}


def test_agent_page__preview_of_removal__says_who_keeps_it_through_a_role(
    owners, reviewer, support_agent
):
    gwen, gus = owners
    grant(support_agent, gwen, gus, "review", "user:rita")
    client = Client()
    client.force_login(gwen)
    preview = client.post(
        f"/agents/{support_agent.slug}/access",
        {"operation": "remove", "right": "review", "kind": "user", "name": "rita"},
    ).content.decode()
    assert "held through a role or another grant" in preview


def test_agent_page__not_a_governor__no_forms_and_403(reviewer, support_agent):
    client = Client()
    client.force_login(reviewer)
    page = client.get(f"/agents/{support_agent.slug}/access").content.decode()
    assert 'data-testid="access-table"' in page and 'id="access-form"' not in page
    response = client.post(
        f"/agents/{support_agent.slug}/access",
        {"operation": "remove", "right": "review", "kind": "user", "name": "rita", "confirm": "1"},
    )
    assert response.status_code == 403


def test_api__access_change_through_the_governance_api(owners, petra, support_agent):
    gwen, _ = owners
    client = Client()
    client.force_login(gwen)
    response = client.post(
        f"/api/v1/agents/{support_agent.slug}/changes",
        {
            "changes": {"access": {"grant": [{"right": "audit", "user": "petra"}]}},
            "reason": "audits",
        },
        content_type="application/json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["classification"] == "loosening" and body["change_request"]["id"]


def test_version_diff__shows_access_changes(owners, petra, support_agent):
    gwen, gus = owners
    grant(support_agent, gwen, gus, "govern", "user:petra")
    support_agent.refresh_from_db()
    number = support_agent.current_policy.number
    client = Client()
    client.force_login(gwen)
    page = client.get(f"/agents/{support_agent.slug}/versions/{number}").content.decode()
    assert "govern → user:petra" in page


def test_admin__no_object_permission_screen_around_the_workflow(reference_data, support_agent):
    from django.contrib import admin
    from guardian.admin import GuardedModelAdmin

    from rollout.models import Agent

    assert not isinstance(admin.site._registry[Agent], GuardedModelAdmin)
    superuser = factories.make_user("ada", superuser=True)
    client = Client()
    client.force_login(superuser)
    response = client.get(f"/admin/rollout/agent/{support_agent.pk}/permissions/", follow=True)
    assert b"Object permissions" not in response.content


# --- the permission matrix at run time -----------------------------------------------------


def _can_decide(client, agent) -> bool:
    action = factories.submit(agent, "send_email")
    listed = f'id="card-{action.pk}"' in client.get("/").content.decode()
    response = client.post(
        f"/api/v1/actions/{action.pk}/decisions",
        {"verdict": "reject", "comment": "matrix"},
        content_type="application/json",
    )
    assert listed == (response.status_code == 201), (listed, response.status_code)
    return response.status_code == 201


def _can_kill(client, agent) -> bool:
    response = client.post(
        "/api/v1/kill-switches",
        {"scope": "agent", "target": agent.slug, "reason": "matrix"},
        content_type="application/json",
    )
    KillSwitch.objects.all().delete()
    return response.status_code == 201


def _can_govern(client, agent) -> bool:
    agent.refresh_from_db()
    response = client.post(
        f"/api/v1/agents/{agent.slug}/changes",
        {"changes": {"rate_limit_per_minute": agent.rate_limit_per_minute - 1}, "reason": "m"},
        content_type="application/json",
    )
    return response.status_code == 201


def _can_audit(client, agent) -> bool:
    response = client.get(f"/api/v1/audit/events?agent={agent.slug}")
    # Every agent has events (its registration): reading it means seeing them.
    return response.status_code == 200 and bool(response.json()["results"])


MATRIX = [
    ("review", _can_decide),
    ("kill", _can_kill),
    ("govern", _can_govern),
    ("audit", _can_audit),
]


@pytest.mark.parametrize(("right", "can"), MATRIX, ids=[row[0] for row in MATRIX])
def test_matrix__granted_then_removed__same_session_follows(
    right, can, owners, petra, support_agent, other_agent
):
    gwen, gus = owners
    # Given petra, logged in once, with no right at all
    client = Client()
    client.force_login(petra)
    assert not can(client, support_agent)
    # When the right on this agent is granted through the workflow
    grant(support_agent, gwen, gus, right, "user:petra")
    # Then the same session may use it on this agent, and only this one
    assert can(client, support_agent)
    assert not can(client, other_agent)
    # When it is removed, the same session loses it at once
    remove(support_agent, gus, right, "user:petra")
    assert not can(client, support_agent)


def test_matrix__critical_approval_follows(owners, reviewer, reviewer2, support_agent):
    gwen, gus = owners
    from approvals import actions

    action = factories.submit(support_agent, "wipe_database", {"scope": "x"})
    actions.approve(action_id=action.pk, user=reviewer2)
    client = Client()
    client.force_login(reviewer)

    def second_approval(action_id: int) -> int:
        return client.post(
            f"/api/v1/actions/{action_id}/decisions",
            {"verdict": "approve"},
            content_type="application/json",
        ).status_code

    # Without the critical right, rita's approval does not decide a critical action
    second_approval(action.pk)
    action.refresh_from_db()
    assert action.status == "pending"
    grant(support_agent, gwen, gus, "critical_approve", "user:rita")
    fresh = factories.submit(support_agent, "wipe_database", {"scope": "y"})
    actions.approve(action_id=fresh.pk, user=reviewer2)
    assert second_approval(fresh.pk) == 201
    fresh.refresh_from_db()
    assert fresh.status == "approved"


# --- the queue's websocket follows -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_test_sockets")
async def test_websocket__groups_follow_grant_and_removal(support_agent, settings):
    from tests.test_websocket_queue import TIMEOUT, open_socket, receive_until

    settings.LIVE_SOCKET_RECHECK_SECONDS = 0.2
    make = database_sync_to_async(factories.make_user)
    gwen = await make("gwen", groups=("governance_owner",))
    gus = await make("gus", groups=("governance_owner",))
    petra = await make("petra", perms=())
    # Petra holds some right (so she sees the agent) but not review: her socket hears nothing
    await database_sync_to_async(assign_perm)("rollout.audit_agent", petra, support_agent)
    communicator, connected, _ = await open_socket(petra)
    assert connected
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "hello", "agents": 0}
    # When review is granted through the workflow, the socket joins without a new login
    await database_sync_to_async(grant)(support_agent, gwen, gus, "review", "user:petra")
    joined = await receive_until(communicator, lambda m: m.get("type") == "access.changed")
    assert joined["agents"] == 1
    submitted = await database_sync_to_async(factories.submit)(support_agent, "send_email")
    heard = await receive_until(communicator, lambda m: m.get("type") == "action.changed")
    assert heard["action_id"] == submitted.pk
    # When it is removed, the socket leaves and hears nothing more
    await database_sync_to_async(remove)(support_agent, gus, "review", "user:petra")
    left = await receive_until(communicator, lambda m: m.get("type") == "access.changed")
    assert left["agents"] == 0
    await database_sync_to_async(factories.submit)(support_agent, "send_email")
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()
