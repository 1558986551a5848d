"""Where refused requests meet the audit log: one middleware for the API and the pages.

Every refusal by a signed-in person or an agent token is audited (``access.refused``, see
``audit.refusals`` for which ones and how floods are summarised), whichever view refused
it, by looking at the answer once it is made:

- the API (DRF): a ``403`` answer, with the code of its JSON body (``core.api_errors``
  builds every API error: any ``Refused`` a view lets propagate, permission classes and
  token-scope checks alike);
- pages: a ``PermissionDenied`` raised by a view (the code of the ``Refused`` it was raised
  from, when there was one) answered by the ``403`` page, and any refusal a view answers
  itself (a decision card, a redirect with a message) after telling this middleware which
  refusal it answers (``core.errors.answer_refusal``, which calls ``note_refusal``);
- both: a ``404`` on another agent's action, agent or change request that exists
  (``not_visible``): the caller is told nothing, the audit log is.

The agent a refusal concerns comes from the URL (an action's agent, a change request's,
the ``slug`` of an agent page); when the URL names none and the caller is an agent, it is
that agent. Anonymous requests (401, the login page) and CSRF rejections (a forged request,
not its session owner's) are not recorded.

This module is the composition root's (like ``config.urls``): it knows the apps' models to
resolve an agent; ``audit.refusals`` does not."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from rest_framework.response import Response as ApiResponse

from approvals.models import Action
from approvals.permissions import can_view_action
from audit.chain import Actor
from audit.refusals import NOTED_REFUSAL, is_recorded, record_refusal
from core.people import is_agent
from governance.models import ChangeRequest
from governance.selectors import change_request_visible_to
from rollout.models import Agent, KillSwitch
from rollout.selectors import agent_visible_to

logger = logging.getLogger(__name__)

# Answers that may be a refusal worth a look; anything else costs nothing more.
_LOOKED_AT = frozenset({403, 404})


class RefusalAuditMiddleware:
    """Audits refused requests after their answer is made (``access.refused``). Sync- and
    async-capable: an ASGI request that is not refused pays one attribute check."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self.__acall__(request)
        response = self.get_response(request)
        if _worth_a_look(request, response):
            audit_refusal(request, response)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        response = await self.get_response(request)
        if _worth_a_look(request, response):
            await sync_to_async(audit_refusal)(request, response)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        """Remember the ``PermissionDenied`` a page view raised (Django answers it with the
        403 page): its cause names the refusal."""
        if isinstance(exception, PermissionDenied) and not hasattr(request, NOTED_REFUSAL):
            setattr(request, NOTED_REFUSAL, exception)


def _worth_a_look(request: HttpRequest, response: HttpResponse) -> bool:
    return response.status_code in _LOOKED_AT or hasattr(request, NOTED_REFUSAL)


def audit_refusal(request: HttpRequest, response: HttpResponse) -> None:
    """Record the refusal ``response`` answers to ``request``, if it is one to record.
    Never raises: like ``record_refusal``, a failure is logged at ERROR and the answer
    stands."""
    try:
        _audit_refusal(request, response)
    except Exception:
        logger.exception("could not audit the refusal of %s %s", request.method, request.path)


def _audit_refusal(request: HttpRequest, response: HttpResponse) -> None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return  # no one to name (and DRF answers 401 here)
    refusal = _refusal(request, response)
    if refusal is None:
        return
    code, status = refusal
    kwargs = request.resolver_match.kwargs if request.resolver_match else {}
    concerned = _concerned(user, kwargs, check_visible=status == 404)
    if status == 404:
        if concerned is None or concerned.visible:
            return  # a plain "no such thing", or a 404 about something else
        code = "not_visible"
    if not is_recorded(code, status):
        return
    if concerned is None:
        view_name = request.resolver_match.view_name if request.resolver_match else ""
        concerned = _Concerned("endpoint", view_name or request.path, "", True)
    agent_slug = concerned.agent_slug or (user.agent.slug if is_agent(user) else "")
    record_refusal(
        actor=Actor.agent(user.agent) if is_agent(user) else Actor.user(user),
        code=code,
        agent_slug=agent_slug,
        target_type=concerned.target_type,
        target_id=concerned.target_id,
        channel="api" if isinstance(response, ApiResponse) else "page",
        details={"method": request.method, "path": request.path[:300]},
    )


def _refusal(request: HttpRequest, response: HttpResponse) -> tuple[str, int] | None:
    """(code, status) of the refusal ``response`` answers, or None when it answers none
    (or a CSRF rejection)."""
    noted = getattr(request, NOTED_REFUSAL, None)
    if isinstance(response, ApiResponse):
        data = response.data if isinstance(response.data, dict) else {}
        if str(data.get("detail", "")).startswith("CSRF Failed"):
            return None  # DRF's session CSRF check
        return str(data.get("code") or ""), response.status_code
    if noted is not None:
        cause = _coded(noted)
        if cause is not None:
            return str(cause.code), int(getattr(cause, "status", response.status_code))
        return "permission_denied", 403
    if response.status_code == 403:
        if not getattr(request, "csrf_processing_done", False):
            return None  # Django's CSRF check refused it before any view ran
        return "permission_denied", 403
    return "not_found", response.status_code


def _coded(exc: BaseException) -> Any:
    """``exc`` or the exception it was raised from, whichever carries a ``code``."""
    seen = 0
    while exc is not None and seen < 5:
        if getattr(exc, "code", None) and isinstance(exc.code, str):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


class _Concerned:
    """What the URL names: its target, the agent it belongs to, and whether the caller
    may see it."""

    __slots__ = ("agent_slug", "target_id", "target_type", "visible")

    def __init__(self, target_type: str, target_id: Any, agent_slug: str, visible: bool) -> None:
        self.target_type = target_type
        self.target_id = target_id
        self.agent_slug = agent_slug
        self.visible = visible


def _concerned(user: Any, kwargs: dict, *, check_visible: bool) -> _Concerned | None:
    """The object the URL names, or None. Whether the caller may see it is asked only for a
    404 (``check_visible``); a 403 costs one lookup of the agent."""
    if (action_id := kwargs.get("action_id")) is not None:
        action = Action.objects.select_related("agent").filter(pk=action_id).first()
        if action is None:
            return None
        visible = not check_visible or can_view_action(user, action)
        return _Concerned("action", action_id, action.agent.slug, visible)
    if (change_id := kwargs.get("change_id")) is not None:
        slug = (
            ChangeRequest.objects.filter(pk=change_id).values_list("agent__slug", flat=True).first()
        )
        if slug is None:
            return None
        visible = not check_visible or (
            not is_agent(user) and change_request_visible_to(user, change_id) is not None
        )
        return _Concerned("change_request", change_id, slug, visible)
    if (switch_id := kwargs.get("switch_id")) is not None:
        switch = KillSwitch.objects.filter(pk=switch_id).first()
        if switch is None:
            return None
        slug = switch.target if switch.scope == KillSwitch.Scope.AGENT else ""
        return _Concerned("kill_switch", switch_id, slug, True)  # 404s here hide no agent
    if (slug := kwargs.get("slug")) is not None:
        if not Agent.objects.filter(slug=slug).exists():
            return None  # a made-up slug must not open an audit partition
        visible = not check_visible or (
            not is_agent(user) and agent_visible_to(user, slug) is not None
        )
        return _Concerned("agent", slug, slug, visible)
    return None
