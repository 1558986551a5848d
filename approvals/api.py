"""The agent API (v1) and the people's decision endpoint: thin DRF views over
``approvals.actions``."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import require_token_scope
from accounts.permissions import token_scope_allows
from accounts.stepup import (
    approval_purpose,
    approval_step_up_check,
    verify_offered_code,
)
from approvals import actions, hooks, rules, selectors, standing
from approvals.events import action_group
from approvals.models import Action, Channel, StandingApproval
from approvals.permissions import can_view_action, visible_actions
from approvals.serializers import (
    DEFAULT_PAGE_SIZE,
    ActionListQuerySerializer,
    ActionPageSerializer,
    ActionSerializer,
    ActionSubmitSerializer,
    DecisionInSerializer,
    ExecutionReportSerializer,
    GrantCheckInSerializer,
    GrantCheckOutSerializer,
    RevocationPageSerializer,
    RevocationQuerySerializer,
    RollbackReportSerializer,
    StandingApprovalSerializer,
    StandingListQuerySerializer,
    StandingListSerializer,
    decode_cursor,
    encode_cursor,
    encode_position,
)
from approvals.states import Status
from core.api import AirlockAPIView, valid_body
from core.api_errors import ApiError
from core.parsers import InvalidText, identifier_problem
from core.people import is_agent
from core.permissions import IsAgent, IsPerson
from core.serializers import NoFieldsSerializer
from grants.authentication import ServiceRateThrottle, ServiceTokenAuthentication
from grants.permissions import IsToolService
from rollout import permissions as rollout_permissions
from rollout.authentication import AgentTokenAuthentication

MAX_IDEMPOTENCY_KEY = 200
# A long-poll waits only while a human (or a reviewer's rollback request) is still pending.
WAITING_STATUSES = frozenset({"pending", "rollback_requested"})
# Seconds a channel-layer call may take before the long-poll stops relying on it.
LAYER_TIMEOUT = 3
logger = logging.getLogger(__name__)


def _visible_action_or_404(request: Request, action_id: int) -> Action:
    action = (
        visible_actions(request.user)
        .select_related("agent", "policy_version")
        .filter(pk=action_id)
        .first()
    )
    if action is None:
        raise ApiError(404, "not_found", "No such action.")
    return action


def _own_action_or_404(request: Request, action_id: int) -> Action:
    """The agent's own action in its token's environment; 404 for any other id."""
    action = visible_actions(request.user).filter(pk=action_id).first()
    if action is None:
        raise ApiError(404, "not_found", "No such action.")
    return action


def _header_text(value: str) -> str:
    """A header value as the client wrote it: servers hand headers over decoded as
    ISO-8859-1, so UTF-8 text (a zero-width space, a Cyrillic letter) is read back as UTF-8;
    anything else stays as decoded (C1 controls then show as what they are)."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


