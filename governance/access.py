"""Per-agent access as governed policy: who reviews an agent, who its escalations go to, who
governs it, who may kill it, who holds its critical-approval right and who audits it.

Access is part of an agent's policy piece (``rollout.policy_diff``) under ``"access"``::

    {"review": {"user:alice": True, "group:oncall": True}, "escalation": {...}, ...}

A change sets ``principal -> True`` (grant) or ``None`` (remove), exactly as tool rules
are set or removed, so the asymmetric workflow of ``governance.actions`` applies to it
unchanged: a grant increases someone's power over the agent and becomes a change request
for a second governance owner; a removal applies at once. Either way a new policy version
records the result (every snapshot has an ``access`` section, which the gate ignores:
``rollout.snapshots`` reads it through its ``current_access`` hook, which
``governance.apps`` answers with ``live_access``) and every grant or removal is audited
(``access.granted`` / ``access.removed``).

Rights held over *every* agent (roles: groups with model permissions, superusers) are not
per-agent access: they are shown beside it and managed as user accounts.

The live state is read from django-guardian's object-permission tables and, for
escalations, from the agent's ``approvals.NotificationRoute``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm, remove_perm

from approvals.models import NotificationRoute
from approvals.notifications import escalation_people
from audit import verbs
from audit.actor_context import recorded_by_caller
from audit.chain import Actor, append_event
from rollout import permissions as agent_perms
from rollout.models import Agent
from rollout.policy_diff import LOOSENING, TIGHTENING

# right -> the permission codename it is (escalation is a notification route, not a perm)
RIGHT_PERMISSIONS = {
    "review": "review_agent",
    "critical_approve": "critical_approve_agent",
    "escalation": None,
    "govern": "govern_agent",
    "kill": "kill_agent",
    "audit": "audit_agent",
}
RIGHTS = tuple(RIGHT_PERMISSIONS)
RIGHT_LABELS = {
    "review": "reviews its actions",
    "critical_approve": "gives the critical approval",
    "escalation": "receives its escalations",
    "govern": "governs it (tier, rules, access)",
    "kill": "may engage and release its kill switch",
    "audit": "reads its audit trail",
}
USER, GROUP = "user", "group"
MAX_ACCESS_CHANGES = 50


def principal(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def split_principal(value: str) -> tuple[str, str]:
    kind, _, name = str(value).partition(":")
    return kind, name


def _agent_type() -> ContentType:
    return ContentType.objects.get_for_model(Agent)


def _route(agent: Agent) -> Any:
    return NotificationRoute.objects.filter(agent=agent).first()


def live_access(agent: Agent) -> dict[str, dict[str, bool]]:
    """The agent's per-agent grants right now, every right present (maybe empty)."""
    access: dict[str, dict[str, bool]] = {right: {} for right in RIGHTS}
    by_codename = {codename: right for right, codename in RIGHT_PERMISSIONS.items() if codename}
    common = {
        "content_type": _agent_type(),
        "object_pk": str(agent.pk),
        "permission__codename__in": list(by_codename),
    }
    for username, codename in UserObjectPermission.objects.filter(**common).values_list(
        "user__username", "permission__codename"
    ):
        access[by_codename[codename]][principal(USER, username)] = True
    for group_name, codename in GroupObjectPermission.objects.filter(**common).values_list(
        "group__name", "permission__codename"
    ):
        access[by_codename[codename]][principal(GROUP, group_name)] = True
    route = _route(agent)
    if route is not None:
        for username in route.escalation_users.values_list("username", flat=True):
            access["escalation"][principal(USER, username)] = True
        if route.escalation_group_id:
            access["escalation"][principal(GROUP, route.escalation_group.name)] = True
    return {right: dict(sorted(holders.items())) for right, holders in access.items()}


# --- validating a proposed access change ----------------------------------------------------


def _principal_exists(value: str) -> bool:
    kind, name = split_principal(value)
    if kind == USER:
        return get_user_model().objects.filter(username=name).exists()
    if kind == GROUP:
        return Group.objects.filter(name=name).exists()
    return False


