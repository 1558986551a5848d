"""The governance API: thin DRF views over ``rollout.selectors`` and ``governance.selectors``
(what a person may see) and ``governance.actions`` (every change).

People only (session with CSRF, or a personal token with the ``govern`` scope for changes): an agent's
bearer token is answered 403 everywhere here — agents never change, nor read, their own
policy through this API. An agent or change request the caller may not see is 404; one
they may see but not change is 403."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import require_step_up, require_token_scope
from approvals.models import Action
from core.api import AirlockAPIView, valid_body
from core.api_errors import ApiError
from core.digests import token_digest
from core.permissions import IsPerson
from governance import actions
from governance.backtest import backtest_change
from governance.metrics import pending_counts
from governance.models import ChangeRequest
from governance.readiness import compute_readiness
from governance.selectors import (
    can_read_governance,
    change_request_visible_to,
    visible_change_requests,
)
from governance.serializers import (
    AgentTokenSerializer,
    ApproveInSerializer,
    BacktestInSerializer,
    ChangeRequestSerializer,
    CommentInSerializer,
    EditChangeInSerializer,
    PolicyVersionDetailSerializer,
    PolicyVersionSerializer,
    ProposalInSerializer,
    RegisterAgentInSerializer,
    RevertInSerializer,
    ShadowLabelInSerializer,
    TokenInSerializer,
    agent_summary,
    backtest_data,
    readiness_data,
)
from rollout import permissions as agent_perms
from rollout.models import Agent, KillSwitch, Tier
from rollout.policy_diff import diff_policies
from rollout.selectors import agent_visible_to, visible_agents


class GovernanceAPIView(AirlockAPIView):
    permission_classes = [IsPerson]


def _agent(request: Request, slug: str) -> Agent:
    agent = agent_visible_to(request.user, slug)
    if agent is None:
        raise ApiError(404, "not_found", "No such agent.")
    return agent


def _governed(request: Request, slug: str) -> Agent:
    agent = _agent(request, slug)
    if not agent_perms.can_govern(request.user, agent):
        raise ApiError(403, "not_governor", "You may not govern this agent.")
    return agent


def _change_request(request: Request, change_id: int) -> ChangeRequest:
    change_request = change_request_visible_to(request.user, change_id)
    if change_request is None:
        raise ApiError(404, "not_found", "No such change request.")
    return change_request


def _engaged_agent_slugs() -> tuple[bool, set[str]]:
    engaged = KillSwitch.objects.filter(released_at__isnull=True, is_drill=False)
    return (
        engaged.filter(scope=KillSwitch.Scope.GLOBAL).exists(),
        set(engaged.filter(scope=KillSwitch.Scope.AGENT).values_list("target", flat=True)),
    )


class AgentListView(GovernanceAPIView):
    @extend_schema(
        operation_id="list_agents",
        summary="Agents the caller may see",
        responses={200: {"type": "array", "items": {"type": "object"}}},
    )
    def get(self, request: Request) -> Response:
        agents = list(visible_agents(request.user).select_related("tier", "current_policy"))
        pending = pending_counts([a.pk for a in agents])
        global_switch, switched = _engaged_agent_slugs()
        return Response(
            [
                agent_summary(
                    agent,
                    pending=pending.get(agent.pk, 0),
                    switch_engaged=global_switch or agent.slug in switched,
                )
                for agent in agents
            ]
        )

    @extend_schema(
        operation_id="register_agent",
        summary="Register an agent (bottom tier, no tools)",
        request=RegisterAgentInSerializer,
        responses={201: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request) -> Response:
        require_token_scope(request, "govern")
        data = valid_body(RegisterAgentInSerializer, request)
        agent = actions.register(user=request.user, **data)
        return Response(agent_summary(agent), status=status.HTTP_201_CREATED)


class AgentDetailView(GovernanceAPIView):
    @extend_schema(
        operation_id="get_agent",
        summary="An agent's tier, rules, tokens, policy",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request, slug: str) -> Response:
        agent = _agent(request, slug)
        global_switch, switched = _engaged_agent_slugs()
        data = agent_summary(
            agent,
            pending=pending_counts([agent.pk]).get(agent.pk, 0),
            switch_engaged=global_switch or agent.slug in switched,
        )
        snapshot = agent.current_policy.snapshot if agent.current_policy else {}
        data.update(
            {
                "description": agent.description,
                "tier_ladder": [t.as_policy() for t in Tier.objects.order_by("rank")],
                "tools": snapshot.get("tools", {}),
                "policy": snapshot,
                "tokens": AgentTokenSerializer(
                    agent.tokens.order_by("-created_at"), many=True
                ).data,
                # Only for those who may read the agent's governance (as /changes/<id>).
                "open_change_requests": list(
                    visible_change_requests(request.user)
                    .filter(agent=agent, status=ChangeRequest.Status.OPEN)
                    .values_list("id", flat=True)
                ),
            }
        )
        return Response(data)


class AgentChangesView(GovernanceAPIView):
    @extend_schema(
        operation_id="list_agent_changes",
        summary="The agent's change requests",
        responses={200: ChangeRequestSerializer(many=True)},
    )
    def get(self, request: Request, slug: str) -> Response:
        agent = _agent(request, slug)
        if not can_read_governance(request.user, agent):
            raise ApiError(403, "permission_denied", "You may not read this agent's governance.")
        requests_ = visible_change_requests(request.user).filter(agent=agent)[:200]
        return Response(ChangeRequestSerializer(requests_, many=True).data)

    @extend_schema(
        operation_id="propose_change",
        summary="Propose a change: a tightening applies at once, else a change request opens",
        request=ProposalInSerializer,
        responses={201: OpenApiTypes.OBJECT},
        examples=[
            OpenApiExample(
                "Weigh the refund's amount argument (a tightening)",
                request_only=True,
                value={
                    "changes": {
                        "tools": {
                            "create_refund_request": {
                                "blast_radius_from_arguments": {"amount": "amount"}
                            }
                        }
                    },
                    "reason": "risk follows the amount actually refunded",
                },
            )
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        require_token_scope(request, "govern")
        agent = _governed(request, slug)
        data = valid_body(ProposalInSerializer, request)
        result = actions.propose_change(
            agent=agent,
            user=request.user,
            changes=data["changes"],
            reason=data["reason"],
            required_approvals=data.get("required_approvals", 1),
        )
        return _proposal_response(result)


def _proposal_response(result: actions.ProposalResult) -> Response:
    """What a proposed change did: applied at once (``policy_version``), or opened a change
    request — after applying its tightening parts as ``policy_version`` when asked to
    (``applied_changes``)."""
    return Response(
        {
            "classification": result.classification,
            "applied": result.applied,
            "changes": [change.as_dict() for change in result.changes],
            "policy_version": result.policy_version.number if result.policy_version else None,
            "applied_changes": [change.as_dict() for change in result.applied_changes],
            "change_request": (
                ChangeRequestSerializer(result.change_request).data
                if result.change_request
                else None
            ),
        },
        status=status.HTTP_201_CREATED,
    )


class PolicyVersionListView(GovernanceAPIView):
    @extend_schema(
        operation_id="list_policy_versions", responses={200: PolicyVersionSerializer(many=True)}
    )
    def get(self, request: Request, slug: str) -> Response:
        agent = _agent(request, slug)
        versions = agent.policy_versions.order_by("-number")[:500]
        return Response(PolicyVersionSerializer(versions, many=True).data)


class PolicyVersionDetailView(GovernanceAPIView):
    @extend_schema(
        operation_id="get_policy_version", responses={200: PolicyVersionDetailSerializer}
    )
    def get(self, request: Request, slug: str, number: int) -> Response:
        agent = _agent(request, slug)
        version = agent.policy_versions.filter(number=number).first()
        if version is None:
            raise ApiError(404, "not_found", "No such policy version.")
        return Response(PolicyVersionDetailSerializer(version).data)


class PolicyVersionRevertView(GovernanceAPIView):
    @extend_schema(
        operation_id="revert_to_policy_version",
        summary="Propose reverting the agent to this policy version",
        description=(
            "Proposes the change that brings the agent's tier, tool rules (every field; a "
            "tool ruled now but absent from the version is removed), rate limit and "
            "activity back to this version — never its access, which would re-grant people "
            "removed since. It is an ordinary proposed change: a tightening applies at once, "
            "anything else opens a change request another governance owner must approve; "
            "with `apply_tightening_now`, a mixed change applies its tightening parts first "
            "(`applied_changes`, `policy_version`). `409 nothing_to_revert` when the version "
            "already matches the live policy in all of these."
        ),
        request=RevertInSerializer,
        responses={201: OpenApiTypes.OBJECT},
        examples=[
            OpenApiExample(
                "Roll back a bad change, applying what only tightens at once",
                request_only=True,
                value={"reason": "Revert to version 3", "apply_tightening_now": True},
            )
        ],
    )
    def post(self, request: Request, slug: str, number: int) -> Response:
        require_token_scope(request, "govern")
        agent = _governed(request, slug)
        data = valid_body(RevertInSerializer, request)
        result = actions.revert_to_version(
            agent=agent,
            number=number,
            user=request.user,
            reason=data.get("reason"),
            required_approvals=data.get("required_approvals", 1),
            apply_tightening_now=data.get("apply_tightening_now", False),
        )
        return _proposal_response(result)


class PolicyDiffView(GovernanceAPIView):
    @extend_schema(
        operation_id="diff_policy_versions",
        parameters=[
            OpenApiParameter("from", int, required=True),
            OpenApiParameter("to", int, required=True),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request, slug: str) -> Response:
        agent = _agent(request, slug)
        try:
            numbers = int(request.query_params["from"]), int(request.query_params["to"])
        except (KeyError, ValueError):
            raise ApiError(
                400, "invalid", "Give ?from=N&to=M (version numbers).", {"from": ["Required."]}
            ) from None
        versions = {v.number: v for v in agent.policy_versions.filter(number__in=numbers)}
        if any(n not in versions for n in numbers):
            raise ApiError(404, "not_found", "No such policy version.")
        old, new = versions[numbers[0]], versions[numbers[1]]
        return Response(
            {"from": old.number, "to": new.number, **diff_policies(old.snapshot, new.snapshot)}
        )


class ReadinessView(GovernanceAPIView):
    @extend_schema(operation_id="get_promotion_readiness", responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, slug: str) -> Response:
        return Response(readiness_data(compute_readiness(_agent(request, slug))))


class BacktestView(GovernanceAPIView):
    @extend_schema(
        operation_id="backtest_policy",
        summary="Replay recorded actions through a proposed tier or change (read-only)",
        request=BacktestInSerializer,
        responses={200: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request, slug: str) -> Response:
        agent = _agent(request, slug)
        data = valid_body(BacktestInSerializer, request)
        if "tier" in data:
            changes: Any = {"tier": data["tier"]}
        elif "changes" in data:
            changes = data["changes"]
        else:
            raise ApiError(400, "invalid", "Give a tier or changes.", {"tier": ["Required."]})
        proposal = actions.preview_change(agent=agent, changes=changes)
        result = backtest_change(agent, proposal.after, days=data["days"])
        return Response(
            {
                "classification": proposal.classification,
                "changes": [change.as_dict() for change in proposal.changes],
                **backtest_data(result),
            }
        )


class TokenListView(GovernanceAPIView):
    @extend_schema(
        operation_id="list_agent_tokens", responses={200: AgentTokenSerializer(many=True)}
    )
    def get(self, request: Request, slug: str) -> Response:
        agent = _agent(request, slug)
        return Response(AgentTokenSerializer(agent.tokens.order_by("-created_at"), many=True).data)

    @extend_schema(
        operation_id="issue_agent_token",
        summary="Issue a token; the token is in this response only",
        request=TokenInSerializer,
        responses={201: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request, slug: str) -> Response:
        require_token_scope(request, "govern")
        agent = _governed(request, slug)
        require_step_up(request, "issue an agent token")
        data = valid_body(TokenInSerializer, request)
        token = actions.issue_token(
            agent=agent, user=request.user, name=data["name"], environment=data["environment"]
        )
        record = agent.tokens.get(token_hash=token_digest(token))
        response = Response(
            {**AgentTokenSerializer(record).data, "token": token}, status=status.HTTP_201_CREATED
        )
        response["Cache-Control"] = "no-store"
        return response


class WebhookSecretView(GovernanceAPIView):
    @extend_schema(
        operation_id="rotate_agent_webhook_secret",
        summary="Rotate the agent's webhook secret; the new secret is in this response only",
        description=(
            "Governors of the agent (a session, or a personal token with the `govern` scope). "
            "Needs a recent second factor when step-up is on (`X-Airlock-OTP`). The previous "
            "secret keeps signing, as a second signature, until `previous_accepted_until`."
        ),
        request=None,
        responses={200: OpenApiTypes.OBJECT},
        examples=[
            OpenApiExample(
                "Rotated",
                value={
                    "agent": "support-assistant",
                    "webhook_secret": "whsec_…",
                    "previous_accepted_until": "2026-12-04T05:00:00Z",
                },
                response_only=True,
            )
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        require_token_scope(request, "govern")
        agent = _governed(request, slug)
        require_step_up(request, "rotate the webhook secret")
        secret = actions.rotate_webhook_secret(agent=agent, user=request.user)
        agent.refresh_from_db(fields=["previous_webhook_secret_until"])
        until = agent.previous_webhook_secret_until
        response = Response(
            {
                "agent": agent.slug,
                "webhook_secret": secret,
                "previous_accepted_until": until.isoformat() if until else None,
            }
        )
        response["Cache-Control"] = "no-store"
        return response


class TokenRevokeView(GovernanceAPIView):
    @extend_schema(
        operation_id="revoke_agent_token", request=None, responses={200: AgentTokenSerializer}
    )
    def post(self, request: Request, slug: str, token_id: int) -> Response:
        require_token_scope(request, "govern")
        agent = _governed(request, slug)
        record = actions.revoke_token(agent=agent, token_id=token_id, user=request.user)
        return Response(AgentTokenSerializer(record).data)


class ShadowLabelView(GovernanceAPIView):
    @extend_schema(
        operation_id="label_shadow_action",
        summary="Label a shadow action would_approve / would_reject (reviewers)",
        request=ShadowLabelInSerializer,
        responses={201: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request, slug: str) -> Response:
        require_token_scope(request, "decide")
        agent = _agent(request, slug)
        data = valid_body(ShadowLabelInSerializer, request)
        if not Action.objects.filter(pk=data["action_id"], agent=agent).exists():
            raise ApiError(404, "not_found", "No such action for this agent.")
        label = actions.label_shadow_action(
            action_id=data["action_id"], user=request.user, label=data["label"]
        )
        return Response(
            {"action_id": label.action_id, "label": label.label, "reviewer": request.user.username},
            status=status.HTTP_201_CREATED,
        )


class ChangeListView(GovernanceAPIView):
    @extend_schema(
        operation_id="list_change_requests",
        parameters=[
            OpenApiParameter("status", str, enum=ChangeRequest.Status.values),
            OpenApiParameter("agent", str, description="Agent slug."),
        ],
        responses={200: ChangeRequestSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        requests_ = visible_change_requests(request.user)
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in ChangeRequest.Status.values:
                raise ApiError(
                    400,
                    "invalid",
                    "Unknown status.",
                    {"status": [f"One of {', '.join(ChangeRequest.Status.values)}."]},
                )
            requests_ = requests_.filter(status=wanted)
        if agent := request.query_params.get("agent"):
            if "\x00" in agent:  # PostgreSQL cannot compare text holding NUL: no such agent
                return Response([])
            requests_ = requests_.filter(agent__slug=agent)
        return Response(ChangeRequestSerializer(requests_[:200], many=True).data)


class ChangeDetailView(GovernanceAPIView):
    @extend_schema(operation_id="get_change_request", responses={200: ChangeRequestSerializer})
    def get(self, request: Request, change_id: int) -> Response:
        return Response(ChangeRequestSerializer(_change_request(request, change_id)).data)

    @extend_schema(
        operation_id="edit_change_request",
        summary="The author replaces the proposal; earlier approvals are voided",
        request=EditChangeInSerializer,
        responses={200: ChangeRequestSerializer},
    )
    def patch(self, request: Request, change_id: int) -> Response:
        require_token_scope(request, "govern")
        _change_request(request, change_id)
        data = valid_body(EditChangeInSerializer, request)
        change_request = actions.edit_change_request(
            change_request_id=change_id,
            user=request.user,
            changes=data["changes"],
            reason=data.get("reason"),
            required_approvals=data.get("required_approvals"),
        )
        return Response(ChangeRequestSerializer(change_request).data)


class ChangeApproveView(GovernanceAPIView):
    @extend_schema(
        operation_id="approve_change_request",
        request=ApproveInSerializer,
        responses={200: ChangeRequestSerializer},
    )
    def post(self, request: Request, change_id: int) -> Response:
        require_token_scope(request, "govern")
        _change_request(request, change_id)
        require_step_up(request, "approve a governance change")
        data = valid_body(ApproveInSerializer, request)
        change_request = actions.approve_change_request(
            change_request_id=change_id,
            user=request.user,
            revision=data.get("revision"),
            comment=data.get("comment", ""),
        )
        return Response(ChangeRequestSerializer(change_request).data)


class ChangeRejectView(GovernanceAPIView):
    @extend_schema(
        operation_id="reject_change_request",
        request=CommentInSerializer,
        responses={200: ChangeRequestSerializer},
    )
    def post(self, request: Request, change_id: int) -> Response:
        require_token_scope(request, "govern")
        _change_request(request, change_id)
        data = valid_body(CommentInSerializer, request)
        change_request = actions.reject_change_request(
            change_request_id=change_id, user=request.user, comment=data.get("comment", "")
        )
        return Response(ChangeRequestSerializer(change_request).data)


class ChangeWithdrawView(GovernanceAPIView):
    @extend_schema(
        operation_id="withdraw_change_request",
        request=CommentInSerializer,
        responses={200: ChangeRequestSerializer},
    )
    def post(self, request: Request, change_id: int) -> Response:
        require_token_scope(request, "govern")
        _change_request(request, change_id)
        data = valid_body(CommentInSerializer, request)
        change_request = actions.withdraw_change_request(
            change_request_id=change_id, user=request.user, comment=data.get("comment", "")
        )
        return Response(ChangeRequestSerializer(change_request).data)
