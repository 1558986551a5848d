"""Agents' calls to the agent API take the short way through the middleware.

A request to ``/api/v1/`` whose ``Authorization`` header is exactly ``Bearer alk_…`` (an
agent token: the only credential ``rollout.authentication.AgentTokenAuthentication`` accepts
there) is an *agent call*. Agents have no session, no cookies and no pages, so the
middlewares that serve people — the session, CSRF, the signed-in user, messages, htmx and
the idle-session timeout — step aside for it (the ``PeopleOnly…`` classes below, named in
``MIDDLEWARE`` in their place); everything else runs as for anyone: the security headers
(nosniff, referrer policy, HSTS, ``X-Frame-Options``, the Content-Security-Policy), the body
limit, the audit actor and the refusal audit. Measured with ``benchmarks/gate.py``: what
the skipped middlewares cost an agent's call (benchmarks/README.md, issue 22).

Why this cannot open a way around CSRF: without the session and authentication
middlewares nothing on this path can authenticate a person — DRF's ``SessionAuthentication``
finds no user, and a personal token (``alp_…``) is not an agent call — so a request taken
this way is the agent's, by its token, or nobody's (401). A browser cannot be made to send
a bearer header to another site without a CORS preflight the API never answers. A request
with a session cookie *and* an agent token is the agent's (as before: the token's
authenticator comes first). Anything else — a malformed header, another scheme, a personal
token, any page — takes the whole chain."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django_htmx.middleware import HtmxMiddleware

from accounts.login_protection import SessionIdleTimeoutMiddleware
from rollout.tokens import TOKEN_PREFIX

AGENT_API_PREFIX = "/api/v1/"
_MARK = "_airlock_agent_call"


def is_agent_call(request: HttpRequest) -> bool:
    """Whether ``request`` is an agent's call to the agent API (decided once per request)."""
    known = request.__dict__.get(_MARK)
    if known is None:
        known = _looks_like_agent_call(request)
        setattr(request, _MARK, known)
    return known


def _looks_like_agent_call(request: HttpRequest) -> bool:
    # path_info: the path the URLconf resolves (without a deployment's script prefix).
    if not request.path_info.startswith(AGENT_API_PREFIX):
        return False
    # As AgentTokenAuthentication reads it: the scheme in any case, exactly one token.
    parts = request.META.get("HTTP_AUTHORIZATION", "").split()
    return len(parts) == 2 and parts[0].lower() == "bearer" and parts[1].startswith(TOKEN_PREFIX)


class _PeopleOnly:
    """Mixin: the middleware does nothing for an agent call (sync or async chain alike)."""

    get_response: Callable[[HttpRequest], Any]

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if is_agent_call(request):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc]


class PeopleOnlySessionMiddleware(_PeopleOnly, SessionMiddleware):
    """Sessions, not for agent calls: no session read, no ``Set-Cookie``, no ``Vary: Cookie``."""


class PeopleOnlyCsrfViewMiddleware(_PeopleOnly, CsrfViewMiddleware):
    """CSRF, not for agent calls (their views are DRF's, exempt from this middleware and
    checked by ``SessionAuthentication`` instead, which an agent call never reaches)."""

    def process_view(
        self, request: HttpRequest, callback: Any, callback_args: Any, callback_kwargs: Any
    ) -> HttpResponse | None:
        if is_agent_call(request):
            return None
        return super().process_view(request, callback, callback_args, callback_kwargs)


class PeopleOnlyAuthenticationMiddleware(_PeopleOnly, AuthenticationMiddleware):
    """The signed-in person, not for agent calls (DRF sets the agent as ``request.user``)."""


class PeopleOnlyMessageMiddleware(_PeopleOnly, MessageMiddleware):
    """Flash messages, for pages."""


class PeopleOnlyHtmxMiddleware(_PeopleOnly, HtmxMiddleware):
    """``request.htmx``, for pages."""


class PeopleOnlySessionIdleTimeoutMiddleware(_PeopleOnly, SessionIdleTimeoutMiddleware):
    """The idle-session timeout, for sessions (still sync-only and innermost: see its base)."""
