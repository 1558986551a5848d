"""The incidents websocket: kill switches engaged or released anywhere (any process: the
page, the API, ``manage.py kill``, a breaker, a drill) reach the open incident consoles of
the people who may see them. Reads and forwards only; it never changes anything."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from incidents.events import INCIDENTS_GROUP
from rollout import permissions as perms
from rollout.live import PersonSocketConsumer


class IncidentsConsumer(PersonSocketConsumer):
    """Joins the ``incidents`` group while the person may stop or audit some agent: people
    with the global kill right and auditors read every agent, a scoped incident owner the
    agents they may stop. An agent switch's event is forwarded when its agent is among
    them; a global or tool switch reaches every agent, so its event goes to everyone in the
    group. Who may keep the socket open is the base's (``rollout.live``). Messages are
    hints: the page re-reads its live region on every message and (re)connect."""

    def readable_agents(self, user: Any) -> QuerySet:
        return perms.incident_agents(user)

    def groups_for(self, agents: frozenset[str]) -> set[str]:
        return {INCIDENTS_GROUP} if agents else set()

    async def switch_changed(self, event: dict) -> None:
        agent = event.get("agent", "")
        if self.may_hear(agent) if agent else (self.agents and not self.closing):
            await self.forward(event)