def normalize_access(value: Any, current: dict, errors: dict[str, list[str]]) -> dict:
    """What a proposed access change sets, as ``{right: {principal: True | None}}``.

    Accepts that shape, or ``{"grant": [item…], "revoke": [item…]}`` with items
    ``{"right": …, "user": name}`` or ``{"right": …, "group": name}``. Problems go into
    ``errors`` under ``access…`` keys."""
    if not isinstance(value, dict) or not value:
        errors["access"] = ['An object {right: {"user:name" | "group:name": true | null}}.']
        return {}
    if set(value) <= {"grant", "revoke"}:
        value = _from_grants(value, errors)
    after: dict[str, dict[str, bool | None]] = {}
    count = 0
    for right, holders in value.items():
        if right not in RIGHT_PERMISSIONS:
            errors[f"access.{right}"] = [f"Unknown right; one of {', '.join(RIGHTS)}."]
            continue
        if not isinstance(holders, dict) or not holders:
            errors[f"access.{right}"] = ['An object {"user:name" | "group:name": true | null}.']
            continue
        after[right] = {}
        for holder, granted in holders.items():
            count += 1
            key = f"access.{right}.{holder}"
            kind, name = split_principal(holder)
            if kind not in (USER, GROUP) or not name or len(name) > 150:
                errors[key] = ['A holder is "user:<username>" or "group:<group name>".']
            elif granted is not True and granted is not None:
                errors[key] = ["true to grant, null to remove."]
            elif granted and not _principal_exists(holder):
                errors[key] = [f"No {kind} {name!r}."]
            else:
                after[right][holder] = granted
    if count > MAX_ACCESS_CHANGES:
        errors["access"] = [f"At most {MAX_ACCESS_CHANGES} access changes at once."]
    escalation_groups = {
        holder
        for holder, granted in {
            **current.get("escalation", {}),
            **after.get("escalation", {}),
        }.items()
        if granted and split_principal(holder)[0] == GROUP
    }
    if len(escalation_groups) > 1:
        errors["access.escalation"] = [
            "Escalations go to at most one group (and any number of people); remove the "
            "current group first."
        ]
    return after


def _from_grants(value: dict, errors: dict[str, list[str]]) -> dict:
    shaped: dict[str, dict[str, bool | None]] = {}
    for verb, granted in (("grant", True), ("revoke", None)):
        items = value.get(verb) or []
        if not isinstance(items, list):
            errors[f"access.{verb}"] = ["A list of {right, user | group} objects."]
            continue
        for index, item in enumerate(items):
            kinds = [kind for kind in (USER, GROUP) if isinstance(item, dict) and kind in item]
            if (
                not isinstance(item, dict)
                or len(kinds) != 1
                or not isinstance(item.get("right"), str)
            ):
                errors[f"access.{verb}.{index}"] = ['{"right": …, "user": name} or "group".']
                continue
            holder = principal(kinds[0], str(item[kinds[0]]))
            right_holders = shaped.setdefault(item["right"], {})
            if holder in right_holders and right_holders[holder] != granted:
                errors[f"access.{verb}.{index}"] = ["Granted and revoked in one change."]
            right_holders[holder] = granted
    return shaped


# --- applying ------------------------------------------------------------------------------


def apply_access(
    agent: Agent, after: dict, *, actor: Actor, change_request_id: int | None = None
) -> list[tuple[str, str, bool]]:
    """Make the live grants match ``after`` (the caller holds the agent's lock, inside the
    change's transaction). Audits ``access.granted`` / ``access.removed`` for each holder
    whose right actually changed; returns those changes as (right, holder, granted)."""
    current = live_access(agent)
    done: list[tuple[str, str, bool]] = []
    for right in RIGHTS:
        for holder, granted in sorted((after.get(right) or {}).items()):
            has = bool(current[right].get(holder))
            if bool(granted) == has:
                continue
            kind, name = split_principal(holder)
            if right == "escalation":
                _set_escalation(agent, kind, name, bool(granted))
            else:
                _set_permission(agent, RIGHT_PERMISSIONS[right], kind, name, bool(granted))
            done.append((right, holder, bool(granted)))
            append_event(
                verb=verbs.ACCESS_GRANTED if granted else verbs.ACCESS_REMOVED,
                actor=actor,
                target_type="agent",
                target_id=agent.pk,
                agent_slug=agent.slug,
                data={
                    "right": right,
                    "holder": holder,
                    "change_request": change_request_id,
                },
            )
    return done


