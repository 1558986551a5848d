"""The governance websocket: live change requests and policy versions for the people who
may read them. Reads and forwards only; it never changes anything."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth import get_user_model

from rollout.access_hints import EVERYONE_GROUP, person_group
from rollout.events import GOVERNANCE_GROUP
from rollout.selectors import governance_readable_agents

CLOSE_UNAUTHENTICATED = 4401


class GovernanceConsumer(AsyncJsonWebsocketConsumer):
    """Joins the one ``governance`` group and forwards each event only when its agent is
    among those the person may read governance of (governance owners and auditors),
    decided by ``rollout.selectors`` at connect and again on every access hint
    (``rollout.access_hints``). Messages are hints: the page re-reads its state on every
    message and (re)connect, since delivery is at most once."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        for group in (person_group(user.pk), EVERYONE_GROUP):
            await self.channel_layer.group_add(group, self.channel_name)
        self.agent_slugs = await self._readable_slugs(user.pk)
        await self.channel_layer.group_add(GOVERNANCE_GROUP, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "agents": len(self.agent_slugs)})

    async def disconnect(self, code: int) -> None:
        user = self.scope.get("user")
        groups = {GOVERNANCE_GROUP} | (
            {person_group(user.pk), EVERYONE_GROUP} if user is not None else set()
        )
        for group in groups:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def access_hint(self, event: dict) -> None:
        """Someone's access changed (maybe this person's): read it again."""
        await self._refresh_access()

    async def _refresh_access(self) -> bool:
        """Reads the agents the person may read afresh; a deactivated person is disconnected
        (and False is answered)."""
        slugs = await self._readable_slugs(self.scope["user"].pk)
        if slugs is None:
            self.agent_slugs = set()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return False
        self.agent_slugs = slugs
        return True

    @database_sync_to_async
    def _readable_slugs(self, user_id: int) -> set[str] | None:
        """The agents whose governance the person may read, read afresh (no permission cache
        of the connection's user object); None once they are deactivated."""
        user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
        if user is None:
            return None
        return set(governance_readable_agents(user).values_list("slug", flat=True))

    async def governance_changed(self, event: dict) -> None:
        if event.get("agent") in getattr(self, "agent_slugs", set()):
            await self.send_json(dict(event))

    async def layer_reconnected(self, event: dict) -> None:
        """The channel layer's connection to Redis came back: events published meanwhile
        were lost (access hints too), so access is read again and the page is told to
        re-read."""
        if await self._refresh_access():
            await self.send_json({"type": "resync"})
