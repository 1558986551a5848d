"""Bearer-token authentication (DRF) of agents' tokens (``alk_…``); people's personal
tokens (``alp_…``) are ``accounts.authentication``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from rollout.actions import authenticate_agent_token
from rollout.models import Agent, AgentToken
from rollout.tokens import TOKEN_PREFIX


class AgentPrincipal:
    """``request.user`` for a request made with an agent token. Not a person: it holds no
    Django permission and can never decide, govern or read the audit log."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    is_agent = True
    pk = None

    def __init__(self, agent: Agent, token: AgentToken) -> None:
        self.agent = agent
        self.token = token

    def get_username(self) -> str:
        return f"agent:{self.agent.slug}"

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False

    def __str__(self) -> str:
        return self.get_username()


class AgentTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[AgentPrincipal, AgentToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if parts[0].lower() != "bearer":
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        token = parts[1]
        if not token.startswith(TOKEN_PREFIX):
            return None
        record = authenticate_agent_token(token)
        if record is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked token.")
        return AgentPrincipal(record.agent, record), record

    def authenticate_header(self, request: Any) -> str:
        return self.keyword


class AgentTokenScheme(OpenApiAuthenticationExtension):
    """Documents the agent bearer token in the OpenAPI schema."""

    target_class = "rollout.authentication.AgentTokenAuthentication"
    name = "agentToken"

    def get_security_definition(self, auto_schema: Any) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A per-agent token (manage.py agent_token SLUG).",
        }