class ActionsView(AirlockAPIView):
    """``/api/v1/actions``: agents submit to the gate (POST); people list the actions they
    may see (GET)."""

    # Names, not prose: held to core.parsers' rule for names and keys (no invisible or
    # control character), like every key of the body.
    identifier_fields = ("tool", "on_behalf_of", "correlation_id")

    def get_permissions(self) -> list:
        # One path, two audiences: an agent reads its actions one by one (it knows their
        # ids); a list is for people.
        return [IsPerson()] if self.request.method in ("GET", "HEAD") else [IsAgent()]

    @extend_schema(
        operation_id="list_actions",
        summary="List the actions you may see (people)",
        parameters=[ActionListQuerySerializer],
        responses={200: ActionPageSerializer},
        description=(
            "For people (session, or a personal token with the `decide` or `read_audit` "
            "scope): the actions of the agents they review or audit, newest first, filtered "
            "by `status`, `agent`, `tool`, `risk` and `correlation_id`, in pages of `limit` "
            "(keyset: pass `next_cursor` back as `cursor`; null on the last page). Arguments "
            "are masked as on the card. An unknown filter or a bad cursor is `400` with the "
            "field named; agent tokens get `403`."
        ),
    )
    def get(self, request: Request) -> Response:
        if not (token_scope_allows(request, "decide") or token_scope_allows(request, "read_audit")):
            raise ApiError(
                403, "token_scope", "This token's scopes include neither decide nor read_audit."
            )
        query = ActionListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        page, more = selectors.action_list_page(
            request.user,
            statuses=data.get("status", ()),
            agent=data.get("agent", ""),
            tool=data.get("tool", ""),
            risk=data.get("risk", ""),
            correlation_id=data.get("correlation_id", ""),
            after=data.get("cursor"),
            limit=data.get("limit", DEFAULT_PAGE_SIZE),
        )
        results = ActionSerializer(page, many=True, context={"viewer": request.user}).data
        return Response(
            {"results": results, "next_cursor": encode_cursor(page[-1]) if more else None}
        )

    @extend_schema(
        operation_id="submit_action",
        summary="Ask the gate about one tool call",
        request=ActionSubmitSerializer,
        responses={201: ActionSerializer, 200: ActionSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                # The key is stripped: it needs a character other than whitespace.
                {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_IDEMPOTENCY_KEY,
                    "pattern": r"\S",
                },
                OpenApiParameter.HEADER,
                required=True,
                description=(
                    "Names this submission: the same key with the same body answers the same "
                    "action (200). At most 200 characters; invisible (Unicode default-"
                    "ignorable, e.g. zero-width or bidirectional) and control characters are "
                    "refused with `400 invalid_text`."
                ),
            )
        ],
    )
    def post(self, request: Request) -> Response:
        key = (request.headers.get("Idempotency-Key") or "").strip()
        if not key:
            raise ApiError(
                400,
                "idempotency_key_required",
                "Send an Idempotency-Key header.",
                {"Idempotency-Key": ["Required."]},
            )
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise ApiError(
                400,
                "invalid",
                "Idempotency-Key is too long.",
                {"Idempotency-Key": [f"At most {MAX_IDEMPOTENCY_KEY} characters."]},
            )
        if problem := identifier_problem(_header_text(key)):
            raise InvalidText({"Idempotency-Key": [problem]})
        if not isinstance(request.data, dict):
            raise ApiError(400, "invalid", "The body must be a JSON object.")
        serializer = ActionSubmitSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        drill_probe = hooks.drill_probe_call(request.auth, serializer.validated_data)
        submission = actions.submit_action(
            agent=request.user.agent,
            idempotency_key=key,
            body=serializer.validated_data,
            drill_probe=drill_probe,
            environment=request.user.token.environment,
        )
        code = status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK
        context = {"just_created": submission.created, "viewer": request.user}
        return Response(ActionSerializer(submission.action, context=context).data, status=code)


class ActionDetailView(AirlockAPIView):
    @extend_schema(
        operation_id="get_action",
        summary="Read an action; with ?wait=N, long-poll until its status changes",
        responses={200: ActionSerializer},
        parameters=[
            OpenApiParameter(
                "wait", int, description="Seconds to wait for a status change (0..60)."
            ),
            OpenApiParameter(
                "status",
                str,
                description="The status the client last saw; a different current status answers at once.",
            ),
        ],
    )
    def get(self, request: Request, action_id: int) -> Response:
        action = _visible_action_or_404(request, action_id)
        if action.status == "pending" and rules.overdue(action, timezone.now()):
            # Expiry and a lapsed lease never wait for the background task: the reader sees
            # them (audited).
            actions.settle_overdue(action_id=action.pk)
            action = _visible_action_or_404(request, action_id)
        elif is_agent(request.user):
            # The agent's own read is a sign of life: it renews the action's lease.
            actions.renew_lease_while_waiting(action=action)
        return Response(ActionSerializer(action, context={"viewer": request.user}).data)


def _wait_seconds(request: HttpRequest) -> float:
    try:
        wait = float(request.GET.get("wait", "0"))
    except ValueError:
        return 0
    if wait != wait:  # NaN
        return 0
    return max(0.0, min(wait, settings.LONG_POLL_MAX_SECONDS))


