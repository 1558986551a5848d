"""The live queue's websocket, through the real ASGI stack of ``config.asgi`` (origin check,
session auth, routing) and the Redis channel layer: who hears what, and who is turned away."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.test import Client
from guardian.shortcuts import remove_perm

from approvals import actions
from approvals.models import Action
from audit.chain import Actor
from config.asgi import application
from incidents.actions import engage_kill_switch
from tests import factories, sockets

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"http://127.0.0.1"
TIMEOUT = 5


@pytest.fixture(autouse=True)
def _sockets_closed(close_test_sockets):
    """Every websocket a test here opens is disconnected, even when the test fails."""


@pytest.fixture
def reviewer_of_a(support_agent):
    return factories.make_user("alice", agent_perms={"rollout.review_agent": support_agent})


def session_key_for(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


async def open_socket(
    user=None, origin: bytes = ORIGIN
) -> tuple[WebsocketCommunicator, bool, object]:
    headers = [(b"origin", origin), (b"host", b"127.0.0.1")]
    if user is not None:
        key = await database_sync_to_async(session_key_for)(user)
        headers.append((b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={key}".encode()))
    return await sockets.connect(application, "/ws/queue/", headers)


async def receive_until(communicator: WebsocketCommunicator, predicate) -> dict:
    """The first message that matches; others (e.g. events of earlier steps) are skipped."""
    while True:
        message = await communicator.receive_json_from(timeout=TIMEOUT)
        if predicate(message):
            return message


submit = database_sync_to_async(factories.submit)


async def test_queue_socket__reviewer__hears_own_agents_only(
    reviewer_of_a, support_agent, other_agent
):
    # Given a reviewer of agent A only, connected
    communicator, connected, _ = await open_socket(reviewer_of_a)
    assert connected
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "hello", "agents": 1}
    # When both agents submit actions that wait for a human
    foreign = await submit(other_agent, "send_email")
    own = await submit(support_agent, "send_email")
    # Then only agent A's event arrives
    message = await communicator.receive_json_from(timeout=TIMEOUT)
    assert message == {
        "type": "action.changed",
        "action_id": own.pk,
        "agent": "support-assistant",
        "status": "pending",
        "change": "submitted",
    }
    assert foreign.pk != own.pk
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_queue_socket__global_reviewer__hears_decisions_and_kill_switch(
    reviewer, reviewer2, support_agent
):
    communicator, connected, _ = await open_socket(reviewer)
    assert connected
    first = await submit(support_agent, "send_email")
    second = await submit(support_agent, "send_email")
    await database_sync_to_async(actions.approve)(action_id=first.pk, user=reviewer2)
    approved = await receive_until(communicator, lambda m: m.get("change") == "approved")
    assert approved["action_id"] == first.pk
    await database_sync_to_async(engage_kill_switch)(
        scope="agent", target="support-assistant", reason="drill", actor=Actor.system("t")
    )
    # The sweep tells dashboards once, with the switch event; they re-read their queue
    switched = await receive_until(communicator, lambda m: m["type"] == "switch.changed")
    assert (switched["scope"], switched["target"]) == ("agent", "support-assistant")
    assert await database_sync_to_async(lambda: Action.objects.get(pk=second.pk).status)() == (
        "cancelled"
    )
    await communicator.disconnect()


async def test_queue_socket__anonymous__closed():
    communicator, connected, code = await open_socket(None)
    assert not connected
    assert code == 4401
    await communicator.disconnect()  # as the server would: the consumer ends cleanly


async def test_queue_socket__foreign_origin__refused(reviewer):
    communicator, connected, _ = await open_socket(reviewer, origin=b"https://evil.example")
    assert not connected
    await communicator.disconnect()


async def test_queue_socket__session_ended__disconnected_on_recheck(reviewer, settings):
    settings.LIVE_SOCKET_RECHECK_SECONDS = 0.2
    communicator, connected, _ = await open_socket(reviewer)
    assert connected
    await communicator.receive_json_from(timeout=TIMEOUT)  # hello
    # When the person logs out elsewhere (their session is deleted)
    await database_sync_to_async(lambda: Session.objects.all().delete())()
    # Then the socket is closed as unauthenticated
    output = await communicator.receive_output(timeout=TIMEOUT)
    assert output == {"type": "websocket.close", "code": 4401}
    await communicator.disconnect()


async def test_queue_socket__review_right_revoked__stops_hearing(
    reviewer_of_a, support_agent, settings
):
    settings.LIVE_SOCKET_RECHECK_SECONDS = 0.2
    communicator, connected, _ = await open_socket(reviewer_of_a)
    assert connected
    await communicator.receive_json_from(timeout=TIMEOUT)  # hello
    await database_sync_to_async(remove_perm)("rollout.review_agent", reviewer_of_a, support_agent)
    changed = await communicator.receive_json_from(timeout=TIMEOUT)
    assert changed == {"type": "access.changed", "agents": 0}
    await submit(support_agent, "send_email")
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_queue_socket__review_right_revoked__told_at_once_without_periodic_recheck(
    reviewer_of_a, support_agent, settings
):
    settings.LIVE_SOCKET_RECHECK_SECONDS = 3600  # no periodic re-check
    communicator, connected, _ = await open_socket(reviewer_of_a)
    assert connected
    await communicator.receive_json_from(timeout=TIMEOUT)  # hello
    await submit(support_agent, "send_email")
    assert (await communicator.receive_json_from(timeout=TIMEOUT))["agent"] == support_agent.slug
    # When the right is removed (guardian, as the admin or a shell would)
    await database_sync_to_async(remove_perm)("rollout.review_agent", reviewer_of_a, support_agent)
    # Then the socket is told at once, and the agent's next event does not reach it
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {
        "type": "access.changed",
        "agents": 0,
    }
    await submit(support_agent, "send_email")
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_queue_socket__joined_a_reviewer_group__hears_at_once(support_agent, settings):
    settings.LIVE_SOCKET_RECHECK_SECONDS = 3600  # no periodic re-check
    newcomer = await database_sync_to_async(factories.make_user)("nina", groups=())
    communicator, connected, _ = await open_socket(newcomer)
    assert connected
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "hello", "agents": 0}
    # When an administrator adds her to the reviewer group
    await database_sync_to_async(lambda: newcomer.groups.add(Group.objects.get(name="reviewer")))()
    # Then her open socket follows without a new login
    changed = await communicator.receive_json_from(timeout=TIMEOUT)
    assert changed["type"] == "access.changed" and changed["agents"] >= 1
    submitted = await submit(support_agent, "send_email")
    heard = await receive_until(communicator, lambda m: m.get("type") == "action.changed")
    assert heard["action_id"] == submitted.pk
    await communicator.disconnect()


async def test_queue_socket__deactivated__disconnected_at_once(reviewer, settings):
    settings.LIVE_SOCKET_RECHECK_SECONDS = 3600  # no periodic re-check
    communicator, connected, _ = await open_socket(reviewer)
    assert connected
    await communicator.receive_json_from(timeout=TIMEOUT)  # hello

    def deactivate() -> None:
        reviewer.is_active = False
        reviewer.save(update_fields=["is_active"])

    await database_sync_to_async(deactivate)()
    output = await communicator.receive_output(timeout=TIMEOUT)
    assert output == {"type": "websocket.close", "code": 4401}
