"""Bearer authentication of tool services' tokens (``als_…``), for the grant endpoints only
(set per view: a tool service is neither a person nor an agent and reaches nothing else;
who may call what is ``grants.permissions``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from core.api import ResilientThrottle
from grants.models import ServiceToken
from grants.services import SERVICE_TOKEN_PREFIX, authenticate_service_token


class ServicePrincipal:
    """``request.user`` for a tool service: holds no permission, is no person or agent."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    is_agent = False
    is_service = True
    pk = None

    def __init__(self, token: ServiceToken) -> None:
        self.token = token

    def get_username(self) -> str:
        return f"service:{self.token.name}"

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False

    def __str__(self) -> str:
        return self.get_username()


class ServiceTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[ServicePrincipal, ServiceToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        parts = header.split()
        if not parts or parts[0].lower() != "bearer":
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        if not parts[1].startswith(SERVICE_TOKEN_PREFIX):
            return None
        record = authenticate_service_token(parts[1])
        if record is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked token.")
        return ServicePrincipal(record), record

    def authenticate_header(self, request: Any) -> str:
        return self.keyword


class ServiceTokenScheme(OpenApiAuthenticationExtension):
    """Documents the tool service bearer token in the OpenAPI schema."""

    target_class = "grants.authentication.ServiceTokenAuthentication"
    name = "serviceToken"

    def get_security_definition(self, auto_schema: Any) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A tool service's token (manage.py service_token issue NAME).",
        }


class ServiceRateThrottle(ResilientThrottle):
    """Each tool service token's own flood limit (``SERVICE_HTTP_RATE``)."""

    scope = "service"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        user = request.user
        if getattr(user, "is_service", False):
            return f"throttle_service_{user.token.pk}"
        return None