def _status_to_wait_on(request: HttpRequest, action_id: int, wait: float) -> str | None:
    """The action's status when the request's credentials may see it, else None (then the
    DRF view answers 401/404 as usual, without waiting). The action's own agent renews its
    lease for the wait and after it; an action whose deadline already passed is not waited
    on either (the DRF view records the lapse)."""
    try:
        auth = AgentTokenAuthentication().authenticate(Request(request))
    except Exception:
        return None
    user = auth[0] if auth else getattr(request, "user", None)
    action = Action.objects.select_related("agent").filter(pk=action_id).first()
    if (
        action is None
        or user is None
        or not user.is_authenticated
        or not can_view_action(user, action)
    ):
        return None
    if action.status == "pending":
        if rules.overdue(action, timezone.now()):
            return None
        if is_agent(user):
            actions.renew_lease_while_waiting(action=action, wait_seconds=wait)
    return action.status


def _current_status(action_id: int) -> str | None:
    return Action.objects.filter(pk=action_id).values_list("status", flat=True).first()


async def action_detail(request: HttpRequest, action_id: int) -> HttpResponse:
    """``GET /api/v1/actions/{id}?wait=N``: waits without a thread or a database
    transaction, woken by the change's broadcast on the channel layer; re-reads the status
    now and then in case the wake-up was lost (at-most-once delivery) or came from another
    process without a shared layer."""
    wait = _wait_seconds(request)
    if wait > 0:
        await _wait_for_change(request, action_id, wait)
    return await sync_to_async(_detail_view)(request, action_id=action_id)


_detail_view = ActionDetailView.as_view()
# drf-spectacular documents this URL from the DRF view's schema.
action_detail.cls = ActionDetailView  # type: ignore[attr-defined]
action_detail.initkwargs = getattr(_detail_view, "initkwargs", {})  # type: ignore[attr-defined]


async def _wait_for_change(request: HttpRequest, action_id: int, wait: float) -> None:
    layer = get_channel_layer()
    channel = None
    wake_up: asyncio.Future | None = None
    if layer:
        try:
            channel = await layer.new_channel()
            await asyncio.wait_for(layer.group_add(action_group(action_id), channel), LAYER_TIMEOUT)
            # Listening starts before the action is read, so a decision committed in between
            # still wakes us. One receive outlives the re-checks below: cancelling it at each
            # step would unsubscribe the channel (pub/sub layer) and drop a wake-up arriving
            # before the next receive; cancelling it at the end is what unsubscribes. A
            # ``layer.reconnected`` notice (Redis came back, wake-ups may have been lost)
            # wakes it like an event: the action is re-read.
            wake_up = asyncio.ensure_future(layer.receive(channel))
        except Exception:
            # Redis is down: wait by re-reading the action instead of by wake-up.
            logger.warning(
                "channel layer unavailable; long-poll falls back to re-reading", exc_info=True
            )
            layer = None
    try:
        initial = await sync_to_async(_status_to_wait_on)(request, action_id, wait)
        if initial is None or initial not in WAITING_STATUSES:
            return  # nothing to wait for: a decided action answers at once
        known = request.GET.get("status")
        if known and known != initial:
            return  # it changed since the client last looked
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        recheck = settings.LONG_POLL_RECHECK_SECONDS
        while (remaining := deadline - loop.time()) > 0:
            step = min(remaining, recheck)
            if wake_up is not None:
                done, _ = await asyncio.wait({wake_up}, timeout=step)
                if done:
                    finished, wake_up = wake_up, None
                    if finished.exception() is None:
                        wake_up = asyncio.ensure_future(layer.receive(channel))
                    else:
                        logger.warning(
                            "channel layer lost during a long-poll", exc_info=finished.exception()
                        )
                        layer = None
            else:
                await asyncio.sleep(step)
            now_status = await sync_to_async(_current_status)(action_id)
            if now_status != initial:
                return
    finally:
        if wake_up is not None:
            wake_up.cancel()
            with contextlib.suppress(BaseException):
                await wake_up
        if layer:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    layer.group_discard(action_group(action_id), channel), LAYER_TIMEOUT
                )
        await sync_to_async(close_old_connections)()


