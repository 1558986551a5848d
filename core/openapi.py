"""The OpenAPI schema's view of errors: every operation documents the error answers it can
give, with the one error body of ``core.api_errors``."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class ErrorSerializer(serializers.Serializer):
    """The body of every API error (documented in the OpenAPI schema)."""

    code = serializers.CharField(help_text="Stable, lower-case; clients branch on it.")
    detail = serializers.CharField(help_text="For people.")
    fields = serializers.DictField(
        required=False, help_text="Field name -> its problems (400 only)."
    )


ERROR_DESCRIPTIONS = {
    400: "The request is not valid (`fields` says where), or its body is not JSON.",
    401: "No credentials, or unknown ones.",
    403: "The credentials may not do this (or a fresh second factor is needed).",
    404: "No such resource, or not one these credentials may see.",
    409: "The resource's state does not allow this (now).",
    413: "The body is larger than the server accepts.",
    415: "The body is not JSON.",
    429: "Too many requests; retry later.",
    503: "The database is unreachable; nothing was done. Retry later.",
}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class AirlockAutoSchema(AutoSchema):
    """drf-spectacular's schema, plus the error answers each operation can give (all with
    ``ErrorSerializer``'s body), so clients and contract tests know them. A view's own
    ``@extend_schema(responses=…)`` wins for a status it names."""

    def error_statuses(self) -> list[int]:
        method = self.method.upper()
        statuses = [503]  # any operation reads the database
        if any(not isinstance(permission, AllowAny) for permission in self.view.get_permissions()):
            statuses += [401, 403]
        if method in UNSAFE_METHODS:
            statuses += [400, 409, 413, 415]
        elif any(parameter["in"] != "path" for parameter in self._get_parameters()):
            statuses.append(400)
        if "{" in self.path:
            statuses.append(404)
        if self.view.get_throttles():
            statuses.append(429)
        return sorted(set(statuses))

    def _get_response_bodies(self, direction: str = "response") -> dict:
        responses = super()._get_response_bodies(direction)
        for code in self.error_statuses():
            if str(code) not in responses:
                response = self._get_response_for_code(ErrorSerializer, str(code))
                response["description"] = ERROR_DESCRIPTIONS[code]
                responses[str(code)] = response
        return responses
