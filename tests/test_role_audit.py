"""Role and account changes are audit events whichever path makes them: the admin (as an
attacker with a superuser would), the shell, a management command, guardian's helpers.
Migrations and reference data are not events. The chain verifies afterwards."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.db import connections, transaction
from django.test import AsyncClient, Client
from guardian.shortcuts import assign_perm, remove_perm

from audit import verbs
from audit.models import AuditEvent
from audit.verification import verify_chain
from rollout.reference import ensure_reference_data
from tests import factories

ROLE_VERBS = (
    verbs.ACCOUNT_CREATED,
    verbs.ACCOUNT_DELETED,
    verbs.ACCOUNT_FLAGS_CHANGED,
    verbs.ROLE_GRANTED,
    verbs.ROLE_REVOKED,
    verbs.PERMISSION_GRANTED,
    verbs.PERMISSION_REVOKED,
)


def role_events(since: int = 0) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(pk__gt=since, verb__in=ROLE_VERBS).order_by("pk"))


def last_id() -> int:
    return AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def _change_form_data(client: Client, user_id: int, **changes: Any) -> dict[str, Any]:
    """What the admin's change form posts for ``user_id``, with ``changes``."""
    form = client.get(f"/admin/auth/user/{user_id}/change/").context["adminform"].form
    data: dict[str, Any] = {
        name: value
        for name, value in form.initial.items()
        if value is not None and name not in {"password", "date_joined", "last_login"}
    }
    data["groups"] = [group.pk for group in form.initial.get("groups") or []]
    data["user_permissions"] = [perm.pk for perm in form.initial.get("user_permissions") or []]
    data.update({"date_joined_0": "2026-01-01", "date_joined_1": "10:00:00"})
    for flag in ("is_active", "is_staff", "is_superuser"):
        if not data.get(flag):
            data.pop(flag, None)
    data.update(changes)
    return {name: value for name, value in data.items() if value is not False}