def _holder_object(kind: str, name: str) -> Any:
    if kind == USER:
        return get_user_model().objects.get(username=name)
    return Group.objects.get(name=name)


def _set_permission(agent: Agent, codename: str, kind: str, name: str, granted: bool) -> None:
    try:
        holder = _holder_object(kind, name)
    except (Group.DoesNotExist, get_user_model().DoesNotExist):
        if granted:
            raise
        return  # a removed holder whose account is gone: nothing to remove
    permission = Permission.objects.get(content_type__app_label="rollout", codename=codename)
    with recorded_by_caller():  # apply_access records access.granted / access.removed
        if granted:
            assign_perm(permission, holder, agent)
        else:
            remove_perm(permission, holder, agent)


def _set_escalation(agent: Agent, kind: str, name: str, granted: bool) -> None:
    route, _ = NotificationRoute.objects.get_or_create(agent=agent)
    holder = _holder_object(kind, name)
    if kind == USER:
        if granted:
            route.escalation_users.add(holder)
        else:
            route.escalation_users.remove(holder)
    elif granted:
        route.escalation_group = holder
        route.save(update_fields=["escalation_group"])
    elif route.escalation_group_id == holder.pk:
        route.escalation_group = None
        route.save(update_fields=["escalation_group"])


# --- reading, for pages: who holds what, and what a change would do ------------------------


@dataclass
class Holder:
    """One user or group holding rights on the agent."""

    key: str  # "user:alice"
    kind: str
    name: str
    rights: list[str] = field(default_factory=list)
    active: bool = True
    members: int | None = None  # a group's member count


@dataclass
class AccessOverview:
    per_agent: list[Holder]
    everywhere: list[dict]  # roles holding rights over every agent
    superusers: int


def overview(agent: Agent) -> AccessOverview:
    """Who holds which right on ``agent``: per-agent grants, and roles holding rights over
    every agent."""
    access = live_access(agent)
    holders: dict[str, Holder] = {}
    for right in RIGHTS:
        for key in access[right]:
            kind, name = split_principal(key)
            holders.setdefault(key, Holder(key=key, kind=kind, name=name)).rights.append(right)
    user_model = get_user_model()
    inactive = set(
        user_model.objects.filter(
            username__in=[h.name for h in holders.values() if h.kind == USER], is_active=False
        ).values_list("username", flat=True)
    )
    group_sizes = {
        group.name: group.user_set.count()
        for group in Group.objects.filter(
            name__in=[h.name for h in holders.values() if h.kind == GROUP]
        )
    }
    for holder in holders.values():
        holder.active = holder.name not in inactive if holder.kind == USER else True
        if holder.kind == GROUP:
            holder.members = group_sizes.get(holder.name, 0)
    everywhere = []
    codenames = {codename: right for right, codename in RIGHT_PERMISSIONS.items() if codename}
    for group in Group.objects.filter(
        permissions__content_type__app_label="rollout",
        permissions__codename__in=list(codenames),
    ).distinct():
        rights = group.permissions.filter(codename__in=list(codenames)).values_list(
            "codename", flat=True
        )
        everywhere.append(
            {
                "name": group.name,
                "rights": sorted(codenames[codename] for codename in rights),
                "members": group.user_set.count(),
            }
        )
    return AccessOverview(
        per_agent=sorted(holders.values(), key=lambda h: (h.kind, h.name)),
        everywhere=everywhere,
        superusers=user_model.objects.filter(is_superuser=True, is_active=True).count(),
    )


