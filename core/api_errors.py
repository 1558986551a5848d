"""Every API error is JSON ``{code, detail, fields?}`` with a stable lower-case code.

A write path's refusal (``core.errors.Refused``: ``approvals.actions.ActionRefused``,
``governance.actions.GovernanceRefused``, ``accounts.stepup.StepUpRequired`` …) is answered
here for every API view, with its own status: views let it propagate."""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from core.errors import Refused, refusal_body


class ApiError(Refused):
    """A refusal raised by an API view itself (status first, as the view answers it)."""

    def __init__(
        self, status_code: int, code: str, detail: str, fields: dict | None = None
    ) -> None:
        super().__init__(code, detail, status_code, fields)


logger = logging.getLogger(__name__)

DEFAULT_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "throttled",
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, OperationalError | InterfaceError):
        # Fail closed and say so: an agent must never read a database outage as an answer.
        logger.error("database unavailable during %s", context.get("view"), exc_info=exc)
        return Response(
            {
                "code": "unavailable",
                "detail": "Airlock cannot reach its database; nothing was decided. Retry later.",
            },
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    # Imported here, not at the top: the settings' authentication classes import this module
    # (their ApiError), and DRF imports them while rest_framework.views is still loading.
    from rest_framework.views import exception_handler as drf_exception_handler
    from rest_framework.views import set_rollback

    if isinstance(exc, Refused):
        set_rollback()  # as DRF does for its own exceptions
        return Response(refusal_body(exc), status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        body = {
            "code": "invalid",
            "detail": "The request is not valid.",
            "fields": _flatten(exc.detail),
        }
    elif isinstance(exc, exceptions.ParseError):
        # core.parsers: malformed JSON, or refused text (its own code, with the fields).
        body = {"code": getattr(exc, "error_code", "malformed_json"), "detail": str(exc.detail)}
        if getattr(exc, "fields", None):
            body["fields"] = exc.fields
    else:
        code = DEFAULT_CODES.get(response.status_code, "error")
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            code = "not_authenticated"
            response.status_code = status.HTTP_401_UNAUTHORIZED
        body = {"code": code, "detail": str(getattr(exc, "detail", exc))}
    response.data = body
    return response


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return [str(item) for item in detail]
        return [_flatten(item) for item in detail]
    return str(detail)