@pytest.mark.django_db
def test_admin__superuser_creates_account_and_makes_it_governance_owner__all_audited(
    reference_data: None,
) -> None:
    # Given a superuser signed in to the admin
    ada = factories.make_user("ada", superuser=True)
    admin = Client()
    admin.force_login(ada)
    start = last_id()

    # When they add an account, put it in governance_owner and make it staff, then superuser
    response = admin.post(
        "/admin/auth/user/add/",
        {
            "username": "mallory",
            "password1": "a-long-password-9",
            "password2": "a-long-password-9",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content[:500]
    mallory = get_user_model().objects.get(username="mallory")
    owners = Group.objects.get(name="governance_owner")
    response = admin.post(
        f"/admin/auth/user/{mallory.pk}/change/",
        _change_form_data(admin, mallory.pk, groups=[owners.pk], is_staff="on"),
    )
    assert response.status_code == 302, response.content[:800]
    response = admin.post(
        f"/admin/auth/user/{mallory.pk}/change/",
        _change_form_data(admin, mallory.pk, is_superuser="on"),
    )
    assert response.status_code == 302, response.content[:800]
    # ...and finally takes the role away and the staff flag off again
    response = admin.post(
        f"/admin/auth/user/{mallory.pk}/change/",
        _change_form_data(admin, mallory.pk, groups=[], is_staff=False),
    )
    assert response.status_code == 302, response.content[:800]

    # Then each step is an event by ada, naming mallory, the role and the flags
    events = role_events(start)
    assert [(e.verb, e.actor_type, e.actor) for e in events] == [
        (verbs.ACCOUNT_CREATED, "user", "ada"),
        (verbs.ACCOUNT_FLAGS_CHANGED, "user", "ada"),  # the account is saved first,
        (verbs.ROLE_GRANTED, "user", "ada"),  # then its roles
        (verbs.ACCOUNT_FLAGS_CHANGED, "user", "ada"),
        (verbs.ACCOUNT_FLAGS_CHANGED, "user", "ada"),
        (verbs.ROLE_REVOKED, "user", "ada"),
    ]
    created, staff, granted, superuser, unstaffed, revoked = events
    assert created.data["username"] == "mallory"
    assert created.target_type == "user" and created.target_id == str(mallory.pk)
    assert granted.data == {"username": "mallory", "role": "governance_owner"}
    assert staff.data["after"] == {"is_staff": True}
    assert superuser.data["before"] == {"is_superuser": False}
    assert superuser.data["after"] == {"is_superuser": True}
    assert unstaffed.data["after"] == {"is_staff": False}
    assert revoked.data == {"username": "mallory", "role": "governance_owner"}
    # Never the password or its hash.
    stored = get_user_model().objects.get(pk=mallory.pk).password
    for event in events:
        assert stored not in str(event.data)
        assert "password" not in str(event.data)
    assert verify_chain().ok


@pytest.mark.django_db(transaction=True)
async def test_admin_over_asgi__superuser_adds_account__event_by_that_superuser(
    reference_data: None,
) -> None:
    # Given a superuser signed in, their requests served by the async handler (as in
    # production, where the admin's sync views run in a worker thread)
    ada = await sync_to_async(factories.make_user)("ada", superuser=True)
    admin = AsyncClient()
    await admin.aforce_login(ada)
    start = await sync_to_async(last_id)()
    # When they add an account
    response = await admin.post(
        "/admin/auth/user/add/",
        {
            "username": "mallory",
            "password1": "a-long-password-9",
            "password2": "a-long-password-9",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302
    # Then the event names them, not the shell
    (created,) = await sync_to_async(role_events)(start)
    assert (created.verb, created.actor_type, created.actor) == (
        verbs.ACCOUNT_CREATED,
        "user",
        "ada",
    )
    await sync_to_async(connections.close_all)()  # the worker thread's connection


@pytest.mark.django_db
def test_admin__login_and_plain_saves__no_event(reference_data: None) -> None:
    # Given an account
    rita = factories.make_user("rita", groups=("reviewer",))
    start = last_id()
    # When they log in (last_login is saved) and their name changes in the shell
    assert Client().login(username="rita", password="pw-for-tests")
    rita.first_name = "Rita"
    rita.save()
    # Then nothing about roles or flags is recorded
    assert role_events(start) == []


@pytest.mark.django_db
def test_shell__groups_and_permissions_changed__events_by_system_shell(
    reference_data: None,
) -> None:
    # Given an account made in the shell
    start = last_id()
    user = get_user_model().objects.create_user("sam", password="pw-for-tests")
    reviewers = Group.objects.get(name="reviewer")
    owners = Group.objects.get(name="governance_owner")
    critical = Permission.objects.get(codename="critical_approve_agent")

    # When roles and permissions are changed from both sides of each relation
    user.groups.add(reviewers, owners)
    user.groups.add(reviewers)  # already a member: nothing happens
    user.groups.remove(Group.objects.get(name="auditor"))  # not a member: nothing happens
    owners.user_set.remove(user)
    user.user_permissions.add(critical)
    reviewers.permissions.add(critical)
    reviewers.user_set.clear()
    user.user_permissions.clear()
    reviewers.permissions.remove(critical)
    user.is_superuser = True
    user.save()
    user.delete()

    # Then each change is one event by system:shell
    events = role_events(start)
    assert {(e.actor_type, e.actor) for e in events} == {("system", "shell")}
    assert [(e.verb, e.data.get("role") or e.data.get("permission")) for e in events] == [
        (verbs.ACCOUNT_CREATED, None),
        (verbs.ROLE_GRANTED, "reviewer"),
        (verbs.ROLE_GRANTED, "governance_owner"),
        (verbs.ROLE_REVOKED, "governance_owner"),
        (verbs.PERMISSION_GRANTED, "rollout.critical_approve_agent"),
        (verbs.PERMISSION_GRANTED, "rollout.critical_approve_agent"),
        (verbs.ROLE_REVOKED, "reviewer"),
        (verbs.PERMISSION_REVOKED, "rollout.critical_approve_agent"),
        (verbs.PERMISSION_REVOKED, "rollout.critical_approve_agent"),
        (verbs.ACCOUNT_FLAGS_CHANGED, None),
        (verbs.ACCOUNT_DELETED, None),
    ]
    assert events[5].data["holder"] == "group:reviewer"
    assert events[5].target_type == "group"
    assert events[4].data["holder"] == "user:sam"
    assert verify_chain().ok


@pytest.mark.django_db
def test_rolled_back_change__no_event(reference_data: None) -> None:
    user = factories.make_user("sam")
    start = last_id()
    with pytest.raises(RuntimeError), transaction.atomic():
        user.groups.add(Group.objects.get(name="governance_owner"))
        raise RuntimeError("changed my mind")
    assert role_events(start) == []
    assert not user.groups.exists()


@pytest.mark.django_db
def test_management_command__creates_superuser__events_by_the_command(
    reference_data: None,
) -> None:
    start = last_id()
    call_command(
        "createsuperuser",
        username="root2",
        email="root2@example.com",
        interactive=False,
        stdout=StringIO(),
    )
    (created,) = role_events(start)
    assert (created.verb, created.actor_type, created.actor) == (
        verbs.ACCOUNT_CREATED,
        "system",
        "createsuperuser",
    )
    assert created.data["is_superuser"] is True
    assert created.data["username"] == "root2"


@pytest.mark.django_db
def test_guardian__assign_and_remove_object_permission__events_of_the_agent(
    support_agent: Any,
) -> None:
    # Given a person and a group
    rita = factories.make_user("rita")
    reviewers = Group.objects.get(name="reviewer")
    start = last_id()

    # When guardian's helpers grant and take away rights on the agent
    assign_perm("rollout.review_agent", rita, support_agent)
    assign_perm("rollout.govern_agent", reviewers, support_agent)
    remove_perm("rollout.review_agent", rita, support_agent)
    remove_perm("rollout.govern_agent", reviewers, support_agent)

    # Then each is an event in the agent's chain naming holder, permission and agent
    events = role_events(start)
    assert [(e.verb, e.data["holder"], e.data["permission"]) for e in events] == [
        (verbs.PERMISSION_GRANTED, "user:rita", "rollout.review_agent"),
        (verbs.PERMISSION_GRANTED, "group:reviewer", "rollout.govern_agent"),
        (verbs.PERMISSION_REVOKED, "user:rita", "rollout.review_agent"),
        (verbs.PERMISSION_REVOKED, "group:reviewer", "rollout.govern_agent"),
    ]
    for event in events:
        assert event.agent_slug == "support-assistant"
        assert event.data["agent"] == "support-assistant"
        assert (event.target_type, event.target_id) == ("agent", str(support_agent.pk))
        assert (event.actor_type, event.actor) == ("system", "shell")
    assert verify_chain().ok


@pytest.mark.django_db
def test_reference_data__seeded_again__no_event(reference_data: None) -> None:
    # Given the roles lose a permission (as if a release had added it)
    owners = Group.objects.get(name="governance_owner")
    owners.permissions.remove(Permission.objects.get(codename="govern_agent"))
    before = AuditEvent.objects.count()
    # When the reference data is ensured (as the data migration does), restoring it
    ensure_reference_data(django_apps)
    # Then nothing is recorded, though the permission is back
    assert AuditEvent.objects.count() == before
    assert owners.permissions.filter(codename="govern_agent").exists()


@pytest.mark.django_db
def test_migrate__run_again__no_event(reference_data: None) -> None:
    before = AuditEvent.objects.count()
    call_command("migrate", verbosity=0, stdout=StringIO())
    assert AuditEvent.objects.count() == before
