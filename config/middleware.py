from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


class RequestBodyLimitMiddleware:
    """Refuse bodies over ``MAX_REQUEST_BODY_BYTES`` with a JSON 413 before anything reads
    them (Django's own limit answers an HTML 400)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
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
        return self.get_response(request)
