"""Request and response shapes of the governance API. Inputs refuse unknown fields; the
write path (``governance.actions``) validates proposed changes in full."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from core.serializers import StrictSerializer
from governance.actions import changes_of, current_approvals, proposal_as_input
from governance.models import ChangeRequest, ShadowLabel
from rollout.models import AgentToken, PolicyVersion
from rollout.policy_diff import diff_policies


class ChangesField(serializers.JSONField):
    """A proposed change: ``{"tier"?, "active"?, "rate_limit_per_minute"?, "tools"?}``."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if not isinstance(value, dict) or not value:
            raise serializers.ValidationError("A non-empty JSON object.")
        return value


CHANGES_HELP = (
    "What to change; every key optional: `tier` (a tier name), `active` (bool), "
    "`rate_limit_per_minute` (int), `access`, and `tools`: {tool: rule, or null to remove "
    "the rule}. A rule is {`effect`: read|draft|write, `rule`: allowed|forbidden|"
    "requires_approval, `base_risk`: low|medium|high|critical, `argument_limits`: "
    "[{field, op, value}], `blast_radius_from_arguments`: {dimension: argument path}, "
    "`rate_limit_per_minute`: int or null, `min_confidence`: a number 0..1 or null}; a rule "
    "given in part completes the tool's "
    "current rule. `blast_radius_from_arguments` maps the blast-radius dimensions `amount`, "
    "`records_affected` and `users_affected` to dotted paths into the call's arguments "
    '(e.g. {"amount": "amount", "records_affected": "batch.rows"}): the gate weighs the '
    "higher of these and what the agent declares. Adding a dimension tightens (applies at "
    "once); dropping one or changing its path loosens (a change request). `min_confidence` "
    "holds for a person a call the rule would let run when the agent's "
    "`rationale.confidence` (missing: 0) is below it (reason code `low_confidence`); adding "
    "or raising it tightens, lowering or removing it loosens. `environments`: "
    '{environment: {"tier": a tier name or null, "tools": {tool: rule or null}}} sets or '
    "clears per-environment overrides (a call in that environment is judged by the "
    "override's tier and rules instead of the agent's own); an override stricter than what "
    "the environment gets now tightens, a looser one (or clearing a stricter one) loosens."
)


class RegisterAgentInSerializer(StrictSerializer):
    slug = serializers.CharField(max_length=80)
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class ProposalInSerializer(StrictSerializer):
    changes = ChangesField(help_text=CHANGES_HELP)
    reason = serializers.CharField(max_length=300)
    required_approvals = serializers.IntegerField(min_value=1, max_value=3, required=False)


class RevertInSerializer(StrictSerializer):
    reason = serializers.CharField(
        max_length=300,
        required=False,
        allow_blank=True,
        help_text='Why; "Revert to version N" when left out.',
    )
    required_approvals = serializers.IntegerField(min_value=1, max_value=3, required=False)
    apply_tightening_now = serializers.BooleanField(
        required=False,
        default=False,
        help_text="For a mixed change: apply the parts that only tighten at once and propose "
        "the rest.",
    )


class EditChangeInSerializer(StrictSerializer):
    changes = ChangesField(help_text=CHANGES_HELP)
    reason = serializers.CharField(max_length=300, required=False)
    required_approvals = serializers.IntegerField(min_value=1, max_value=3, required=False)


class ApproveInSerializer(StrictSerializer):
    revision = serializers.IntegerField(min_value=1, required=False)
    comment = serializers.CharField(max_length=4000, required=False, allow_blank=True)


class CommentInSerializer(StrictSerializer):
    comment = serializers.CharField(max_length=4000, required=False, allow_blank=True)


class BacktestInSerializer(StrictSerializer):
    tier = serializers.CharField(max_length=40, required=False)
    changes = ChangesField(required=False, help_text=CHANGES_HELP)
    days = serializers.IntegerField(min_value=1, max_value=90, required=False, default=14)

    def validate(self, attrs: dict) -> dict:
        if "tier" in attrs and "changes" in attrs:
            raise serializers.ValidationError("Give a tier or changes, not both.")
        return attrs


class TokenInSerializer(StrictSerializer):
    name = serializers.CharField(max_length=80, required=False, default="default")
    environment = serializers.CharField(
        max_length=40,
        required=False,
        allow_blank=True,
        default="",
        help_text=(
            "Bind the token to one of the installation's environments (`AIRLOCK_ENVIRONMENTS`); "
            "empty: unbound. An unknown name is `400` `invalid_environment`."
        ),
    )


class ShadowLabelInSerializer(StrictSerializer):
    action_id = serializers.IntegerField(min_value=1)
    label = serializers.ChoiceField(choices=ShadowLabel.Label.values)


