"""Bearer-token authentication (DRF): agents' tokens (``alk_…``) and people's personal
tokens (``alp_…``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from config.api_errors import ApiError
from rollout.actions import authenticate_agent_token
from rollout.models import Agent, AgentToken
from rollout.permissions import bind_token_scopes, token_scope_allows
from rollout.personal_tokens import (
    PERSONAL_TOKEN_PREFIX,
    PersonalTokenAuth,
    authenticate_personal_token,
    record_use,
)
from rollout.stepup import require_recent_second_factor
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


class PersonalTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer alp_…``: the token's owner (a real user, who must be active)
    with ``request.auth`` a ``PersonalTokenAuth``. The user object is narrowed to the
    token's scopes for this request (``rollout.permissions.bind_token_scopes``), so every
    permission check sees only what the scopes allow. Each use is audited with the token's
    name. No CSRF: the credential is a header a browser never sends by itself."""

    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[Any, PersonalTokenAuth] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            return None
        if not parts[1].startswith(PERSONAL_TOKEN_PREFIX):
            return None
        record = authenticate_personal_token(parts[1])
        if record is None:
            raise exceptions.AuthenticationFailed("Unknown, expired or revoked token.")
        record_use(record, method=request.method, path=request.path)
        auth = PersonalTokenAuth(token=record, airlock_token_scopes=frozenset(record.scopes))
        return bind_token_scopes(record.user, record.scopes), auth

    def authenticate_header(self, request: Any) -> str:
        return self.keyword


def require_token_scope(request: Any, scope: str) -> None:
    """API views: refuse a personal token without ``scope`` with a clear code (its owner's
    rights are narrowed by ``rollout.permissions`` in any case)."""
    if not token_scope_allows(request, scope):
        raise ApiError(403, "token_scope", f"This token's scopes do not include {scope}.")


def require_step_up(request: Any, purpose: str) -> None:
    """API views: ``rollout.stepup`` (a ``403 step_up_required`` answer)."""
    require_recent_second_factor(request, purpose=purpose)


def is_agent(user: Any) -> bool:
    return bool(getattr(user, "is_agent", False))


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


class PersonalTokenScheme(OpenApiAuthenticationExtension):
    """Documents the personal token in the OpenAPI schema."""

    target_class = "rollout.authentication.PersonalTokenAuthentication"
    name = "personalToken"

    def get_security_definition(self, auto_schema: Any) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A person's API token (alp_…), created on the profile page; "
            "acts as its owner narrowed to its scopes.",
        }
