"""The one "active person" check (core.people.is_active_person)."""

from __future__ import annotations

from types import SimpleNamespace

from django.contrib.auth.models import AnonymousUser

from core.people import is_active_person, is_agent


def _user(**overrides: object) -> SimpleNamespace:
    return SimpleNamespace(**{"is_authenticated": True, "is_active": True, **overrides})


def test_is_active_person__active_user__is_a_person():
    assert is_active_person(_user())
    assert not is_agent(_user())


def test_is_active_person__disabled_user__is_nobody():
    assert not is_active_person(_user(is_active=False))


def test_is_active_person__anonymous_or_missing__is_nobody():
    assert not is_active_person(AnonymousUser())
    assert not is_active_person(None)


def test_is_active_person__agent_principal__is_not_a_person():
    # Given an agent's principal: authenticated and active, but an agent
    agent = _user(is_agent=True)
    # Then it is an agent, never a person
    assert is_agent(agent)
    assert not is_active_person(agent)
