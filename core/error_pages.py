"""The 403 and 404 pages: inside the layout, saying what to do next.

``config.urls`` names these as ``handler403``/``handler404``. Django answers a view's
``Http404`` with its debug page when ``DEBUG`` is on; ``NotFoundPageMiddleware`` answers it
(and a URL no route matches) with the same page in both modes, so what a person sees for an
ordinary "not found" never depends on the deployment's debug switch. API paths keep their
JSON errors (``core.api_errors``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin

API_PREFIX = "/api/"


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: JSON under ``/api/`` (as every other API error), else the 404 page."""
    if _is_api(request):
        return JsonResponse({"code": "not_found", "detail": "No such resource."}, status=404)
    return render(request, "404.html", {"request_path": request.path}, status=404)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler403``: the 403 page, with the refusal's own sentence when it has one."""
    if _is_api(request):
        return JsonResponse(
            {"code": "permission_denied", "detail": "You may not do this."}, status=403
        )
    reason = str(exception) if exception is not None and str(exception) else ""
    return render(request, "403.html", {"reason": reason}, status=403)


class NotFoundPageMiddleware(MiddlewareMixin):
    """The 404 page for pages whatever ``DEBUG`` says: a view's ``Http404`` and, with
    ``DEBUG`` on, a URL no route matches (Django's debug page lists every route; under
    ``/api/`` the JSON error instead)."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> Any:
        if isinstance(exception, Http404) and not _is_api(request):
            return not_found(request, exception)
        return None

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if (
            settings.DEBUG
            and response.status_code == 404
            and getattr(request, "resolver_match", None) is None
        ):
            return not_found(request)
        return response
