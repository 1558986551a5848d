"""The benchmark's two floors, on the same stack as the gate (ASGI server, Django middleware,
DRF request/response cycle, JSON renderer).

- ``TrivialFloorView``: no authentication, no database; the framework's floor.
- ``DurableFloorView``: authenticates the agent's bearer token exactly as the gate does
  (``AgentTokenAuthentication`` + ``IsAgent``), then inserts one row in one transaction:
  the floor of doing anything durable for an agent. No throttle (the gate has one), so
  this floor is, if anything, a little faster than the gate's true minimum.
"""

from __future__ import annotations

import json
import os

from django.db import connection, transaction
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.permissions import IsAgent
from rollout.authentication import AgentTokenAuthentication

FLOOR_TABLE = "bench_durable_floor"
# Created by benchmarks.prepare (a cursor, not a migration: the benchmark adds no model).
CREATE_FLOOR_TABLE = f"""
CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (
    id bigserial PRIMARY KEY,
    agent_id bigint NOT NULL,
    idempotency_key varchar(200) NOT NULL,
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
PID = str(os.getpid())


class TrivialFloorView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    def post(self, request: Request) -> Response:
        # The worker's pid lets the benchmark client spread its connections over workers.
        return Response({"ok": True}, headers={"X-Worker-Pid": PID})


class DurableFloorView(APIView):
    authentication_classes = [AgentTokenAuthentication]
    permission_classes = [IsAgent]
    throttle_classes: list = []

    def post(self, request: Request) -> Response:
        key = request.headers.get("Idempotency-Key", "")
        body = json.dumps(request.data)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {FLOOR_TABLE} (agent_id, idempotency_key, body) "
                "VALUES (%s, %s, %s) RETURNING id",
                [request.user.agent.pk, key, body],
            )
            (row_id,) = cursor.fetchone()
        return Response({"ok": True, "id": row_id}, status=201)