class ExecutionReportView(AirlockAPIView):
    permission_classes = [IsAgent]

    @extend_schema(
        operation_id="report_execution",
        request=ExecutionReportSerializer,
        responses={200: ActionSerializer},
    )
    def post(self, request: Request, action_id: int) -> Response:
        _own_action_or_404(request, action_id)
        data = valid_body(ExecutionReportSerializer, request)
        action = actions.report_execution(
            action_id=action_id,
            agent=request.user.agent,
            outcome=data["outcome"],
            reported_hash=data["payload_hash"],
            result=data.get("result"),
            error=data.get("error", ""),
        )
        return Response(ActionSerializer(action, context={"viewer": request.user}).data)


class WithdrawView(AirlockAPIView):
    permission_classes = [IsAgent]

    @extend_schema(
        operation_id="withdraw_action",
        request=NoFieldsSerializer,
        responses={200: ActionSerializer},
    )
    def post(self, request: Request, action_id: int) -> Response:
        _own_action_or_404(request, action_id)
        # Takes no fields: a body with any (or a malformed or hostile one) is refused, not
        # ignored.
        valid_body(NoFieldsSerializer, request)
        action = actions.withdraw(action_id=action_id, agent=request.user.agent)
        return Response(ActionSerializer(action, context={"viewer": request.user}).data)


class HeartbeatView(AirlockAPIView):
    permission_classes = [IsAgent]

    @extend_schema(
        operation_id="heartbeat_action",
        summary="Renew the lease of a pending action the agent still waits for",
        request=NoFieldsSerializer,
        responses={200: ActionSerializer},
        description=(
            "For an action submitted with `lease_seconds`: renews the lease by that many "
            "seconds and answers the action (its current status). Reads of the action by the "
            "agent (`GET …?wait=N`) renew it too, so an agent that long-polls needs no "
            "heartbeat. `409` `not_pending` (already decided or ended), `no_lease` (submitted "
            "without `lease_seconds`), `agent_gone` (the lease had lapsed: the action is now "
            "cancelled) or `expired`."
        ),
    )
    def post(self, request: Request, action_id: int) -> Response:
        _own_action_or_404(request, action_id)
        valid_body(NoFieldsSerializer, request)
        action = actions.heartbeat(action_id=action_id, agent=request.user.agent)
        return Response(ActionSerializer(action, context={"viewer": request.user}).data)


class RollbackReportView(AirlockAPIView):
    permission_classes = [IsAgent]

    @extend_schema(
        operation_id="report_rollback",
        request=RollbackReportSerializer,
        responses={200: ActionSerializer},
    )
    def post(self, request: Request, action_id: int) -> Response:
        _own_action_or_404(request, action_id)
        data = valid_body(RollbackReportSerializer, request)
        action = actions.report_rollback(
            action_id=action_id,
            agent=request.user.agent,
            outcome=data["outcome"],
            result=data.get("result"),
        )
        return Response(ActionSerializer(action, context={"viewer": request.user}).data)


