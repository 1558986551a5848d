"""The read-only audit API (``/api/v1/audit/…``) for people holding the audit right, or —
for one action's trace and replay — whoever may see that action. Thin DRF views over the
same selectors as the pages; agents' tokens are refused."""

from __future__ import annotations

from django.http import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response

from approvals.models import Action
from approvals.trace import action_trace
from audit.console.access import AuditScope, audit_scope, can_view_trace
from audit.console.serializers import (
    AuditEventPageSerializer,
    AuditEventSerializer,
    ReplaySerializer,
    StatusSerializer,
    TraceSerializer,
    VerbSerializer,
    VerificationSerializer,
)
from audit.console.views import export_response
from audit.export import FORMATS
from audit.models import AuditEvent
from audit.search import MAX_PAGE_SIZE, PAGE_SIZE, AuditFilterForm, AuditFilters, search_events
from audit.verbs import VERBS
from audit.verification import verification_status
from core.api import AirlockAPIView
from core.api_errors import ApiError
from core.permissions import IsPerson
from rollout.replay import replay_action

FILTER_PARAMETERS = [
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="From (inclusive), UTC."),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="Until (exclusive), UTC."),
    OpenApiParameter("agent", str, description="Agent slug."),
    OpenApiParameter("actor", str, description="Actor name (username, agent slug, role)."),
    OpenApiParameter("verb", str, description="A registered verb, e.g. action.approved."),
    OpenApiParameter("action", int, description="Events about this action."),
    OpenApiParameter(
        "correlation_id",
        str,
        description="Events of the actions submitted with this correlation id (the gate's "
        "`correlation_id`), within what the caller may read.",
    ),
    OpenApiParameter("q", str, description="Free text anywhere in the event's data."),
]
PAGE_PARAMETERS = [
    OpenApiParameter("before", int, description="Keyset: events older than this id."),
    OpenApiParameter("after", int, description="Keyset: events newer than this id."),
    OpenApiParameter(
        "limit", int, description=f"Page size (default {PAGE_SIZE}, at most {MAX_PAGE_SIZE})."
    ),
]


class AuditAPIView(AirlockAPIView):
    permission_classes = [IsPerson]

    def scope(self, request: Request) -> AuditScope:
        scope = audit_scope(request.user)
        if scope is None:
            raise ApiError(403, "permission_denied", "You may not read the audit log.")
        return scope

    def filters(self, request: Request) -> AuditFilters:
        form = AuditFilterForm(request.query_params)
        if not form.is_valid():
            raise ApiError(
                400,
                "invalid",
                "The filters are not valid.",
                {name: [str(e) for e in errors] for name, errors in form.errors.items()},
            )
        return form.filters()


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name, "")
    if raw == "":
        return None
    if not raw.isdigit():
        raise ApiError(400, "invalid", f"{name} must be a positive integer.", {name: ["Invalid."]})
    return int(raw)


class EventListView(AuditAPIView):
    @extend_schema(
        operation_id="list_audit_events",
        summary="Search the audit log, newest first (keyset pages)",
        parameters=FILTER_PARAMETERS + PAGE_PARAMETERS,
        responses={200: AuditEventPageSerializer},
    )
    def get(self, request: Request) -> Response:
        scope = self.scope(request)
        filters = self.filters(request)
        limit = _int_param(request, "limit")
        page = search_events(
            scope,
            filters,
            before=_int_param(request, "before"),
            after=_int_param(request, "after"),
            limit=limit or PAGE_SIZE,
        )
        base = request.build_absolute_uri(request.path)

        def link(**cursor: int | None) -> str:
            return f"{base}?{filters.querystring(**cursor, limit=limit)}"

        return Response(
            {
                "results": AuditEventSerializer(page.events, many=True).data,
                "older": link(before=page.older) if page.older else None,
                "newer": link(after=page.newer) if page.newer else None,
            }
        )


