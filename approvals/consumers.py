"""Websocket consumers. They read and forward; they never change domain state."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth import get_user_model

from approvals.events import agent_group
from rollout.permissions import may_review_now, reviewable_agents

# Close code for "not logged in (any more)": the page re-reads over HTTP, which sends a
# person whose session ended to the login page.
CLOSE_UNAUTHENTICATED = 4401


class QueueConsumer(AsyncJsonWebsocketConsumer):
    """A reviewer's live queue: joins the group of every agent they may review (decided by
    ``rollout.permissions``) and forwards action and switch events.

    Messages are hints, not state: the page re-reads the queue from the server on every
    message and (re)connect, since delivery is at most once, and on ``resync``, sent when
    the channel layer's connection to Redis came back (events in between were lost). Access is checked again every
    ``access_recheck_seconds``: a person who logged out or was deactivated is disconnected,
    and groups follow granted or revoked review rights (the page is told to re-read)."""

    access_recheck_seconds: float = 60.0

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.groups_joined: set[str] = set()
        await self._join_exactly(await self._reviewable_groups(user))
        await self.accept()
        await self.send_json({"type": "hello", "agents": len(self.groups_joined)})
        self._access_task = asyncio.ensure_future(self._recheck_access_periodically())

    async def disconnect(self, code: int) -> None:
        task = getattr(self, "_access_task", None)
        if task is not None:
            # Not awaited: awaiting it under a suppress(CancelledError) would also swallow a
            # cancellation of this consumer itself, which would then never stop.
            task.cancel()
        for group in getattr(self, "groups_joined", set()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The page sends nothing that matters; decisions go through HTTP forms."""

    # --- events from the channel layer ----------------------------------------------------

    async def action_changed(self, event: dict) -> None:
        if await self._may_hear(event.get("agent", "")):
            await self.send_json(dict(event))

    async def switch_changed(self, event: dict) -> None:
        if event.get("scope") != "agent" or await self._may_hear(event.get("target", "")):
            await self.send_json(dict(event))

    async def layer_reconnected(self, event: dict) -> None:
        """This process's subscription to Redis came back after an outage: whatever was
        published meanwhile never arrived, so the page is told to re-read."""
        await self.send_json({"type": "resync"})

    async def _may_hear(self, agent_slug: str) -> bool:
        """Re-asked per event (cached for a second), so access removed a moment ago stops
        the events at once, not at the next periodic re-check."""
        now = asyncio.get_running_loop().time()
        cache = self.__dict__.setdefault("_hear_cache", {})
        known = cache.get(agent_slug)
        if known is None or now - known[1] > 1.0:
            user_id = self.scope["user"].pk
            known = (await database_sync_to_async(may_review_now)(user_id, agent_slug), now)
            cache[agent_slug] = known
        return known[0]

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
            groups = await self._current_groups()
            if groups is None:
                await self.close(code=CLOSE_UNAUTHENTICATED)
                return
            if groups != self.groups_joined:
                await self._join_exactly(groups)
                await self.send_json({"type": "access.changed", "agents": len(groups)})

    @database_sync_to_async
    def _reviewable_groups(self, user: Any) -> set[str]:
        return {
            agent_group(slug) for slug in reviewable_agents(user).values_list("slug", flat=True)
        }

    @database_sync_to_async
    def _current_groups(self) -> set[str] | None:
        """The groups the person should be in now, read afresh; None once their session has
        ended or they were deactivated."""
        session = self.scope.get("session")
        if session is None or not session.session_key or not session.exists(session.session_key):
            return None
        user = get_user_model().objects.filter(pk=self.scope["user"].pk, is_active=True).first()
        if user is None:
            return None
        return {
            agent_group(slug) for slug in reviewable_agents(user).values_list("slug", flat=True)
        }
