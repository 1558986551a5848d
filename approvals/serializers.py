"""Request and response shapes of the agent API. Every agent-supplied field is bounded;
unknown fields are refused, so server-owned fields (status, risk, payload_hash, …) can
never be written by a client."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from drf_spectacular.extensions import (
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from approvals import rules
from approvals.masking import is_own_agent, masked_arguments, masked_for
from approvals.models import Action, Decision, Report
from approvals.states import Status
from approvals.validators import callback_url_problem
from audit.redaction import is_redacted
from core.parsers import identifier_problem
from core.serializers import StrictSerializer
from rollout.models import Risk

MAX_EVIDENCE_ITEMS = 50
# The longest execution result (canonical JSON, bytes) returned with the action: enough
# for what an agent keeps to answer a replay without running the tool again.
MAX_RETURNED_RESULT_BYTES = 8 * 1024
MIN_LEASE_SECONDS = 5
MAX_LEASE_SECONDS = 3600


class RationaleSerializer(StrictSerializer):
    objective = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    plan = serializers.CharField(max_length=4000, required=False, allow_blank=True)
    alternatives = serializers.ListField(
        child=serializers.CharField(max_length=1000, allow_blank=True),
        max_length=20,
        required=False,
    )
    confidence = serializers.FloatField(min_value=0, max_value=1, required=False)


class EvidenceSerializer(StrictSerializer):
    kind = serializers.CharField(max_length=60)
    title = serializers.CharField(max_length=300)
    content = serializers.CharField(max_length=20000, required=False, allow_blank=True)
    url = serializers.URLField(max_length=2000, required=False)

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("content") and not attrs.get("url"):
            raise serializers.ValidationError("Evidence needs content or a url.")
        return attrs


class AmountSerializer(StrictSerializer):
    value = serializers.DecimalField(max_digits=20, decimal_places=4, coerce_to_string=False)
    currency = serializers.CharField(max_length=10, required=False, allow_blank=True)


class BlastRadiusSerializer(StrictSerializer):
    environment = serializers.CharField(max_length=60, required=False, allow_blank=True)
    reversible = serializers.BooleanField(required=False)
    records_affected = serializers.IntegerField(min_value=0, max_value=10**12, required=False)
    users_affected = serializers.IntegerField(min_value=0, max_value=10**12, required=False)
    amount = AmountSerializer(required=False)
    systems = serializers.ListField(
        child=serializers.CharField(max_length=120), max_length=20, required=False
    )


class BoundedJSONField(serializers.JSONField):
    """A JSON object whose canonical size is bounded."""

    def __init__(self, *args: Any, max_keys: int = 200, **kwargs: Any) -> None:
        self.max_keys = max_keys
        super().__init__(*args, **kwargs)

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        if len(value) > self.max_keys:
            raise serializers.ValidationError(f"At most {self.max_keys} keys.")
        return value


# Names, unlike prose, may hold no invisible character at all (core.parsers).
NAME_RULE = (
    " Invisible (Unicode default-ignorable: zero-width, soft hyphen, bidirectional controls, "
    "variation selectors, tags) and control characters are refused with `400 invalid_text`, "
    "as they are in every object key of the body."
)


class ActionSubmitSerializer(StrictSerializer):
    """The agent's request. Text values may not contain NUL, unpaired surrogates,
    bidirectional overrides or isolates, zero-width space, word joiner or BOM (`400
    invalid_text`, the field named); zero-width (non-)joiners stay allowed in values. Object
    keys anywhere, and the names `tool`, `on_behalf_of`, `correlation_id`, follow the
    stricter rule for names."""

    tool = serializers.RegexField(
        r"^[A-Za-z0-9_.:/\-]{1,120}$",
        max_length=120,
        help_text="The tool's name, as in the agent's rules." + NAME_RULE,
    )
    arguments = BoundedJSONField()
    summary = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    rationale = RationaleSerializer(required=False)
    evidence = EvidenceSerializer(many=True, required=False, max_length=MAX_EVIDENCE_ITEMS)
    blast_radius = BlastRadiusSerializer(required=False)
    release = BoundedJSONField(required=False, max_keys=20)
    on_behalf_of = serializers.CharField(
        max_length=150,
        required=False,
        allow_blank=True,
        help_text=(
            "The username of the person who asked for this call. That person may not approve "
            "it: names are compared as people read them (NFKC, case-folded, invisible "
            "characters ignored, look-alike letters such as Cyrillic and Latin e equal), "
            "never by exact spelling." + NAME_RULE
        ),
    )
    callback_url = serializers.URLField(max_length=2000, required=False, allow_blank=True)
    compensation = BoundedJSONField(required=False, max_keys=20)
    correlation_id = serializers.CharField(
        max_length=80,
        required=False,
        allow_blank=True,
        help_text="Groups related calls (filter `correlation_id` on the list)." + NAME_RULE,
    )

    lease_seconds = serializers.IntegerField(
        min_value=MIN_LEASE_SECONDS,
        max_value=MAX_LEASE_SECONDS,
        required=False,
        help_text=(
            "Opt-in, for an agent that waits while people decide (the blocking SDK client "
            "sets it): the agent's reads of the action (`GET …?wait=N`, which covers the "
            "wait) and `POST /api/v1/actions/{id}/heartbeat` renew the lease; when it lapses "
            "the pending action is cancelled with feedback `agent_gone` and no decision on it "
            "is accepted. Leave it out when nothing stays alive to renew it (an agent that "
            "pauses and resumes later)."
        ),
    )

    def validate_callback_url(self, value: str) -> str:
        if value:
            problem = callback_url_problem(value)
            if problem:
                raise serializers.ValidationError(problem)
        return value

    def validate_release(self, value: dict) -> dict:
        for key, item in value.items():
            if not isinstance(item, str | int | float) or len(str(item)) > 200:
                raise serializers.ValidationError(
                    f"{key}: release values are short strings or numbers."
                )
        return value

    def validate_blast_radius(self, value: dict) -> dict:
        amount = value.get("amount")
        if amount is not None:
            # Stored as JSON: keep the number a number.
            value["amount"] = {**amount, "value": float(amount["value"])}
        return value


class DecisionOutSerializer(serializers.Serializer):
    reviewer = serializers.CharField(source="reviewer.username")
    verdict = serializers.CharField()
    comment = serializers.CharField()
    at = serializers.DateTimeField(source="created_at")
    payload_hash = serializers.CharField()
    voided = serializers.BooleanField()
    channel = serializers.CharField(
        help_text="Where the person decided: page, api, email, slack, bulk or standing "
        "(empty for decisions recorded before channels were)."
    )


_DATETIME_FIELD = serializers.DateTimeField()


class ExecutionOutSerializer(serializers.Serializer):
    """The agent's execution report, as returned with the action."""

    outcome = serializers.CharField(help_text="succeeded or failed")
    payload_hash = serializers.CharField(help_text="The payload the agent says it executed.")
    result = serializers.JSONField(
        allow_null=True,
        help_text="The result the agent reported, when its JSON is at most 8 KiB (else null, "
        "with `result_omitted`): what a replay of the same call returns instead of running "
        "the tool again.",
    )
    result_omitted = serializers.BooleanField(
        help_text="True when a longer result was stored but is not returned here."
    )
    error = serializers.CharField()
    reported_at = serializers.DateTimeField()