def agent_summary(agent: Any, *, pending: int = 0, switch_engaged: bool = False) -> dict:
    return {
        "slug": agent.slug,
        "name": agent.name,
        "tier": agent.tier.name,
        "active": agent.active,
        "rate_limit_per_minute": agent.rate_limit_per_minute,
        "policy_version": agent.current_policy.number if agent.current_policy else None,
        "pending": pending,
        "kill_switch_engaged": switch_engaged,
        "links": {"self": f"/api/v1/agents/{agent.slug}", "page": f"/agents/{agent.slug}"},
    }


class PolicyVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = PolicyVersion
        fields = ["number", "reason", "created_by", "created_at"]
        read_only_fields = fields


class PolicyVersionDetailSerializer(serializers.ModelSerializer):
    class Meta:
        model = PolicyVersion
        fields = ["number", "reason", "created_by", "created_at", "snapshot"]
        read_only_fields = fields


class AgentTokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = AgentToken
        fields = [
            "id",
            "name",
            "prefix",
            "environment",
            "created_by",
            "created_at",
            "revoked_at",
            "last_used_at",
        ]
        read_only_fields = fields


class ChangeApprovalSerializer(serializers.Serializer):
    approver = serializers.CharField(source="approver.username")
    revision = serializers.IntegerField()
    comment = serializers.CharField()
    voided = serializers.BooleanField()
    at = serializers.DateTimeField(source="created_at")


class ChangeRequestSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.slug")
    author = serializers.CharField(source="author.username")
    closed_by = serializers.CharField(source="closed_by.username", allow_null=True, default=None)
    applied_version = serializers.IntegerField(
        source="applied_version.number", allow_null=True, default=None
    )
    changes = serializers.SerializerMethodField()
    proposal = serializers.SerializerMethodField()
    diff = serializers.SerializerMethodField()
    approvals = serializers.SerializerMethodField()
    approvals_count = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = ChangeRequest
        fields = [
            "id",
            "agent",
            "author",
            "status",
            "classification",
            "reason",
            "revision",
            "required_approvals",
            "approvals_count",
            "approvals",
            "changes",
            "proposal",
            "diff",
            "created_at",
            "updated_at",
            "closed_at",
            "closed_by",
            "close_comment",
            "applied_version",
            "links",
        ]
        read_only_fields = fields

    def get_changes(self, change_request: ChangeRequest) -> list[dict]:
        return [change.as_dict() for change in changes_of(change_request)]

    def get_proposal(self, change_request: ChangeRequest) -> dict:
        return proposal_as_input(change_request.after)

    def get_diff(self, change_request: ChangeRequest) -> dict:
        return diff_policies(change_request.before, change_request.after)

    def get_approvals(self, change_request: ChangeRequest) -> list[dict]:
        return ChangeApprovalSerializer(
            change_request.approvals.select_related("approver"), many=True
        ).data

    def get_approvals_count(self, change_request: ChangeRequest) -> int:
        return len(current_approvals(change_request))

    def get_links(self, change_request: ChangeRequest) -> dict:
        base = f"/api/v1/changes/{change_request.pk}"
        return {
            "self": base,
            "approve": f"{base}/approve",
            "reject": f"{base}/reject",
            "withdraw": f"{base}/withdraw",
            "page": f"/changes/{change_request.pk}",
        }


def readiness_data(readiness: Any) -> dict:
    return {
        "agent": readiness.agent,
        "tier": readiness.tier,
        "next_tier": readiness.next_tier,
        "window_days": readiness.window_days,
        "since": readiness.since.isoformat(),
        "until": readiness.until.isoformat(),
        "ready": readiness.ready,
        "summary": readiness.summary,
        "reasons": readiness.reasons,
        "criteria": [
            {
                "key": c.key,
                "label": c.label,
                "required": c.required,
                "measured": c.measured,
                "met": c.met,
                "detail": c.detail,
            }
            for c in readiness.criteria
        ],
        "counts": readiness.counts,
        "low_confidence": (
            readiness.low_confidence.as_dict() if readiness.low_confidence is not None else None
        ),
    }


def backtest_data(result: Any) -> dict:
    return {
        "days": result.days,
        "since": result.since.isoformat(),
        "until": result.until.isoformat(),
        "replayed": result.replayed,
        "would_run_without_human": result.would_run_without_human,
        "newly_without_human": result.newly_without_human,
        "changed": result.changed,
        "by_outcome": result.by_outcome,
        "truncated": result.truncated,
        "actions": [
            {
                "id": row.action_id,
                "created_at": row.created_at.isoformat(),
                "tool": row.tool,
                "risk": row.risk,
                "recorded_outcome": row.recorded_outcome,
                "recorded_status": row.recorded_status,
                "proposed_outcome": row.proposed_outcome,
                "proposed_reason_code": row.proposed_reason_code,
                "newly_without_human": row.newly_without_human,
            }
            for row in result.rows
        ],
    }
