"""Role and account changes in the audit chain, whichever path makes them.

Recorded: accounts created and deleted (``account.created`` / ``account.deleted``); their
superuser, staff and active flags (``account.flags_changed``); group membership, i.e. roles
(``role.granted`` / ``role.revoked``, from ``user.groups`` or ``group.user_set``); a person's
or a group's permissions and django-guardian object permissions (``permission.granted`` /
``permission.revoked``; on an agent, the event is that agent's). Each event names who
(the actor), whom, and what — never a password or its hash.

Model signals are the documented exception to the one-write-path rule here: these rows are
changed by the Django admin, ``manage.py shell``, Django's own commands (``createsuperuser``)
and guardian's ``assign_perm`` / ``remove_perm``, none of which pass through our actions —
yet a superuser who gives a new account ``governance_owner`` in the admin and approves their
own change through it must leave a trace. The receivers run in the caller's transaction
(``m2m_changed``, ``post_delete``, guardian's ``get_or_create`` all run inside one), so the
event commits or rolls back with the change. A bare ``user.save()`` in autocommit mode has
no transaction to share: its event is written in its own, straight after.

The actor is ``audit.actor_context.current_actor()``: the signed-in person in a request,
``system:<command>`` in a management command, ``system:shell`` otherwise. Migrations and
reference data (``seeding_reference_data``) record nothing.

Not seen by signals, so not recorded: ``QuerySet.update()`` of user rows, ``bulk_create``
of guardian rows (``assign_perm`` with a queryset), raw SQL. Nothing in Airlock does these.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction

from audit import verbs
from audit.actor_context import current_actor, is_recorded_by_caller, is_seeding_reference_data
from audit.chain import append_event

FLAGS = ("is_active", "is_staff", "is_superuser")
_FLAG_CHANGES = "_airlock_flag_changes"
_PENDING = "_airlock_m2m_pending"


def _quiet() -> bool:
    """Migrations and reference data, or a write path that records the change itself."""
    return is_seeding_reference_data() or is_recorded_by_caller()


def _record(
    *,
    verb: str,
    target_type: str,
    target_id: Any,
    data: dict,
    agent_slug: str = "",
    using: str | None = None,
) -> None:
    def write() -> None:
        append_event(
            verb=verb,
            actor=current_actor(),
            target_type=target_type,
            target_id=target_id,
            agent_slug=agent_slug,
            data=data,
        )

    if transaction.get_connection(using).in_atomic_block:
        write()
    else:  # autocommit: the change is committed already; record it at once
        with transaction.atomic(using=using):
            write()


def _flag_words(values: dict[str, bool]) -> str:
    return ", ".join(
        f"{flag.removeprefix('is_')} {'on' if on else 'off'}" for flag, on in values.items()
    )


# --- accounts ------------------------------------------------------------------------------


def on_user_pre_save(
    sender: Any, instance: Any, raw: bool = False, update_fields: Any = None, **kwargs: Any
) -> None:
    """Remember which flags this save changes (read from the row, not from memory: the
    instance may have been built or refreshed anywhere)."""
    instance.__dict__.pop(_FLAG_CHANGES, None)
    if _quiet() or instance._state.adding or instance.pk is None:
        return
    if update_fields is not None and not set(update_fields) & set(FLAGS):
        return  # e.g. last_login at each login: no query
    before = sender._base_manager.using(kwargs.get("using")).filter(pk=instance.pk)
    old = before.values(*FLAGS).first()
    if old is None:
        return
    changed = {
        flag: (old[flag], getattr(instance, flag))
        for flag in FLAGS
        if (update_fields is None or flag in update_fields) and old[flag] != getattr(instance, flag)
    }
    if changed:
        instance.__dict__[_FLAG_CHANGES] = changed


def on_user_post_save(
    sender: Any, instance: Any, created: bool, using: str | None = None, **kwargs: Any
) -> None:
    changed = instance.__dict__.pop(_FLAG_CHANGES, None)
    if _quiet():
        return
    username = instance.get_username()
    if created:
        flags = {flag: bool(getattr(instance, flag)) for flag in FLAGS}
        _record(
            verb=verbs.ACCOUNT_CREATED,
            target_type="user",
            target_id=instance.pk,
            data={"username": username, "flags": _flag_words(flags), **flags},
            using=using,
        )
    elif changed:
        _record(
            verb=verbs.ACCOUNT_FLAGS_CHANGED,
            target_type="user",
            target_id=instance.pk,
            data={
                "username": username,
                "flags": _flag_words({flag: after for flag, (_, after) in changed.items()}),
                "before": {flag: before for flag, (before, _) in changed.items()},
                "after": {flag: after for flag, (_, after) in changed.items()},
            },
            using=using,
        )


def on_user_post_delete(
    sender: Any, instance: Any, using: str | None = None, **kwargs: Any
) -> None:
    if _quiet():
        return
    _record(
        verb=verbs.ACCOUNT_DELETED,
        target_type="user",
        target_id=instance.pk,
        data={"username": instance.get_username()},
        using=using,
    )


# --- roles and permissions (many-to-many) --------------------------------------------------


def _holder(obj: Any) -> str:
    if isinstance(obj, Group):
        return f"group:{obj.name}"
    return f"user:{obj.get_username()}"


def _permission_name(permission: Permission) -> str:
    return f"{permission.content_type.app_label}.{permission.codename}"


class _Relation:
    """One many-to-many relation: ``holder_model.<forward>`` ↔ ``item_model.<reverse>``;
    the holder is the user (or the group) that gains or loses the item."""

    def __init__(self, holder_model: Any, forward: str, item_model: Any, reverse: str) -> None:
        self.holder_model, self.forward = holder_model, forward
        self.item_model, self.reverse = item_model, reverse

    def pairs(
        self, instance: Any, reverse: bool, pk_set: Iterable[Any] | None
    ) -> list[tuple[Any, Any]]:
        """(holder, item) for the rows ``pk_set`` names, or for every row of ``instance``
        when ``pk_set`` is None (a clear), read now."""
        if not reverse:
            items = getattr(instance, self.forward).all()
            if pk_set is not None:
                items = self.item_model._base_manager.filter(pk__in=pk_set)
            return [(instance, item) for item in self._items(items)]
        holders = getattr(instance, self.reverse).all()
        if pk_set is not None:
            holders = self.holder_model._base_manager.filter(pk__in=pk_set)
        return [(holder, instance) for holder in holders.order_by("pk")]

    def present(self, instance: Any, reverse: bool, pk_set: Iterable[Any]) -> list[tuple[Any, Any]]:
        """The pairs of ``pk_set`` that exist now (a ``remove()`` of a non-member removes
        nothing and is no event)."""
        manager = getattr(instance, self.reverse if reverse else self.forward)
        return self.pairs(
            instance, reverse, list(manager.filter(pk__in=pk_set).values_list("pk", flat=True))
        )

    def _items(self, items: Any) -> Any:
        if self.item_model is Permission:
            items = items.select_related("content_type")
        return items.order_by("pk")

    def record(self, pairs: list[tuple[Any, Any]], granted: bool, using: str | None) -> None:
        for holder, item in pairs:
            if self.item_model is Group:
                _record(
                    verb=verbs.ROLE_GRANTED if granted else verbs.ROLE_REVOKED,
                    target_type="user",
                    target_id=holder.pk,
                    data={"username": holder.get_username(), "role": item.name},
                    using=using,
                )
                continue
            _record(
                verb=verbs.PERMISSION_GRANTED if granted else verbs.PERMISSION_REVOKED,
                target_type="group" if isinstance(holder, Group) else "user",
                target_id=holder.pk,
                data={"holder": _holder(holder), "permission": _permission_name(item)},
                using=using,
            )


def _relations() -> dict[Any, _Relation]:
    user_model = get_user_model()
    return {
        user_model.groups.through: _Relation(user_model, "groups", Group, "user_set"),
        user_model.user_permissions.through: _Relation(
            user_model, "user_permissions", Permission, "user_set"
        ),
        Group.permissions.through: _Relation(Group, "permissions", Permission, "group_set"),
    }


_RELATIONS: dict[Any, _Relation] = {}


def on_m2m_changed(
    sender: Any,
    instance: Any,
    action: str,
    reverse: bool,
    pk_set: set | None,
    using: str | None = None,
    **kwargs: Any,
) -> None:
    """``user.groups``, ``group.user_set``, ``user.user_permissions``, ``group.permissions``
    and their reverse sides. ``add`` names only new rows; ``remove`` and ``clear`` are read
    before they run (a removed row is gone afterwards)."""
    relation = _RELATIONS.get(sender)
    if relation is None or _quiet():
        return
    pending = instance.__dict__.setdefault(_PENDING, {})
    if action == "pre_remove" and pk_set:
        pending[(sender, "remove")] = relation.present(instance, reverse, pk_set)
    elif action == "pre_clear":
        pending[(sender, "clear")] = relation.pairs(instance, reverse, None)
    elif action == "post_add" and pk_set:
        relation.record(relation.pairs(instance, reverse, pk_set), True, using)
    elif action in ("post_remove", "post_clear"):
        pairs = pending.pop((sender, action.removeprefix("post_")), [])
        relation.record(pairs, False, using)


# --- object permissions (django-guardian) --------------------------------------------------


# Object permissions are granted on agents: their events are that agent's, named by its
# slug — read through the content type, so accounts imports no domain model.
AGENT_CONTENT_TYPE = ("rollout", "agent")


def _object_target(instance: Any) -> tuple[str, Any, str]:
    """(target type, target id, agent slug) of the object an object permission is on."""
    content_type = instance.content_type
    if (content_type.app_label, content_type.model) == AGENT_CONTENT_TYPE:
        agent_model = content_type.model_class()
        slug = None
        if agent_model is not None:
            slug = (
                agent_model._default_manager.filter(pk=instance.object_pk)
                .values_list("slug", flat=True)
                .first()
            )
        return "agent", instance.object_pk, slug or ""
    return content_type.model, instance.object_pk, ""


def _object_permission_event(instance: Any, holder: str, granted: bool, using: Any) -> None:
    target_type, target_id, slug = _object_target(instance)
    data: dict[str, Any] = {"holder": holder, "permission": _permission_name(instance.permission)}
    if slug:
        data["agent"] = slug
    else:
        data["object"] = f"{instance.content_type.app_label}.{target_type}:{target_id}"
    _record(
        verb=verbs.PERMISSION_GRANTED if granted else verbs.PERMISSION_REVOKED,
        target_type=target_type,
        target_id=target_id,
        agent_slug=slug,
        data=data,
        using=using,
    )


def _user_holder(instance: Any) -> str:
    try:
        return _holder(instance.user)
    except get_user_model().DoesNotExist:
        return f"user:#{instance.user_id}"


def _group_holder(instance: Any) -> str:
    try:
        return _holder(instance.group)
    except Group.DoesNotExist:
        return f"group:#{instance.group_id}"


def on_user_object_permission_saved(
    sender: Any, instance: Any, created: bool, using: Any = None, **kwargs: Any
) -> None:
    if created and not _quiet():
        _object_permission_event(instance, _user_holder(instance), True, using)


def on_user_object_permission_deleted(
    sender: Any, instance: Any, using: Any = None, **kwargs: Any
) -> None:
    if not _quiet():
        _object_permission_event(instance, _user_holder(instance), False, using)


def on_group_object_permission_saved(
    sender: Any, instance: Any, created: bool, using: Any = None, **kwargs: Any
) -> None:
    if created and not _quiet():
        _object_permission_event(instance, _group_holder(instance), True, using)


def on_group_object_permission_deleted(
    sender: Any, instance: Any, using: Any = None, **kwargs: Any
) -> None:
    if not _quiet():
        _object_permission_event(instance, _group_holder(instance), False, using)


def connect_signals() -> None:
    """Connects the receivers above (once, from ``RolloutConfig.ready``)."""
    from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
    from guardian.models import GroupObjectPermission, UserObjectPermission

    user_model = get_user_model()
    _RELATIONS.update(_relations())
    receivers = [
        (pre_save, on_user_pre_save, user_model),
        (post_save, on_user_post_save, user_model),
        (post_delete, on_user_post_delete, user_model),
        *((m2m_changed, on_m2m_changed, through) for through in _RELATIONS),
        (post_save, on_user_object_permission_saved, UserObjectPermission),
        (post_delete, on_user_object_permission_deleted, UserObjectPermission),
        (post_save, on_group_object_permission_saved, GroupObjectPermission),
        (post_delete, on_group_object_permission_deleted, GroupObjectPermission),
    ]
    for signal, receiver, sender in receivers:
        signal.connect(receiver, sender=sender, dispatch_uid=f"airlock-audit-{receiver.__name__}")
