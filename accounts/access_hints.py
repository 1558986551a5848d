"""Hints to live sockets that someone's access may have changed, so they read it again now
instead of at their next periodic re-check.

Sockets filter events against the access they read at connect and at each re-check (an
in-memory set, no query per event: a query per socket per event made 100 dashboards fall
seconds behind). What keeps that set fresh is these hints, sent after commit whenever
something that decides access changes: object permissions (django-guardian) of a person or
a group, group membership, a person's own permissions, their account (deactivation,
superuser), logout. They are model signals on purpose — unlike audit or business rules,
these rows are also changed by the admin, the shell and guardian's helpers, and every path
must reach the sockets. A hint carries no data; a lost one is covered by the consumers'
periodic re-check.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

# Everyone's sockets: for changes that may affect any number of people (a group's rights).
EVERYONE_GROUP = "access.everyone"
HINT = {"type": "access.hint"}


def person_group(user_id: Any) -> str:
    """The group of one person's live sockets."""
    return f"access.person.{user_id}"


def hint_access_changed(user_ids: Iterable[Any] | None) -> None:
    """After the current transaction commits, tell the live sockets of ``user_ids`` (None:
    everybody's) to read their access again. Changes nothing; never fails the caller."""
    groups = [EVERYONE_GROUP] if user_ids is None else [person_group(pk) for pk in set(user_ids)]
    if groups:
        transaction.on_commit(lambda: _send(groups))


def _send(groups: list[str]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        for group in groups:
            async_to_sync(layer.group_send)(group, HINT)
    except Exception:  # committed already; sockets re-check periodically anyway
        logger.warning("access hint not published", exc_info=True)


# --- signal receivers (connected in accounts.apps) -------------------------------------------


def on_user_object_permission(sender: Any, instance: Any, **kwargs: Any) -> None:
    hint_access_changed([instance.user_id])


def on_group_object_permission(sender: Any, instance: Any, **kwargs: Any) -> None:
    hint_access_changed(None)


def on_user_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    if not created:
        hint_access_changed([instance.pk])


def on_membership_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set | None, **kwargs: Any
) -> None:
    """``user.groups`` / ``group.user_set`` / ``user.user_permissions`` changed."""
    if not action.startswith("post_"):
        return
    if reverse and pk_set is None:  # group.user_set.clear(): members unknown by now
        hint_access_changed(None)
    elif reverse:
        hint_access_changed(pk_set)
    else:
        hint_access_changed([instance.pk])


def on_group_permissions_changed(sender: Any, action: str, **kwargs: Any) -> None:
    if action.startswith("post_"):
        hint_access_changed(None)


def on_logged_out(sender: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        hint_access_changed([user.pk])


def connect_signals() -> None:
    """Connects the receivers above (once, from ``RolloutConfig.ready``)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.auth.signals import user_logged_out
    from django.db.models.signals import m2m_changed, post_delete, post_save
    from guardian.models import GroupObjectPermission, UserObjectPermission

    user_model = get_user_model()
    for signal in (post_save, post_delete):
        signal.connect(on_user_object_permission, sender=UserObjectPermission, weak=False)
        signal.connect(on_group_object_permission, sender=GroupObjectPermission, weak=False)
    post_save.connect(on_user_saved, sender=user_model, weak=False)
    m2m_changed.connect(on_membership_changed, sender=user_model.groups.through, weak=False)
    m2m_changed.connect(
        on_membership_changed, sender=user_model.user_permissions.through, weak=False
    )
    m2m_changed.connect(on_group_permissions_changed, sender=Group.permissions.through, weak=False)
    user_logged_out.connect(on_logged_out, weak=False, dispatch_uid="airlock-access-hint")
