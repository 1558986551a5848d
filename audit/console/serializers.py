"""Shapes of the read-only audit API (and its OpenAPI documentation)."""

from __future__ import annotations

from rest_framework import serializers

from audit.chain import EVENT_COLUMNS, timestamp_text
from audit.models import AuditEvent, AuditVerification
from audit.search import describe, target_url


class AuditEventSerializer(serializers.ModelSerializer):
    """One event exactly as chained; ``created_at`` is the string that was hashed, so an
    event can be re-hashed from this representation."""

    created_at = serializers.SerializerMethodField()
    description = serializers.SerializerMethodField()
    target_url = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = [*EVENT_COLUMNS, "description", "target_url"]

    def get_created_at(self, event: AuditEvent) -> str:
        return timestamp_text(event.created_at)

    def get_description(self, event: AuditEvent) -> str:
        return describe(event)

    def get_target_url(self, event: AuditEvent) -> str:
        return target_url(event)


class AuditEventPageSerializer(serializers.Serializer):
    results = AuditEventSerializer(many=True)
    older = serializers.CharField(
        allow_null=True, help_text="URL of the next older page (keyset: ?before=<id>)."
    )
    newer = serializers.CharField(
        allow_null=True, help_text="URL of the next newer page (keyset: ?after=<id>)."
    )


class VerificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditVerification
        fields = [
            "kind",
            "started_at",
            "finished_at",
            "ok",
            "events_checked",
            "last_event_id",
            "first_broken_id",
            "problem",
            "checkpoint_lines",
            "triggered_by",
        ]


class CheckpointSerializer(serializers.Serializer):
    at = serializers.CharField()
    event_id = serializers.IntegerField()
    partition = serializers.CharField()
    seq = serializers.IntegerField()
    hash = serializers.CharField()
    partitions = serializers.IntegerField()
    key_id = serializers.CharField()
    signature = serializers.CharField()


class StatusSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["never", "ok", "broken"])
    latest = VerificationSerializer(allow_null=True)
    last_ok = VerificationSerializer(allow_null=True)
    checkpoint = CheckpointSerializer(allow_null=True)
    checkpoint_problem = serializers.CharField(allow_blank=True)
    head_id = serializers.IntegerField(
        allow_null=True, help_text="The newest event of the log now (null while it is empty)."
    )
    unverified_events = serializers.IntegerField(
        help_text="Events after the latest run's last verified one: not yet verified."
    )
    running = serializers.BooleanField(
        help_text='Whether a verification started with "Verify now" is queued or running.'
    )


class TraceStepSerializer(serializers.Serializer):
    at = serializers.CharField()
    actor = serializers.CharField()
    actor_type = serializers.CharField()
    verb = serializers.CharField()
    stage = serializers.CharField()
    description = serializers.CharField()
    details = serializers.DictField()
    seconds_since_previous = serializers.FloatField(allow_null=True)
    event_id = serializers.IntegerField(allow_null=True)
    link = serializers.CharField(allow_blank=True)


class TraceSerializer(serializers.Serializer):
    action_id = serializers.IntegerField()
    steps = TraceStepSerializer(many=True)


class GateAnswerSerializer(serializers.Serializer):
    outcome = serializers.CharField()
    reason_code = serializers.CharField()
    reasons = serializers.ListField(child=serializers.CharField())
    risk = serializers.CharField()
    required_approvals = serializers.IntegerField()
    needs_critical_approver = serializers.BooleanField()
    policy_version = serializers.IntegerField(allow_null=True)


class ReplaySerializer(serializers.Serializer):
    action_id = serializers.IntegerField()
    available = serializers.BooleanField()
    unavailable_reason = serializers.CharField(allow_blank=True)
    recorded = GateAnswerSerializer()
    with_recorded_policy = GateAnswerSerializer(allow_null=True)
    with_current_policy = GateAnswerSerializer(allow_null=True)
    assumptions = serializers.ListField(child=serializers.CharField())
    policy_changes = serializers.ListField(child=serializers.CharField())


class VerbSerializer(serializers.Serializer):
    name = serializers.CharField()
    template = serializers.CharField()
