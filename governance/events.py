"""Channel-layer events about governance: change requests and new policy versions.

Everything goes to one ``governance`` group; ``governance.consumers.GovernanceConsumer``
forwards each event only to people who may see that agent's governance. Delivery is at
most once: pages re-read their state when they (re)connect. A failure to publish never
fails the change that caused it (it has already committed)."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

GOVERNANCE_GROUP = "governance"


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # the change is committed; pages re-sync on reconnect
        logger.warning("channel layer publish to %s failed", group, exc_info=True)


def change_request_message(change_request: Any, change: str) -> dict[str, Any]:
    return {
        "type": "governance.changed",
        "kind": "change_request",
        "id": change_request.pk,
        "agent": change_request.agent.slug,
        "status": change_request.status,
        "revision": change_request.revision,
        "change": change,
    }


def policy_version_message(version: Any, change: str) -> dict[str, Any]:
    return {
        "type": "governance.changed",
        "kind": "policy_version",
        "id": version.pk,
        "agent": version.agent.slug,
        "number": version.number,
        "change": change,
    }


def broadcast_change_request(change_request: Any, change: str) -> None:
    """Tell governance pages that a change request was created, edited, approved, applied,
    rejected or withdrawn (``change``)."""
    _send(GOVERNANCE_GROUP, change_request_message(change_request, change))


def broadcast_policy_version(version: Any, change: str) -> None:
    """Tell governance pages that an agent has a new current policy version; ``change``
    says why (``tightened``, ``change_request_applied``, ``token_issued`` …)."""
    _send(GOVERNANCE_GROUP, policy_version_message(version, change))