class EventDetailView(AuditAPIView):
    @extend_schema(operation_id="get_audit_event", responses={200: AuditEventSerializer})
    def get(self, request: Request, event_id: int) -> Response:
        scope = self.scope(request)
        event = scope.restrict(AuditEvent.objects.filter(pk=event_id)).first()
        if event is None:
            raise ApiError(404, "not_found", "No such event.")
        return Response(AuditEventSerializer(event).data)


class ExportFormatNegotiation(DefaultContentNegotiation):
    """``?format=jsonl|csv`` names the export's format here, not a DRF renderer (DRF would
    answer 404 for a renderer it does not have). Errors are still rendered as JSON."""

    def select_renderer(self, request: Request, renderers: list, format_suffix: str | None = None):
        return renderers[0], renderers[0].media_type


class ExportView(AuditAPIView):
    content_negotiation_class = ExportFormatNegotiation

    @extend_schema(
        operation_id="export_audit_events",
        summary="Stream the selection as JSONL or CSV; the last line is the chain head",
        parameters=[
            OpenApiParameter(
                "format", str, enum=list(FORMATS), description="jsonl (default) or csv"
            ),
            *FILTER_PARAMETERS,
        ],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR),
        },
    )
    def get(self, request: Request) -> HttpResponseBase:
        scope = self.scope(request)
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in FORMATS:
            raise ApiError(400, "invalid", "format must be jsonl or csv.", {"format": ["Invalid."]})
        return export_response(request._request, scope, self.filters(request), fmt)


class StatusView(AuditAPIView):
    @extend_schema(
        operation_id="audit_status",
        summary="The last verification of the chain, how far the log has grown since, and the "
        "newest signed checkpoint",
        responses={200: StatusSerializer},
    )
    def get(self, request: Request) -> Response:
        scope = self.scope(request)
        if not scope.everything:
            raise ApiError(403, "permission_denied", "The chain's status is for global auditors.")
        status = verification_status()
        return Response(
            {
                "state": status.state,
                "latest": VerificationSerializer(status.latest).data if status.latest else None,
                "last_ok": VerificationSerializer(status.last_ok).data if status.last_ok else None,
                "checkpoint": status.checkpoint,
                "checkpoint_problem": status.checkpoint_problem,
                "head_id": status.head_id,
                "unverified_events": status.unverified,
                "running": status.job is not None,
            }
        )


def _traceable_action(request: Request, action_id: int) -> Action:
    action = (
        Action.objects.select_related("agent", "agent__current_policy", "policy_version", "release")
        .filter(pk=action_id)
        .first()
    )
    if action is None or not can_view_trace(request.user, action):
        raise ApiError(404, "not_found", "No such action.")
    return action


class TraceView(AirlockAPIView):
    permission_classes = [IsPerson]

    @extend_schema(
        operation_id="get_action_trace",
        summary="An action's story: request, gate, notifications, views, decisions, execution, rollback",
        responses={200: TraceSerializer},
    )
    def get(self, request: Request, action_id: int) -> Response:
        action = _traceable_action(request, action_id)
        steps = action_trace(action, request.user)
        return Response({"action_id": action.pk, "steps": [s.as_dict() for s in steps]})


class ReplayView(AirlockAPIView):
    permission_classes = [IsPerson]

    @extend_schema(
        operation_id="replay_action",
        summary="Re-run the gate's decision under the recorded and today's policy",
        responses={200: ReplaySerializer},
    )
    def get(self, request: Request, action_id: int) -> Response:
        action = _traceable_action(request, action_id)
        return Response({"action_id": action.pk, **replay_action(action)})


class VerbListView(AuditAPIView):
    @extend_schema(operation_id="list_audit_verbs", responses={200: VerbSerializer(many=True)})
    def get(self, request: Request) -> Response:
        self.scope(request)
        verbs = [{"name": v.name, "template": v.template} for v in VERBS.values()]
        return Response(sorted(verbs, key=lambda v: v["name"]))
