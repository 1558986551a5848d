"""Websocket consumers. They read and forward; they never change domain state."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth import get_user_model

from approvals.events import agent_group
from rollout.access_hints import EVERYONE_GROUP, person_group
from rollout.permissions import reviewable_agents

# Close code for "not logged in (any more)": the page re-reads over HTTP, which sends a
# person whose session ended to the login page.
CLOSE_UNAUTHENTICATED = 4401


class QueueConsumer(AsyncJsonWebsocketConsumer):
    """A reviewer's live queue: joins the group of every agent they may review (decided by
    ``rollout.permissions``) and forwards action and switch events.

    Messages are hints, not state: the page re-reads the queue from the server on every
    message and (re)connect, since delivery is at most once, and on ``resync``, sent when
    the channel layer's connection to Redis came back (events in between were lost). Each
    event is checked against the agents the person may review as last read (in memory, no
    query per event). That is read again when an access hint arrives
    (``rollout.access_hints``: sent after any change to their rights, account or sessions)
    and every ``access_recheck_seconds`` as a backstop: a person who logged out or was
    deactivated is disconnected, and groups follow granted or revoked review rights (the
    page is told to re-read)."""

    access_recheck_seconds: float = 60.0

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.groups_joined: set[str] = set()
        self._access_lock = asyncio.Lock()  # the periodic re-check and a hint may overlap
        self.reviewable: set[str] = await self._reviewable_slugs(user)
        # Hints first, so a change made while joining is not missed.
        for group in (person_group(user.pk), EVERYONE_GROUP):
            await self.channel_layer.group_add(group, self.channel_name)
        await self._join_exactly({agent_group(slug) for slug in self.reviewable})
        await self.accept()
        await self.send_json({"type": "hello", "agents": len(self.groups_joined)})
        self._access_task = asyncio.ensure_future(self._recheck_access_periodically())

    async def disconnect(self, code: int) -> None:
        task = getattr(self, "_access_task", None)
        if task is not None:
            # Not awaited: awaiting it under a suppress(CancelledError) would also swallow a
            # cancellation of this consumer itself, which would then never stop.
            task.cancel()
        user = self.scope.get("user")
        hint_groups = {person_group(user.pk), EVERYONE_GROUP} if user is not None else set()
        for group in getattr(self, "groups_joined", set()) | hint_groups:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The page sends nothing that matters; decisions go through HTTP forms."""

    # --- events from the channel layer ----------------------------------------------------

    async def action_changed(self, event: dict) -> None:
        if event.get("agent", "") in self.reviewable:
            await self.send_json(dict(event))

    async def switch_changed(self, event: dict) -> None:
        if event.get("scope") != "agent" or event.get("target", "") in self.reviewable:
            await self.send_json(dict(event))

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

    async def _join_exactly(self, groups: set[str]) -> None:
        for group in groups - self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        for group in self.groups_joined - groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = set(groups)

    async def _recheck_access_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.access_recheck_seconds)
            if not await self._recheck_access():
                return

    async def _recheck_access(self) -> bool:
        """Reads the person's access afresh; closes the socket (and answers False) once their
        session has ended or they were deactivated."""
        async with self._access_lock:
            slugs = await self._current_slugs()
            if slugs is None:
                self.reviewable = set()
                await self.close(code=CLOSE_UNAUTHENTICATED)
                return False
            self.reviewable = slugs
            groups = {agent_group(slug) for slug in slugs}
            if groups != self.groups_joined:
                await self._join_exactly(groups)
                await self.send_json({"type": "access.changed", "agents": len(groups)})
            return True

    @database_sync_to_async
    def _reviewable_slugs(self, user: Any) -> set[str]:
        return set(reviewable_agents(user).values_list("slug", flat=True))

    @database_sync_to_async
    def _current_slugs(self) -> set[str] | None:
        """The agents the person may review now, read afresh; None once their session has
        ended or they were deactivated."""
        session = self.scope.get("session")
        if session is None or not session.session_key or not session.exists(session.session_key):
            return None
        user = get_user_model().objects.filter(pk=self.scope["user"].pk, is_active=True).first()
        if user is None:
            return None
        return set(reviewable_agents(user).values_list("slug", flat=True))
