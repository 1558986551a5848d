"""Who is calling: an agent's token or an active person. Every app's API views ask here."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from core.people import is_active_person, is_agent


class IsAgent(BasePermission):
    message = "This endpoint is for agent tokens."

    def has_permission(self, request: Any, view: Any) -> bool:
        return is_agent(request.user)


class IsPerson(BasePermission):
    message = "This endpoint is for people, not agents."

    def has_permission(self, request: Any, view: Any) -> bool:
        return is_active_person(request.user)
