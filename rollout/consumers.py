"""The governance websocket: live change requests and policy versions for the people who
may read them. Reads and forwards only; it never changes anything."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from rollout.events import GOVERNANCE_GROUP
from rollout.selectors import governance_readable_agents

CLOSE_UNAUTHENTICATED = 4401


class GovernanceConsumer(AsyncJsonWebsocketConsumer):
    """Joins the one ``governance`` group and forwards each event only when its agent is
    among those the person may read governance of (governance owners and auditors),
    decided by ``rollout.selectors`` at connect. Messages are hints: the page re-reads its
    state on every message and (re)connect, since delivery is at most once."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.agent_slugs = await self._readable_slugs(user)
        await self.channel_layer.group_add(GOVERNANCE_GROUP, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "agents": len(self.agent_slugs)})

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GOVERNANCE_GROUP, self.channel_name)

    @database_sync_to_async
    def _readable_slugs(self, user) -> set[str]:
        return set(governance_readable_agents(user).values_list("slug", flat=True))

    async def governance_changed(self, event: dict) -> None:
        if event.get("agent") in getattr(self, "agent_slugs", set()):
            await self.send_json(dict(event))

    async def layer_reconnected(self, event: dict) -> None:
        """The channel layer's connection to Redis came back: events published meanwhile
        were lost, so the page is told to re-read."""
        await self.send_json({"type": "resync"})
