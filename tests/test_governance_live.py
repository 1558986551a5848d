"""Governance events over the websocket (Redis channel layer, session auth): owners and
auditors hear change requests and new versions of the agents they may read, nobody else;
and the admin's read-only views with per-agent permissions render."""

from __future__ import annotations

import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from django.conf import settings
from django.test import Client
from guardian.shortcuts import remove_perm

from governance import actions as governance_actions
from governance.routing import websocket_urlpatterns
from rollout.models import Tier
from tests import factories, sockets

TIMEOUT = 5


# The consumer behind the same session auth as config/asgi.py.
application = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


def session_key_for(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def open_socket(user=None):
    headers = [(b"host", b"127.0.0.1")]
    if user is not None:
        key = await database_sync_to_async(session_key_for)(user)
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={key}".encode()))
    return await sockets.connect(application, "/ws/governance/", headers)


propose = database_sync_to_async(governance_actions.propose_change)
approve = database_sync_to_async(governance_actions.approve_change_request)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_test_sockets")
async def test_governance_socket__owner_of_a_hears_a_only(support_agent, other_agent):
    make_user = database_sync_to_async(factories.make_user)
    owner_of_a = await make_user("alma", agent_perms={"rollout.govern_agent": support_agent})
    author = await make_user("author", groups=("governance_owner",))
    reviewer = await make_user("rex", groups=("reviewer",))

    communicator, connected, _ = await open_socket(owner_of_a)
    assert connected
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "hello", "agents": 1}
    bystander, connected, _ = await open_socket(reviewer)
    assert connected
    assert await bystander.receive_json_from(timeout=TIMEOUT) == {"type": "hello", "agents": 0}

    # When change requests are opened on B, then on A
    await propose(agent=other_agent, user=author, changes={"tier": "autonomous"}, reason="b")
    result = await propose(
        agent=support_agent, user=author, changes={"tier": "autonomous"}, reason="a"
    )
    cr = result.change_request
    # Then the owner of A hears only A's
    message = await communicator.receive_json_from(timeout=TIMEOUT)
    assert message == {
        "type": "governance.changed",
        "kind": "change_request",
        "id": cr.pk,
        "agent": "support-assistant",
        "status": "open",
        "revision": 1,
        "change": "created",
    }
    # and, once approved, that it applied and which version is now current
    await approve(change_request_id=cr.pk, user=owner_of_a)
    applied = await communicator.receive_json_from(timeout=TIMEOUT)
    version = await communicator.receive_json_from(timeout=TIMEOUT)
    assert (applied["kind"], applied["change"], applied["status"]) == (
        "change_request",
        "applied",
        "applied",
    )
    assert (version["kind"], version["number"], version["change"]) == (
        "policy_version",
        2,
        "change_request_applied",
    )
    assert await bystander.receive_nothing(timeout=0.3)
    await communicator.disconnect()
    await bystander.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_test_sockets")
async def test_governance_socket__right_removed__stops_hearing_at_once(support_agent):
    make_user = database_sync_to_async(factories.make_user)
    owner_of_a = await make_user("alma", agent_perms={"rollout.govern_agent": support_agent})
    author = await make_user("author", groups=("governance_owner",))
    communicator, connected, _ = await open_socket(owner_of_a)
    assert connected
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "hello", "agents": 1}
    # When her govern right on A is removed (no reconnect, no periodic re-check)
    await database_sync_to_async(remove_perm)("rollout.govern_agent", owner_of_a, support_agent)
    # Then her socket is told at once (the page re-reads), and the next change request on A
    # does not reach it
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {
        "type": "access.changed",
        "agents": 0,
    }
    await propose(agent=support_agent, user=author, changes={"tier": "autonomous"}, reason="a")
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_test_sockets")
async def test_governance_socket__anonymous__closed():
    _, connected, code = await open_socket()
    assert not connected and code == 4401


def test_admin__read_only_agent_without_object_permissions(support_agent):
    root = factories.make_user("root", superuser=True)
    client = Client()
    client.force_login(root)
    assert client.get("/admin/rollout/agent/").status_code == 200
    assert client.get(f"/admin/rollout/agent/{support_agent.pk}/change/").status_code == 200
    # Per-agent access is governed (governance.access): no admin screen around the workflow.
    permissions = client.get(f"/admin/rollout/agent/{support_agent.pk}/permissions/", follow=True)
    assert b"Object permissions" not in permissions.content
    assert client.get("/admin/rollout/agent/add/").status_code == 403
    assert client.get("/admin/rollout/policyversion/").status_code == 200
    tier = Tier.objects.get(name="supervised")
    tier_page = client.get(f"/admin/rollout/tier/{tier.pk}/change/").content.decode()
    assert 'name="exit_criteria"' in tier_page and 'name="write_outcome"' not in tier_page