@dataclass
class AccessEffect:
    """What granting or removing one right of one holder would do, for the page that asks
    before saving."""

    right: str
    holder: str
    granted: bool
    classification: str  # tightening (applies at once) | loosening (a change request)
    changes_anything: bool
    people: list[dict]  # [{"name", "before": bool, "after": bool, "through": str}]
    notes: list[str] = field(default_factory=list)


def _effective(user: Any, right: str, agent: Agent) -> bool:
    if right == "escalation":
        return user in escalation_people(agent)
    return agent_perms.has_agent_perm(user, f"rollout.{RIGHT_PERMISSIONS[right]}", agent)


def describe_effect(agent: Agent, right: str, holder: str, granted: bool) -> AccessEffect:
    """Who would gain or lose ``right`` on ``agent`` if ``holder`` were granted it (or had
    it removed): the people concerned, whether they hold it anyway through a role or
    another grant, and whether the change applies at once or needs a second owner."""
    current = live_access(agent)
    has = bool(current.get(right, {}).get(holder))
    kind, name = split_principal(holder)
    user_model = get_user_model()
    if kind == USER:
        people = list(user_model.objects.filter(username=name))
    else:
        people = list(user_model.objects.filter(groups__name=name).order_by("username")[:50])
    effect = AccessEffect(
        right=right,
        holder=holder,
        granted=granted,
        classification=LOOSENING if granted else TIGHTENING,
        changes_anything=has != granted,
        people=[],
    )
    if not effect.changes_anything:
        effect.notes.append(
            f"{holder} {'already holds' if granted else 'does not hold'} this right on this agent."
        )
    for person in people:
        before = _effective(person, right, agent)
        if granted:
            after = person.is_active
        else:
            # Still held through a role, a superuser flag or another grant?
            after = before and _held_otherwise(person, right, agent, holder)
        effect.people.append(
            {
                "name": person.get_username(),
                "active": person.is_active,
                "before": before,
                "after": after,
            }
        )
    escalation_holders = set(current["escalation"])
    if right == "escalation" and granted and not escalation_holders:
        effect.notes.append(
            "Until now escalations went to whoever holds the critical-approval right; from "
            "now on they go to the escalation people only."
        )
    if right == "escalation" and not granted and escalation_holders == {holder}:
        effect.notes.append(
            "With no escalation people left, escalations go to whoever holds the "
            "critical-approval right."
        )
    if not people:
        effect.notes.append("Nobody is concerned right now (the group has no members).")
    return effect


def _held_otherwise(user: Any, right: str, agent: Agent, removed: str) -> bool:
    """Whether ``user`` keeps ``right`` on ``agent`` once ``removed`` loses it."""
    if right != "escalation":
        perm = f"rollout.{RIGHT_PERMISSIONS[right]}"
        if user.is_superuser or user.has_perm(perm):
            return True
    access = live_access(agent)[right]
    keys = {principal(USER, user.get_username())} | {
        principal(GROUP, group) for group in user.groups.values_list("name", flat=True)
    }
    return bool((keys & set(access)) - {removed})


def agent_rights_of_people(user_ids: list[int]) -> dict[int, list[tuple[str, list[str]]]]:
    """The per-agent rights each of these users holds directly, as {user id: [(agent slug,
    [rights])]} sorted by slug — the People page's column (``accounts.people``; registered in
    ``governance.apps``). One query for the grants, one for the slugs."""
    rights_of: dict[int, dict[str, list[str]]] = {}
    by_codename = {codename: right for right, codename in RIGHT_PERMISSIONS.items() if codename}
    slugs = dict(Agent.objects.values_list("pk", "slug"))
    for user_id, object_pk, codename in UserObjectPermission.objects.filter(
        user_id__in=user_ids,
        content_type=_agent_type(),
        permission__codename__in=list(by_codename),
    ).values_list("user_id", "object_pk", "permission__codename"):
        slug = slugs.get(int(object_pk))
        if slug:
            rights_of.setdefault(user_id, {}).setdefault(slug, []).append(by_codename[codename])
    return {
        user_id: sorted((slug, sorted(rights)) for slug, rights in per_agent.items())
        for user_id, per_agent in rights_of.items()
    }
