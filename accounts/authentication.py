"""Bearer-token authentication (DRF) of people's personal tokens (``alp_…``), and the API
views' answers for a token without the scope or a request without a fresh second factor."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from accounts.permissions import bind_token_scopes, token_scope_allows
from accounts.personal_tokens import (
    PERSONAL_TOKEN_PREFIX,
    PersonalTokenAuth,
    authenticate_personal_token,
    record_use,
)
from accounts.stepup import require_recent_second_factor
from core.api_errors import ApiError


class PersonalTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer alp_…``: the token's owner (a real user, who must be active)
    with ``request.auth`` a ``PersonalTokenAuth``. The user object is narrowed to the
    token's scopes for this request (``accounts.permissions.bind_token_scopes``), so every
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
    rights are narrowed by ``accounts.permissions`` in any case)."""
    if not token_scope_allows(request, scope):
        raise ApiError(403, "token_scope", f"This token's scopes do not include {scope}.")


def require_step_up(request: Any, purpose: str) -> None:
    """API views: ``accounts.stepup`` (``StepUpRequired`` is a ``Refused``: the API's one
    error mapping answers it ``403 step_up_required``)."""
    require_recent_second_factor(request, purpose=purpose)


class PersonalTokenScheme(OpenApiAuthenticationExtension):
    """Documents the personal token in the OpenAPI schema."""

    target_class = "accounts.authentication.PersonalTokenAuthentication"
    name = "personalToken"

    def get_security_definition(self, auto_schema: Any) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A person's API token (alp_…), created on the profile page; "
            "acts as its owner narrowed to its scopes.",
        }
