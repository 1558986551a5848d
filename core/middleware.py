"""Request-level guards."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


class RequestBodyLimitMiddleware:
    """Refuse bodies over ``MAX_REQUEST_BODY_BYTES`` with a JSON 413 before anything reads
    them (Django's own limit answers an HTML 400). Sync- and async-capable, so an ASGI
    request is not moved to a worker thread and back just for this check."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    @staticmethod
    def _too_large(request: HttpRequest) -> HttpResponse | None:
        limit = settings.MAX_REQUEST_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            return JsonResponse(
                {"code": "payload_too_large", "detail": f"Request body exceeds {limit} bytes."},
                status=413,
            )
        return None

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self.__acall__(request)
        return self._too_large(request) or self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        return self._too_large(request) or await self.get_response(request)
