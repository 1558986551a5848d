"""Every live socket (each path of ``*/routing.py``) lives no longer than the session and the
rights it was opened with (``rollout.live``), through the real ASGI stack of
``config.asgi``: logout of that session, deactivation and a password change close it with
4401 and nothing more arrives; other sessions of the person keep theirs; a lost right stops
that agent's events; an expired or idle session is caught by the periodic re-check."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone
from guardian.shortcuts import remove_perm

from accounts.login_protection import LAST_ACTIVITY_KEY
from audit.chain import Actor
from config.asgi import application
from governance import actions as governance_actions
from incidents.actions import engage_kill_switch
from tests import factories, sockets

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 5
QUIET = 0.5  # how long "nothing more arrives" is watched
CLOSED_UNAUTHENTICATED = {"type": "websocket.close", "code": 4401}


@pytest.fixture(autouse=True)
def _sockets_closed(close_test_sockets):
    """Every websocket a test here opens is disconnected, even when the test fails."""


@pytest.fixture(autouse=True)
def _no_periodic_recheck(settings):
    """Unless a test says otherwise, only hints can close a socket here."""
    settings.LIVE_SOCKET_RECHECK_SECONDS = 3600


def _submit(agent) -> None:
    factories.submit(agent, "send_email")


def _propose(agent) -> None:
    author = factories.make_user(groups=("governance_owner",))
    governance_actions.propose_change(
        agent=agent, user=author, changes={"tier": "autonomous"}, reason="x"
    )


def _kill(agent) -> None:
    engage_kill_switch(scope="agent", target=agent.slug, reason="x", actor=Actor.system("t"))


# Every routed socket: its path, the right it forwards events by, and how to make an event.
SOCKETS = {
    "/ws/queue/": ("rollout.review_agent", _submit, "action.changed"),
    "/ws/governance/": ("rollout.govern_agent", _propose, "governance.changed"),
    "/ws/incidents/": ("rollout.kill_agent", _kill, "switch.changed"),
}


@pytest.fixture(params=sorted(SOCKETS))
def path(request) -> str:
    return request.param


@pytest.fixture
def person(path, support_agent):
    right = SOCKETS[path][0]
    return factories.make_user("sam", agent_perms={right: support_agent})


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def open_socket(path: str, client: Client):
    key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    headers = [
        (b"origin", b"http://127.0.0.1"),
        (b"host", b"127.0.0.1"),
        (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={key}".encode()),
    ]
    communicator, connected, _ = await sockets.connect(application, path, headers)
    assert connected
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "hello", "agents": 1}
    return communicator


def event_maker(path: str, agent) -> Callable[[], Awaitable[None]]:
    return lambda: database_sync_to_async(SOCKETS[path][1])(agent)


async def hears_event(communicator, path: str) -> bool:
    message = await communicator.receive_json_from(timeout=TIMEOUT)
    return message["type"] == SOCKETS[path][2] and message["agent"] == "support-assistant"


async def test_socket__logout_of_its_session__closed_4401__other_session_keeps_hearing(
    path, person, support_agent
):
    # Given two sessions of one person (a laptop and a phone), each with the page open
    laptop = await database_sync_to_async(logged_in)(person)
    phone = await database_sync_to_async(logged_in)(person)
    laptop_socket = await open_socket(path, laptop)
    phone_socket = await open_socket(path, phone)
    make_event = event_maker(path, support_agent)
    # When she logs out on the laptop (no periodic re-check: the logout's hint does it)
    await database_sync_to_async(laptop.logout)()
    # Then the laptop's socket is closed as unauthenticated and hears nothing more
    assert await laptop_socket.receive_output(timeout=TIMEOUT) == CLOSED_UNAUTHENTICATED
    await make_event()
    assert await hears_event(phone_socket, path)  # the phone's session is untouched
    assert await laptop_socket.receive_nothing(timeout=QUIET)


async def test_socket__account_deactivated__closed_4401_at_once(path, person, support_agent):
    communicator = await open_socket(path, await database_sync_to_async(logged_in)(person))

    def deactivate() -> None:
        person.is_active = False
        person.save(update_fields=["is_active"])

    await database_sync_to_async(deactivate)()
    assert await communicator.receive_output(timeout=TIMEOUT) == CLOSED_UNAUTHENTICATED
    await event_maker(path, support_agent)()
    assert await communicator.receive_nothing(timeout=QUIET)


async def test_socket__password_changed_elsewhere__closed_4401(path, person):
    # Django ends every session of a person whose password changes; so do their sockets
    communicator = await open_socket(path, await database_sync_to_async(logged_in)(person))

    def change_password() -> None:
        person.set_password("a-new-password-for-tests")
        person.save()

    await database_sync_to_async(change_password)()
    assert await communicator.receive_output(timeout=TIMEOUT) == CLOSED_UNAUTHENTICATED


async def test_socket__right_removed__told_and_stops_hearing_that_agent(
    path, person, support_agent
):
    communicator = await open_socket(path, await database_sync_to_async(logged_in)(person))
    await database_sync_to_async(remove_perm)(SOCKETS[path][0], person, support_agent)
    # The socket stays open (the page needs only a login) but is told to re-read ...
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {
        "type": "access.changed",
        "agents": 0,
    }
    # ... and the agent's events no longer reach it
    await event_maker(path, support_agent)()
    assert await communicator.receive_nothing(timeout=QUIET)


async def test_socket__session_expired_without_any_hint__closed_by_periodic_recheck(
    path, person, settings
):
    settings.LIVE_SOCKET_RECHECK_SECONDS = 0.2
    communicator = await open_socket(path, await database_sync_to_async(logged_in)(person))
    # When the session's maximum age passes (nothing is sent to the socket)
    await database_sync_to_async(
        lambda: Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    )()
    # Then the next periodic re-check closes it
    assert await communicator.receive_output(timeout=TIMEOUT) == CLOSED_UNAUTHENTICATED


async def test_socket__session_idle_past_timeout__closed_by_periodic_recheck(
    path, person, settings
):
    settings.LIVE_SOCKET_RECHECK_SECONDS = 0.2
    client = await database_sync_to_async(logged_in)(person)
    communicator = await open_socket(path, client)
    # Live re-reads do not count as activity; the last click was longer ago than the timeout

    def last_click_long_ago() -> None:
        session = SessionStore(client.cookies[django_settings.SESSION_COOKIE_NAME].value)
        session[LAST_ACTIVITY_KEY] = time.time() - settings.SESSION_IDLE_TIMEOUT_SECONDS - 5
        session.save()

    await database_sync_to_async(last_click_long_ago)()
    assert await communicator.receive_output(timeout=TIMEOUT) == CLOSED_UNAUTHENTICATED


async def test_socket__session_still_valid__periodic_recheck_keeps_it_open(
    path, person, support_agent, settings
):
    settings.LIVE_SOCKET_RECHECK_SECONDS = 0.1
    communicator = await open_socket(path, await database_sync_to_async(logged_in)(person))
    assert await communicator.receive_nothing(timeout=QUIET)  # several re-checks, no message
    await event_maker(path, support_agent)()
    assert await hears_event(communicator, path)
