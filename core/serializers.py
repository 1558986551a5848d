"""The API's strict request shapes: undeclared fields are refused, and the OpenAPI schema
says so."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not declare."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class NoFieldsSerializer(StrictSerializer):
    """The body of an operation that takes none: absent or ``{}``; any field is refused by
    name."""


class ReasonSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=2000)


class StrictSerializerSchema(OpenApiSerializerExtension):
    """The OpenAPI schema says what ``StrictSerializer`` does: undeclared fields are refused
    (``additionalProperties: false``), so clients and contract tests do not send them."""

    target_class = "core.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        return schema