def execution_report(action: Action) -> dict | None:
    """The action's execution report as the API returns it (None before one is accepted).
    Reads a list's prefetch when there is one; spares the query where nothing can have run."""
    if action.status in _NEVER_REPORTED:
        return None
    report = next((r for r in _reports(action) if r.kind == Report.Kind.EXECUTION), None)
    if report is None:
        return None
    result = None if is_redacted(report.result) else report.result
    size = len(json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode())
    omitted = size > MAX_RETURNED_RESULT_BYTES
    return {
        "outcome": report.outcome,
        "payload_hash": report.payload_hash,
        "result": None if omitted else result,
        "result_omitted": omitted,
        "error": report.error,
        "reported_at": _datetime(report.created_at),
    }


def _datetime(value: Any) -> str | None:
    """A datetime as DRF's ``DateTimeField`` writes it (``None`` stays ``None``)."""
    return None if value is None else _DATETIME_FIELD.to_representation(value)


MASKING_RULE = (
    " Fields configured as sensitive (`AUDIT_REDACTED_ARGUMENT_PATHS`, e.g. `card_number`, "
    "`cvv`) read `[masked]` for people without the `audit.view_sensitive` permission; the "
    "action's own agent always gets the real values it executes."
)


class ShownArgumentsField(serializers.JSONField):
    """An action's arguments as the serializer's ``viewer`` (context) may see them:
    ``approvals.masking.masked_arguments``, the one way arguments are shown. No viewer: masked."""

    def __init__(self, *, original: bool = False, **kwargs: Any) -> None:
        self.original = original
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, action: Action) -> Any:
        return masked_arguments(action, self.context.get("viewer"), original=self.original)


