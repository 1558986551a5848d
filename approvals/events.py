"""Channel-layer group names and the events sent to them.

Delivery is at most once by design: dashboards re-read state on (re)connect, and long-polls
re-read the action when woken or timed out. A failure to publish never fails the change
that caused it (it has already committed)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 3


def agent_group(slug: str) -> str:
    """Dashboards of people who may review ``slug`` join this group."""
    return f"agent.{slug}"


def action_group(action_id: int) -> str:
    """Long-polls waiting on one action join this group."""
    return f"action.{action_id}"


async def _bounded_send(layer: Any, group: str, message: dict[str, Any]) -> None:
    # A Redis that hangs must not hold the request that made the change.
    await asyncio.wait_for(layer.group_send(group, message), PUBLISH_TIMEOUT_SECONDS)


def publish(group: str, message: dict[str, Any]) -> None:
    """Send ``message`` to ``group``; a failure is logged, never raised."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(_bounded_send)(layer, group, message)
    except Exception:  # the change is committed; dashboards re-sync, long-polls re-read
        logger.warning("channel layer publish to %s failed", group, exc_info=True)


def broadcast_action(action: Any, change: str, *, to_dashboards: bool = True) -> None:
    """Tell the agent's dashboards and the action's waiting long-polls that it changed.
    A kill switch's sweep tells only the long-polls: its one switch event makes the
    dashboards re-read, instead of a burst of events ahead of it."""
    message = {
        "type": "action.changed",
        "action_id": action.pk,
        "agent": action.agent.slug,
        "status": action.status,
        "change": change,
    }
    publish(action_group(action.pk), message)
    if to_dashboards:
        publish(agent_group(action.agent.slug), message)


def broadcast_standing(standing: Any, change: str) -> None:
    """Tell the agent's dashboards that one of its standing approvals was created, used or
    ended (the queue and the agent page re-read their lists)."""
    publish(
        agent_group(standing.agent.slug),
        {
            "type": "standing.changed",
            "standing_id": standing.pk,
            "agent": standing.agent.slug,
            "change": change,
        },
    )
