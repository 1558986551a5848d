"""The governance websocket: live change requests and policy versions for the people who
may read them. Reads and forwards only; it never changes anything."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from governance.events import GOVERNANCE_GROUP
from rollout.live import PersonSocketConsumer
from rollout.selectors import governance_readable_agents


class GovernanceConsumer(PersonSocketConsumer):
    """Joins the one ``governance`` group and forwards each event only when its agent is
    among those the person may read governance of (governance owners and auditors),
    decided by ``rollout.selectors``. Who may keep it open, and how access is re-read, is
    the base's (``rollout.live``). Messages are hints: the page re-reads its state on every
    message and (re)connect, since delivery is at most once."""

    def readable_agents(self, user: Any) -> QuerySet:
        return governance_readable_agents(user)

    def groups_for(self, agents: frozenset[str]) -> set[str]:
        return {GOVERNANCE_GROUP}

    async def governance_changed(self, event: dict) -> None:
        if self.may_hear(event.get("agent", "")):
            await self.forward(event)