class DecisionView(AirlockAPIView):
    permission_classes = [IsPerson]

    @extend_schema(
        operation_id="decide_action",
        request=DecisionInSerializer,
        responses={201: ActionSerializer},
        description=(
            "A person approves or rejects a pending action (session with CSRF, or a personal "
            "token with the `decide` scope). The rules of the approval matrix hold here as on "
            "every path: `403` `not_reviewer`, `own_request` (the person it is on behalf of, "
            "compared by a confusable-free skeleton), `critical_approver_required`, "
            "`step_up_required` (decided on the risk of the payload that will run); `409` "
            "`payload_changed` (the `payload_hash` you sent is not the current one: nothing "
            "recorded), `not_pending`, `expired`, `already_approved`. Edited `arguments` are "
            "re-assessed under the agent's current policy: `400` `argument_limit`, `409` "
            "`tool_forbidden`/`tool_unknown`/`tier_denies` refuse the edit and change nothing; "
            "otherwise the answer carries the new `risk` and `required_approvals` and the "
            "action stays `pending` until they are met. `standing_minutes` + `standing_uses` "
            "ask for a standing approval of matching calls: `400 standing_out_of_bounds` "
            "(field named) outside the tool's bounds; created with the approval that "
            "completes the quorum when every approval gave the same terms."
        ),
    )
    def post(self, request: Request, action_id: int) -> Response:
        require_token_scope(request, "decide")
        seen = _visible_action_or_404(request, action_id)
        data = valid_body(DecisionInSerializer, request)
        terms = None
        if "standing_minutes" in data:
            terms = standing.Terms(data["standing_minutes"], data["standing_uses"])
        if data["verdict"] == "approve":
            action = actions.approve(
                standing_terms=terms,
                action_id=action_id,
                user=request.user,
                comment=data.get("comment", ""),
                arguments=data.get("arguments"),
                seen_hash=data.get("payload_hash"),
                channel=Channel.API,
                step_up=_step_up_check(request, seen),
            )
        else:
            if "arguments" in data:
                raise ApiError(
                    400,
                    "invalid",
                    "Only an approval can edit arguments.",
                    {"arguments": ["Not allowed with reject."]},
                )
            action = actions.reject(
                action_id=action_id,
                user=request.user,
                comment=data.get("comment", ""),
                seen_hash=data.get("payload_hash"),
                channel=Channel.API,
            )
        return Response(
            ActionSerializer(action, context={"viewer": request.user}).data,
            status=status.HTTP_201_CREATED,
        )


def _step_up_check(request: Request, action: Action) -> actions.StepUpCheck:
    """The approval write path asks this on the risk of the payload that will run; an
    ``X-Airlock-OTP`` code is verified first, outside the decision's transaction."""
    verify_offered_code(request, purpose=approval_purpose(action))
    return approval_step_up_check(request)


# --- tool services: the online grant check and the revocation list --------------------------

REVOCATION_PAGE_SIZE = 500


class GrantVerifyView(AirlockAPIView):
    authentication_classes = [ServiceTokenAuthentication]
    permission_classes = [IsToolService]
    throttle_classes = [ServiceRateThrottle]

    @extend_schema(
        operation_id="verify_grant",
        summary="Check a grant online (and use it once)",
        request=GrantCheckInSerializer,
        responses={200: GrantCheckOutSerializer},
        description=(
            "For tool services (service token). Proves the grant authentic and unexpired, "
            "optionally bound to `tool`, `arguments` and `environment`, and not revoked (a "
            "kill switch in scope, or the grant window passed unexecuted). With "
            "`consume: true` it answers `ok` once and `used` after, across every replica of "
            "the service. Always `200` for a well-formed question: `valid` and `code` say."
        ),
    )
    def post(self, request: Request) -> Response:
        body = valid_body(GrantCheckInSerializer, request)
        check = actions.check_grant(
            token=body["grant"],
            service=request.user.token.name,
            tool=body.get("tool"),
            arguments=body.get("arguments", actions.UNCHECKED),
            environment=body.get("environment", actions.UNCHECKED),
            consume=body["consume"],
        )
        action = check.action
        return Response(
            {
                "valid": check.valid,
                "code": check.code,
                "detail": check.detail,
                "action": None if action is None else action.pk,
                "agent": None if action is None else action.agent.slug,
                "tool": None if action is None else action.tool,
            }
        )


