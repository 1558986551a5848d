"""Who may use the grant endpoints: tool services only (their token, ``als_…``)."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions


class IsToolService(permissions.BasePermission):
    message = "Only a tool service token may do this."

    def has_permission(self, request: Any, view: Any) -> bool:
        return getattr(request.user, "is_service", False) is True