class ActionSerializer(serializers.ModelSerializer):
    """An action as the API answers it. Pass the requesting principal as ``viewer`` in the
    context: arguments are shown as it may see them (``ShownArgumentsField``)."""

    agent = serializers.CharField(source="agent.slug")
    arguments = ShownArgumentsField(
        help_text="The arguments that will run (a reviewer may have edited them)." + MASKING_RULE
    )
    original_arguments = ShownArgumentsField(
        original=True, help_text="The arguments as the agent sent them." + MASKING_RULE
    )
    approvals = serializers.SerializerMethodField()
    decisions = serializers.SerializerMethodField()
    policy_version = serializers.IntegerField(source="policy_version.number", allow_null=True)
    execution = serializers.SerializerMethodField(
        help_text="The agent's execution report once accepted (else null)."
    )
    grant = serializers.SerializerMethodField(
        help_text=(
            "The execution grant of an `allowed` or `approved` action: a JWS compact token "
            "(EdDSA) the tool service verifies (`airlock_sdk.grants.verify`, keys at "
            "`/.well-known/airlock-grant-keys.json`). Shown to the action's own agent only, "
            "while the action may run or after it ran; null otherwise."
        )
    )
    links = serializers.SerializerMethodField()

    class Meta:
        model = Action
        fields = [
            "id",
            "agent",
            "tool",
            "status",
            "reason_code",
            "reasons",
            "risk",
            "required_approvals",
            "approvals",
            "decisions",
            "feedback",
            "expires_at",
            "lease_seconds",
            "lease_expires_at",
            "payload_hash",
            "arguments",
            "original_arguments",
            "summary",
            "correlation_id",
            "environment",
            "policy_version",
            "created_at",
            "decided_at",
            "execution",
            "grant",
            "links",
        ]
        read_only_fields = fields

    def to_representation(self, action: Action) -> dict:
        """The declared fields above, written out: a ``ModelSerializer`` builds its fields
        anew for every instance it serialises, which cost the gate more than its whole
        transaction. The declaration stays the schema's source (drf-spectacular), and
        ``tests/test_api_gate.py`` holds this output equal to DRF's for every status."""
        policy = action.policy_version
        viewer = self.context.get("viewer")
        return {
            "id": action.pk,
            "agent": action.agent.slug,
            "tool": action.tool,
            "status": action.status,
            "reason_code": action.reason_code,
            "reasons": action.reasons,
            "risk": action.risk,
            "required_approvals": action.required_approvals,
            "approvals": self.get_approvals(action),
            "decisions": self.get_decisions(action),
            "feedback": action.feedback,
            "expires_at": _datetime(action.expires_at),
            "lease_seconds": action.lease_seconds,
            "lease_expires_at": _datetime(action.lease_expires_at),
            "payload_hash": action.payload_hash,
            "arguments": masked_arguments(action, viewer),
            "original_arguments": masked_arguments(action, viewer, original=True),
            "summary": action.summary,
            "correlation_id": action.correlation_id,
            "environment": action.environment,
            "policy_version": None if policy is None else policy.number,
            "created_at": _datetime(action.created_at),
            "decided_at": _datetime(action.decided_at),
            "execution": self.get_execution(action),
            "grant": self.get_grant(action),
            "links": self.get_links(action),
        }

    def get_approvals(self, action: Action) -> int:
        if self.context.get("just_created"):
            return 0  # the gate's answer: nobody can have decided yet
        return len(rules.current_approvals(action, _decisions(action)))

    def get_decisions(self, action: Action) -> list[dict]:
        if self.context.get("just_created"):
            return []
        return DecisionOutSerializer(_decisions(action), many=True).data

    @extend_schema_field(ExecutionOutSerializer(allow_null=True))
    def get_execution(self, action: Action) -> dict | None:
        if self.context.get("just_created"):
            return None  # the gate's answer: nothing can have run yet
        return execution_report(action)

    def get_grant(self, action: Action) -> str | None:
        # A grant is an instruction to the tool service, for the agent that runs the tool:
        # a person reading the action (or another agent) never gets one to replay.
        if not action.grant or action.status not in _GRANT_SHOWN:
            return None
        return action.grant if is_own_agent(self.context.get("viewer"), action) else None

    def get_links(self, action: Action) -> dict:
        base = f"/api/v1/actions/{action.pk}"
        links = {
            "self": base,
            "wait": f"{base}?wait=30",
            "execution": f"{base}/execution",
            "card": f"/actions/{action.pk}",
        }
        if action.standing_approval_id is not None:
            # Approved at once by people's standing approval (``reason_code``
            # ``standing_approval``): the one that covered it.
            links["standing_approval"] = f"/api/v1/standing-approvals/{action.standing_approval_id}"
        return links


