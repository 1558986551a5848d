"""The kill-switch API's shapes (``incidents.api``)."""

from __future__ import annotations

from rest_framework import serializers

from core.serializers import StrictSerializer


class KillSwitchInSerializer(StrictSerializer):
    scope = serializers.ChoiceField(choices=["global", "agent", "tool"])
    target = serializers.CharField(max_length=120, required=False, allow_blank=True)
    reason = serializers.CharField(max_length=2000)
    environment = serializers.CharField(
        max_length=40,
        required=False,
        allow_blank=True,
        default="",
        help_text=(
            "Stop only calls and actions in this environment (one of `AIRLOCK_ENVIRONMENTS`); "
            "empty: every environment. An unknown name is 400 `invalid_environment`."
        ),
    )
    allow_unknown_tool = serializers.BooleanField(
        required=False,
        default=False,
        help_text=(
            "Tool scope only: engage even though no agent's tool rule names the target. "
            "Without it such a target is refused with 400 unknown_target (so is an agent "
            "scope target that is not an agent, always)."
        ),
    )


class KillSwitchSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    scope = serializers.CharField()
    target = serializers.CharField()
    environment = serializers.CharField(help_text="Empty: every environment.")
    reason = serializers.CharField()
    engaged = serializers.BooleanField()
    engaged_by = serializers.CharField()
    engaged_at = serializers.DateTimeField()
    released_by = serializers.CharField()
    released_at = serializers.DateTimeField(allow_null=True)
    release_reason = serializers.CharField()
    is_drill = serializers.BooleanField()
    trip = serializers.JSONField()
