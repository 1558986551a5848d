"""The kill switch's channel-layer event: ``switch.changed`` to the incidents group and the
dashboards of every agent it covers (``approvals.consumers.QueueConsumer.switch_changed``
forwards it to reviewers who may hear of that agent). Delivery is at most once, as for
every event (``approvals.events``)."""

from __future__ import annotations

from typing import Any

from approvals.events import agent_group, publish
from rollout.models import Agent

INCIDENTS_GROUP = "incidents"


def broadcast_switch(switch: Any, change: str) -> None:
    """Tell the incidents group and the covered agents' dashboards that ``switch`` was
    ``engaged`` or ``released`` (``change``); called on commit."""
    message = {
        "type": "switch.changed",
        "switch_id": switch.pk,
        "scope": switch.scope,
        "target": switch.target,
        "environment": switch.environment,
        # The one agent an agent switch stops ("" for global and tool switches, which reach
        # every agent): the incidents socket forwards by it (``incidents.consumers``).
        "agent": switch.target if switch.scope == "agent" else "",
        "change": change,
        "drill": switch.is_drill,
    }
    publish(INCIDENTS_GROUP, message)
    if switch.is_drill:
        # Dashboards of the drilled agent hear it (that is what a drill measures); nothing
        # else changes for them.
        publish(agent_group(switch.target), message)
        return
    # Every affected agent's dashboards: one event each, which makes them re-read their
    # queue (the swept actions are not announced one by one to them).
    slugs = (
        [switch.target]
        if switch.scope == "agent"
        else list(Agent.objects.values_list("slug", flat=True))
    )
    for slug in slugs:
        publish(agent_group(slug), message)