# Statuses in which the agent is shown its grant: it may run (or ran, for a replay that
# must answer the same token). A revoked, cancelled or expired grant is not shown.
_GRANT_SHOWN = frozenset(
    {
        Status.ALLOWED,
        Status.APPROVED,
        Status.EXECUTED,
        Status.FAILED,
        Status.ROLLBACK_REQUESTED,
        Status.ROLLED_BACK,
        Status.ROLLBACK_FAILED,
    }
)

# Statuses in which an action cannot carry an execution report (nothing ran).
_NEVER_REPORTED = frozenset(
    {
        Status.PENDING,
        Status.DENIED,
        Status.SHADOWED,
        Status.REJECTED,
        Status.EXPIRED,
        Status.CANCELLED,
        Status.REVOKED,
    }
)


def _decisions(action: Action) -> list[Decision]:
    """The action's decisions in order, with their reviewers: from a list's prefetch
    (``approvals.selectors.action_list_page``) when there is one, else one query."""
    cache = getattr(action, "_prefetched_objects_cache", {})
    if "decisions" in cache:
        return sorted(cache["decisions"], key=lambda d: (d.created_at, d.pk))
    return list(action.decisions.select_related("reviewer").order_by("created_at", "id"))


def _reports(action: Action) -> list[Report]:
    cache = getattr(action, "_prefetched_objects_cache", {})
    if "reports" in cache:
        return list(cache["reports"])
    return list(action.reports.all())


class ExecutionReportSerializer(StrictSerializer):
    outcome = serializers.ChoiceField(choices=["succeeded", "failed"])
    payload_hash = serializers.RegexField(r"^[0-9a-f]{64}$")
    result = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text="What the tool returned, as the agent chooses to keep it. Returned with the "
        "action (`execution.result`) when its JSON is at most 8 KiB, so a replayed "
        "submission can answer with it instead of running the tool again.",
    )
    error = serializers.CharField(max_length=10000, required=False, allow_blank=True)


class RollbackReportSerializer(StrictSerializer):
    outcome = serializers.ChoiceField(choices=["rolled_back", "failed"])
    result = serializers.JSONField(required=False, allow_null=True)


