"""Websocket consumers. They read and forward; they never change domain state."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from approvals.events import agent_group
from rollout.permissions import reviewable_agents


class QueueConsumer(AsyncJsonWebsocketConsumer):
    """A reviewer's live queue: joins the group of every agent they may review (decided by
    ``rollout.permissions``) and forwards action and switch events. The page re-reads the
    queue from the server on (re)connect, since delivery is at most once."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=4401)
            return
        self.groups_joined = [agent_group(slug) for slug in await self._agent_slugs(user)]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "agents": len(self.groups_joined)})

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    @database_sync_to_async
    def _agent_slugs(self, user) -> list[str]:
        return list(reviewable_agents(user).values_list("slug", flat=True))

    async def action_changed(self, event: dict) -> None:
        await self.send_json(dict(event))

    async def switch_changed(self, event: dict) -> None:
        await self.send_json(dict(event))
