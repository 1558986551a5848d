"""The kill-switch API (v1): people list, engage and release switches. Thin DRF views over
``incidents.actions``; ``rollout.permissions`` decides who may see and operate a switch."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import require_step_up, require_token_scope
from audit.chain import Actor
from core.api import AirlockAPIView, valid_body
from core.api_errors import ApiError
from core.permissions import IsPerson
from core.serializers import ReasonSerializer
from incidents.actions import engage_kill_switch, release_kill_switch
from incidents.serializers import KillSwitchInSerializer, KillSwitchSerializer
from rollout import permissions as agent_perms
from rollout.models import KillSwitch


def _switch_data(switch: KillSwitch) -> dict:
    data = KillSwitchSerializer(switch).data
    counts = getattr(switch, "stopped_counts", None)
    if counts is not None:
        data["stopped"] = counts
    return data


class KillSwitchListView(AirlockAPIView):
    permission_classes = [IsPerson]

    @extend_schema(
        operation_id="list_kill_switches", responses={200: KillSwitchSerializer(many=True)}
    )
    def get(self, request: Request) -> Response:
        if not agent_perms.can_see_incidents(request.user):
            raise ApiError(403, "permission_denied", "You may not see kill switches.")
        switches = KillSwitch.objects.all()[:200]
        return Response(KillSwitchSerializer(switches, many=True).data)

    @extend_schema(
        operation_id="engage_kill_switch",
        request=KillSwitchInSerializer,
        responses={201: KillSwitchSerializer},
        description=(
            "Engage a kill switch. The target must be known: an agent slug that exists "
            "(agent scope), a tool some agent's rule names (tool scope) unless "
            "`allow_unknown_tool` is true; otherwise 400 with code `unknown_target` and "
            "the field `target`."
        ),
    )
    def post(self, request: Request) -> Response:
        require_token_scope(request, "kill")
        data = valid_body(KillSwitchInSerializer, request)
        target = data.get("target", "")
        if not agent_perms.can_operate_switch(request.user, data["scope"], target):
            raise ApiError(403, "permission_denied", "You may not engage this kill switch.")
        switch = engage_kill_switch(
            scope=data["scope"],
            target=target,
            reason=data["reason"],
            actor=Actor.user(request.user),
            allow_unknown_tool=data.get("allow_unknown_tool", False),
            environment=data["environment"],
        )
        return Response(_switch_data(switch), status=status.HTTP_201_CREATED)


class KillSwitchReleaseView(AirlockAPIView):
    permission_classes = [IsPerson]

    @extend_schema(
        operation_id="release_kill_switch",
        request=ReasonSerializer,
        responses={200: KillSwitchSerializer},
    )
    def post(self, request: Request, switch_id: int) -> Response:
        require_token_scope(request, "kill")
        switch = KillSwitch.objects.filter(pk=switch_id).first()
        # Switches are listed to whoever may see incidents; to anyone else they do not exist.
        if switch is None or not agent_perms.can_see_incidents(request.user):
            raise ApiError(404, "not_found", "No such kill switch.")
        if not agent_perms.can_operate_switch(request.user, switch.scope, switch.target):
            raise ApiError(403, "permission_denied", "You may not release this kill switch.")
        data = valid_body(ReasonSerializer, request)
        require_step_up(request, "release a kill switch")
        switch = release_kill_switch(
            switch_id=switch_id, reason=data["reason"], actor=Actor.user(request.user)
        )
        return Response(_switch_data(switch))