class DecisionInSerializer(StrictSerializer):
    verdict = serializers.ChoiceField(choices=["approve", "reject"])
    standing_minutes = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=24 * 60,
        help_text=(
            "Approve only, with `standing_uses`: also approve matching calls (same agent, "
            "tool, environment and arguments; fields the tool's policy marks `at_most` may "
            "be lower) for this many minutes. Must be within the tool's standing bounds "
            "(`400 standing_out_of_bounds`, field named). Created when every approver of "
            "the card gives the same terms."
        ),
    )
    standing_uses = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=1000,
        help_text="Approve only, with `standing_minutes`: at most this many matching calls.",
    )
    comment = serializers.CharField(max_length=4000, required=False, allow_blank=True)
    arguments = BoundedJSONField(
        required=False,
        help_text=(
            "Approve only: the edited arguments to run instead. The edit is re-assessed "
            "under the agent's current policy (argument limits, risk from the declared and "
            "the argument-derived blast radius, required approvals, critical approver, "
            "step-up): an edit the gate would deny is refused with its reason code; one "
            "that raises the bar leaves the action pending until it is met. Fields masked "
            "for you keep their values."
        ),
    )
    payload_hash = serializers.RegexField(
        r"^[0-9a-f]{64}$",
        required=False,
        help_text=(
            "The action's payload_hash as you saw it. When given and the arguments have "
            "changed since (someone edited them), the decision is refused with 409 "
            "payload_changed and nothing is recorded. The SDK always sends it."
        ),
    )

    def validate(self, attrs: dict) -> dict:
        given = [name for name in ("standing_minutes", "standing_uses") if name in attrs]
        if given and attrs.get("verdict") != "approve":
            raise serializers.ValidationError({given[0]: ["Only an approval has standing terms."]})
        if len(given) == 1:
            missing = "standing_uses" if given[0] == "standing_minutes" else "standing_minutes"
            raise serializers.ValidationError(
                {missing: ["Standing terms need both standing_minutes and standing_uses."]}
            )
        return attrs


class StandingApprovalSerializer(serializers.Serializer):
    """A standing approval as the API shows it to reviewers of its agent."""

    id = serializers.IntegerField()
    agent = serializers.CharField(source="agent.slug")
    tool = serializers.CharField()
    environment = serializers.CharField()
    arguments = serializers.JSONField(
        help_text="The approved arguments, masked as the source action's are for you."
    )
    at_most = serializers.ListField(child=serializers.CharField())
    risk = serializers.ChoiceField(choices=Risk.choices)
    minutes = serializers.IntegerField()
    max_uses = serializers.IntegerField()
    uses = serializers.IntegerField()
    uses_left = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    approvers = serializers.ListField(child=serializers.CharField())
    source_action = serializers.IntegerField(source="source_action_id")
    created_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    end_reason = serializers.CharField()
    active = serializers.BooleanField()

    def to_representation(self, standing: Any) -> dict:
        data = {
            "id": standing.pk,
            "agent": standing.agent.slug,
            "tool": standing.tool,
            "environment": standing.environment,
            "arguments": masked_for(self.context.get("viewer"), standing.tool, standing.arguments),
            "at_most": standing.at_most,
            "risk": standing.risk,
            "minutes": standing.minutes,
            "max_uses": standing.max_uses,
            "uses": standing.uses,
            "uses_left": standing.uses_left,
            "expires_at": _datetime(standing.expires_at),
            "approvers": sorted(u.get_username() for u in standing.approvers.all()),
            "source_action": standing.source_action_id,
            "created_at": _datetime(standing.created_at),
            "ended_at": _datetime(standing.ended_at),
            "end_reason": standing.end_reason,
            "active": standing.is_active,
        }
        return data


class StandingListSerializer(serializers.Serializer):
    results = StandingApprovalSerializer(many=True)


class StandingListQuerySerializer(StrictSerializer):
    agent = serializers.SlugField(required=False, help_text="Only this agent's.")


MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50


