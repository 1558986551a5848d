"""The live queue's websocket. It reads and forwards; it never changes domain state."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from approvals.events import agent_group
from rollout.live import PersonSocketConsumer
from rollout.permissions import reviewable_agents


class QueueConsumer(PersonSocketConsumer):
    """A reviewer's live queue: joins the group of every agent they may review (decided by
    ``rollout.permissions``) and forwards action and switch events. Who may keep it open,
    and how access is re-read, is the base's (``rollout.live``).

    Messages are hints, not state: the page re-reads the queue from the server on every
    message and (re)connect, since delivery is at most once, and on ``resync``, sent when
    the channel layer's connection to Redis came back (events in between were lost)."""

    def readable_agents(self, user: Any) -> QuerySet:
        return reviewable_agents(user)

    def groups_for(self, agents: frozenset[str]) -> set[str]:
        return {agent_group(slug) for slug in agents}

    async def action_changed(self, event: dict) -> None:
        if self.may_hear(event.get("agent", "")):
            await self.forward(event)

    async def standing_changed(self, event: dict) -> None:
        if self.may_hear(event.get("agent", "")):
            await self.forward(event)

    async def switch_changed(self, event: dict) -> None:
        if event.get("scope") != "agent" or self.may_hear(event.get("target", "")):
            await self.forward(event)
