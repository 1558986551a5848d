"""The one base of every live socket (queue, governance): who may hold one open, and for how
long.

A socket belongs to one browser session. It is accepted only while that session is valid
(it exists and has not expired, its person is active, the password it was opened with is
unchanged, it has not sat idle past ``SESSION_IDLE_TIMEOUT_SECONDS``) and it is closed with
``CLOSE_UNAUTHENTICATED`` (4401) as soon as that stops being true: logout of that session
(other sessions of the person keep theirs), deactivation, a password change, idle or
maximum age. Per-agent rights decide which events are forwarded: losing the right to an
agent stops its events and tells the page (``access.changed``, which makes it re-read over
HTTP); the socket itself stays open, since the pages behind it need nothing but a login (a
person with no agent sees an empty queue, and hears at once when granted one).

What the socket may hear is read at connect, again whenever an access hint arrives
(``accounts.access_hints``: sent after commit on any change of rights, account or session)
and every ``LIVE_SOCKET_RECHECK_SECONDS`` as a backstop for a lost hint or a session that
merely expired. Between reads, events are filtered against the set in memory (no query per
event). The base reads only: sessions are loaded, never saved, flushed or cycled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.db.models import QuerySet
from django.utils.crypto import constant_time_compare

from accounts.access_hints import EVERYONE_GROUP, person_group
from accounts.login_protection import LAST_ACTIVITY_KEY
from core.people import is_active_person

logger = logging.getLogger(__name__)

# "Not logged in (any more)": the page re-reads over HTTP, which sends a person whose
# session ended to the login page.
CLOSE_UNAUTHENTICATED = 4401


def session_person(session_key: str | None, user_id: Any) -> Any | None:
    """The active person whose valid session ``session_key`` is, read afresh (no cache of
    the connection's session or user); None when it is not ``user_id``'s valid session.
    The checks are Django's own for a request (``django.contrib.auth.get_user``) without its
    writes, plus the idle timeout of ``accounts.login_protection``."""
    if not session_key or user_id is None:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    if str(store.get(SESSION_KEY)) != str(user_id):  # missing, expired or someone else's
        return None
    backend_path = store.get(BACKEND_SESSION_KEY)
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(user_id)
    if not is_active_person(user):
        return None
    session_hash = store.get(HASH_SESSION_KEY) or ""
    hashes = [user.get_session_auth_hash()] + [
        user._get_session_auth_hash(secret=secret) for secret in settings.SECRET_KEY_FALLBACKS
    ]
    if not any(constant_time_compare(session_hash, expected) for expected in hashes):
        return None  # the password changed since this session logged in
    idle_timeout = settings.SESSION_IDLE_TIMEOUT_SECONDS
    last_activity = store.get(LAST_ACTIVITY_KEY)
    if (
        idle_timeout > 0
        and isinstance(last_activity, int | float)
        and time.time() - last_activity > idle_timeout
    ):
        return None  # idle: its next request logs it out; the socket ends now
    return user


class PersonSocketConsumer(AsyncJsonWebsocketConsumer):
    """A person's live socket: authenticates on connect, forwards only events of the agents
    the person may read (``readable_agents``), and closes with 4401 once the session is no
    longer valid (see the module docstring). Subclasses say which agents
    (``readable_agents``) and which groups carry their events (``groups_for``); their event
    handlers call :meth:`may_hear` or :meth:`forward`. They read and forward only."""

    def readable_agents(self, user: Any) -> QuerySet:
        """The agents whose events this socket forwards to ``user`` (a fresh user object)."""
        raise NotImplementedError

    def groups_for(self, agents: frozenset[str]) -> set[str]:
        """The channel-layer groups to be in while the person may read ``agents``."""
        raise NotImplementedError

    # --- lifecycle ------------------------------------------------------------------------

    async def connect(self) -> None:
        self.agents: frozenset[str] = frozenset()
        self.groups_joined: set[str] = set()
        self.closing = False
        self._access_lock = asyncio.Lock()  # the periodic re-check and a hint may overlap
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._close_unauthenticated()
            return
        self.user_id = user.pk
        # Hints first, so a change made while joining is not missed.
        self.hint_groups = {person_group(user.pk), EVERYONE_GROUP}
        for group in self.hint_groups:
            await self.channel_layer.group_add(group, self.channel_name)
        agents = await self._read_access()
        if agents is None:
            await self._close_unauthenticated()
            return
        self.agents = agents
        await self._join_exactly(self.groups_for(agents))
        await self.accept()
        await self.send_json({"type": "hello", "agents": len(agents)})
        self._access_task = asyncio.ensure_future(self._recheck_access_periodically())

    async def disconnect(self, code: int) -> None:
        self.closing = True
        task = getattr(self, "_access_task", None)
        if task is not None:
            # Not awaited: awaiting it under a suppress(CancelledError) would also swallow a
            # cancellation of this consumer itself, which would then never stop.
            task.cancel()
        await self._leave_all()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Pages send nothing that matters; every change goes through HTTP."""

    # --- forwarding -----------------------------------------------------------------------

    def may_hear(self, agent: str) -> bool:
        return not self.closing and agent in self.agents

    async def forward(self, event: dict) -> None:
        """Sends ``event`` unchanged (unless the socket is closing)."""
        if not self.closing:
            await self.send_json(dict(event))

    # --- events every live socket handles -------------------------------------------------

    async def access_hint(self, event: dict) -> None:
        """Someone's access changed (maybe this person's): read it again now. Events queued
        behind this hint are filtered by the fresh answer."""
        await self._recheck_access()

    async def layer_reconnected(self, event: dict) -> None:
        """This process's subscription to Redis came back after an outage: whatever was
        published meanwhile never arrived (access hints too), so access is read again and
        the page is told to re-read."""
        if await self._recheck_access():
            await self.send_json({"type": "resync"})

    # --- access ---------------------------------------------------------------------------

    @staticmethod
    def recheck_seconds() -> float:
        return float(settings.LIVE_SOCKET_RECHECK_SECONDS)

    async def _recheck_access_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.recheck_seconds())
            try:
                if not await self._recheck_access():
                    return
            except Exception:  # e.g. PostgreSQL away for a moment: the backstop must go on
                logger.warning("live socket could not re-read its access", exc_info=True)

    async def _recheck_access(self) -> bool:
        """Reads the person's access afresh; closes the socket (and answers False) once the
        session is no longer valid. A changed set of agents moves the socket's groups and
        tells the page (``access.changed``)."""
        async with self._access_lock:
            if self.closing:
                return False
            agents = await self._read_access()
            if agents is None:
                await self._close_unauthenticated()
                return False
            if agents != self.agents:
                self.agents = agents
                await self._join_exactly(self.groups_for(agents))
                await self.send_json({"type": "access.changed", "agents": len(agents)})
            return True

    @database_sync_to_async
    def _read_access(self) -> frozenset[str] | None:
        """The slugs of the agents the person may read now; None once the session is over."""
        session = self.scope.get("session")
        user = session_person(getattr(session, "session_key", None), self.user_id)
        if user is None:
            return None
        return frozenset(self.readable_agents(user).values_list("slug", flat=True))

    async def _close_unauthenticated(self) -> None:
        # Nothing more is forwarded from now on, and nothing more is queued for this socket.
        self.closing = True
        self.agents = frozenset()
        await self._leave_all()
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def _join_exactly(self, groups: set[str]) -> None:
        for group in groups - self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        for group in self.groups_joined - groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = set(groups)

    async def _leave_all(self) -> None:
        for group in self.groups_joined | getattr(self, "hint_groups", set()):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = set()
        self.hint_groups = set()