def encode_position(moment: datetime, pk: int) -> str:
    """An opaque keyset position (a time and an id), read back by ``decode_cursor``."""
    raw = json.dumps([moment.isoformat(), pk], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def encode_cursor(action: Action) -> str:
    """An opaque position after ``action`` in the list's order (newest first)."""
    return encode_position(action.created_at, action.pk)


def decode_cursor(value: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        created, pk = json.loads(raw)
        position = datetime.fromisoformat(created), int(pk)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise serializers.ValidationError(
            "Not a cursor this list gave out: pass next_cursor back as it came."
        ) from None
    if position[0].tzinfo is None:
        raise serializers.ValidationError("Not a cursor this list gave out.")
    return position


class ActionListQuerySerializer(StrictSerializer):
    """Filters and paging of the people's list (query parameters; unknown ones are
    refused)."""

    status = serializers.CharField(
        max_length=300,
        required=False,
        help_text="One status or several, comma-separated (e.g. `pending` or `approved,executed`).",
    )
    agent = serializers.SlugField(max_length=80, required=False, help_text="An agent's slug.")
    tool = serializers.RegexField(r"^[A-Za-z0-9_.:/\-]{1,120}$", max_length=120, required=False)
    risk = serializers.ChoiceField(choices=Risk.choices, required=False)
    correlation_id = serializers.CharField(max_length=80, required=False)
    cursor = serializers.CharField(
        max_length=200, required=False, help_text="`next_cursor` of the previous page."
    )
    limit = serializers.IntegerField(
        min_value=1,
        max_value=MAX_PAGE_SIZE,
        required=False,
        help_text=f"Page size (default {DEFAULT_PAGE_SIZE}, at most {MAX_PAGE_SIZE}).",
    )

    def validate_status(self, value: str) -> list[str]:
        statuses = [item.strip() for item in value.split(",") if item.strip()]
        unknown = [item for item in statuses if item not in Status.values]
        if not statuses or unknown:
            raise serializers.ValidationError(
                f"Unknown status {', '.join(unknown) or value!r}; one of {', '.join(Status.values)}."
            )
        return statuses

    def validate_correlation_id(self, value: str) -> str:
        if problem := identifier_problem(value):
            raise serializers.ValidationError(problem)
        return value

    def validate_cursor(self, value: str) -> tuple[datetime, int]:
        return decode_cursor(value)


class ActionPageSerializer(serializers.Serializer):
    """One page of the people's list: newest first; ``next_cursor`` is null on the last."""

    results = ActionSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class BoundedJSONFieldSchema(OpenApiSerializerFieldExtension):
    """``BoundedJSONField`` takes a JSON object of at most ``max_keys`` keys, not any JSON."""

    target_class = "approvals.serializers.BoundedJSONField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict:
        return {"type": "object", "maxProperties": self.target.max_keys}


class GrantCheckInSerializer(StrictSerializer):
    """A tool service's online question about a grant."""

    grant = serializers.CharField(max_length=4096, help_text="The grant (JWS compact token).")
    tool = serializers.CharField(
        max_length=120, required=False, help_text="When given: the grant must be for this tool."
    )
    arguments = serializers.JSONField(
        required=False,
        help_text="When given: the grant must be for exactly these arguments (canonical hash).",
    )
    environment = serializers.CharField(
        max_length=40,
        required=False,
        allow_null=True,
        help_text="When given (null: none): the grant must be for this environment.",
    )
    consume = serializers.BooleanField(
        default=False,
        help_text="Mark the grant used: this check answers `ok` once, `used` ever after.",
    )


class GrantCheckOutSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    code = serializers.CharField(
        help_text=(
            "`ok`; `malformed`, `unknown_key`, `bad_signature`, `expired`; `wrong_tool`, "
            "`wrong_arguments`, `wrong_environment`; `revoked` (kill switch or grant window), "
            "`used`, `unknown_grant`."
        )
    )
    detail = serializers.CharField()
    action = serializers.IntegerField(allow_null=True)
    agent = serializers.CharField(allow_null=True)
    tool = serializers.CharField(allow_null=True)


class RevocationQuerySerializer(StrictSerializer):
    since = serializers.CharField(
        required=False,
        max_length=200,
        help_text="`next` of the previous answer; absent: from the oldest revocation kept.",
    )


class RevocationSerializer(serializers.Serializer):
    grant_id = serializers.CharField(help_text="The grant's `jti`.")
    action = serializers.IntegerField()
    revoked_at = serializers.DateTimeField()


class RevocationPageSerializer(serializers.Serializer):
    revocations = RevocationSerializer(many=True)
    next = serializers.CharField(help_text="Pass as `since` to get what was revoked after.")