class GrantRevocationsView(AirlockAPIView):
    authentication_classes = [ServiceTokenAuthentication]
    permission_classes = [IsToolService]
    throttle_classes = [ServiceRateThrottle]

    @extend_schema(
        operation_id="list_grant_revocations",
        summary="Grants revoked since a position",
        parameters=[RevocationQuerySerializer],
        responses={200: RevocationPageSerializer},
        description=(
            "For tool services that cache: every grant revoked (kill switch, grant window) "
            f"after `since`, oldest first, up to {REVOCATION_PAGE_SIZE} per answer; pass "
            "`next` back as `since` to follow."
        ),
    )
    def get(self, request: Request) -> Response:
        query = RevocationQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = Action.objects.filter(status=Status.REVOKED).exclude(grant_id="")
        since = query.validated_data.get("since")
        if since:
            try:
                moment, pk = decode_cursor(since)
            except drf_serializers.ValidationError as exc:
                raise ApiError(
                    400, "invalid", "Invalid query.", {"since": [str(exc.detail[0])]}
                ) from exc
            rows = rows.filter(Q(updated_at__gt=moment) | Q(updated_at=moment, pk__gt=pk))
        page = list(
            rows.order_by("updated_at", "pk").values_list("grant_id", "pk", "updated_at")[
                :REVOCATION_PAGE_SIZE
            ]
        )
        if page:
            next_since = encode_position(page[-1][2], page[-1][1])
        else:
            next_since = since or encode_position(timezone.now(), 0)
        return Response(
            {
                "revocations": [
                    {"grant_id": grant_id, "action": pk, "revoked_at": moment.isoformat()}
                    for grant_id, pk, moment in page
                ],
                "next": next_since,
            }
        )


def _standing_or_404(request: Request, standing_id: int) -> StandingApproval:
    """A standing approval its agent (with a token of the environment it was given in), or
    a reviewer or auditor of its agent, may see (404 otherwise, so ids of other agents' and
    other environments' are not revealed)."""
    found = (
        StandingApproval.objects.select_related("agent", "source_action")
        .prefetch_related("approvers")
        .filter(pk=standing_id)
        .first()
    )
    if found is not None:
        if is_agent(request.user):
            # As for actions (``approvals.permissions.can_view_action``): its own agent, in
            # its token's environment.
            if can_view_action(request.user, found.source_action):
                return found
        elif rollout_permissions.can_review(
            request.user, found.agent
        ) or rollout_permissions.can_read_audit(request.user, found.agent):
            return found
    raise ApiError(404, "not_found", "No such standing approval.")


class StandingListView(AirlockAPIView):
    permission_classes = [IsPerson]

    @extend_schema(
        operation_id="list_standing_approvals",
        summary="The standing approvals in force of the agents you review",
        parameters=[StandingListQuerySerializer],
        responses={200: StandingListSerializer},
    )
    def get(self, request: Request) -> Response:
        query = StandingListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = standing.active_for_reviewer(request.user)
        if query.validated_data.get("agent"):
            found = found.filter(agent__slug=query.validated_data["agent"])
        context = {"viewer": request.user}
        return Response(
            {"results": StandingApprovalSerializer(found[:200], many=True, context=context).data}
        )


class StandingDetailView(AirlockAPIView):
    @extend_schema(
        operation_id="get_standing_approval",
        summary="One standing approval (its agent, or a reviewer or auditor of its agent)",
        responses={200: StandingApprovalSerializer},
    )
    def get(self, request: Request, standing_id: int) -> Response:
        found = _standing_or_404(request, standing_id)
        return Response(StandingApprovalSerializer(found, context={"viewer": request.user}).data)


class StandingRevokeView(AirlockAPIView):
    permission_classes = [IsPerson]

    @extend_schema(
        operation_id="revoke_standing_approval",
        summary="End a standing approval at once",
        request=NoFieldsSerializer,
        responses={200: StandingApprovalSerializer},
        description=(
            "Any reviewer of the agent may (a tightening: nobody else is asked). Audited "
            "(`standing.ended`, reason `revoked`). `404 not_found`, `409 not_active` "
            "(already ended)."
        ),
    )
    def post(self, request: Request, standing_id: int) -> Response:
        require_token_scope(request, "decide")
        valid_body(NoFieldsSerializer, request)
        ended = standing.revoke(standing_id=standing_id, user=request.user, channel=Channel.API)
        found = _standing_or_404(request, ended.pk)
        return Response(StandingApprovalSerializer(found, context={"viewer": request.user}).data)
