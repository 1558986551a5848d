"""Issue 16 class 10: ``airlock.probe`` is inside default-deny. Only a running drill's own
one-time token, calling the bare probe, is recognised as a drill probe; for an agent's
token the name is an unknown tool like any other."""

import json
import uuid

import pytest
from django.utils import timezone

from approvals.models import Action
from audit.chain import Actor
from incidents.actions import engage_kill_switch
from incidents.drills import issue_probe_token
from incidents.models import Drill
from rollout.actions import revoke_agent_token
from rollout.policy import PROBE_TOOL
from tests import factories

INCIDENT = Actor.system("drill-test")


def gate(client, token: str, body: dict):
    return client.post(
        "/api/v1/actions",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
    )


@pytest.fixture
def drill(support_agent):
    return Drill.objects.create(agent=support_agent, started_by="t")


@pytest.mark.parametrize(
    "arguments", [{}, {"probe": True}, {"path": "/etc/passwd"}], ids=["bare", "probe", "other"]
)
def test_agent_token__probe_tool__denied_tool_unknown(client, support_agent, arguments):
    token = factories.make_token(support_agent)
    response = gate(client, token, {"tool": PROBE_TOOL, "arguments": arguments})
    assert response.status_code == 201
    assert (response.json()["status"], response.json()["reason_code"]) == (
        "denied",
        "tool_unknown",
    )


def test_drill_token__bare_probe__allowed_then_stopped_by_its_drill_switch(
    client, support_agent, drill
):
    token = issue_probe_token(drill=drill, actor=INCIDENT)
    first = gate(client, token, {"tool": PROBE_TOOL, "arguments": {}})
    assert (first.json()["status"], first.json()["risk"]) == ("allowed", "low")
    engage_kill_switch(
        scope="agent", target=support_agent.slug, reason="drill", actor=INCIDENT, is_drill=True
    )
    stopped = gate(client, token, {"tool": PROBE_TOOL, "arguments": {}})
    assert stopped.json()["reason_code"] == "kill_switch"
    # The agent's own token is not stopped by the drill switch: it was never allowed.
    agent_token = factories.make_token(support_agent)
    own = gate(client, agent_token, {"tool": PROBE_TOOL, "arguments": {}})
    assert own.json()["reason_code"] == "tool_unknown"


@pytest.mark.parametrize(
    "body",
    [
        {"tool": PROBE_TOOL, "arguments": {"probe": True}},
        {"tool": PROBE_TOOL, "arguments": {}, "blast_radius": {"reversible": False}},
        {"tool": "send_email", "arguments": {"to": "a@example.com"}},
    ],
    ids=["arguments", "blast-radius", "real-tool"],
)
def test_drill_token__anything_but_the_bare_probe__refused(client, drill, body):
    token = issue_probe_token(drill=drill, actor=INCIDENT)
    response = gate(client, token, body)
    assert response.status_code == 403
    assert response.json()["code"] == "drill_token"
    assert not Action.objects.exists()


def test_drill_token__after_its_drill_finished__refused(client, drill):
    token = issue_probe_token(drill=drill, actor=INCIDENT)
    Drill.objects.filter(pk=drill.pk).update(finished_at=timezone.now())
    response = gate(client, token, {"tool": PROBE_TOOL, "arguments": {}})
    assert (response.status_code, response.json()["code"]) == (403, "drill_token")


def test_drill_token__of_a_drill_that_never_finished__expires(client, drill):
    token = issue_probe_token(drill=drill, actor=INCIDENT)
    Drill.objects.filter(pk=drill.pk).update(
        started_at=timezone.now() - timezone.timedelta(hours=1)
    )
    response = gate(client, token, {"tool": PROBE_TOOL, "arguments": {}})
    assert (response.status_code, response.json()["code"]) == (403, "drill_token")


def test_drill_token__revoked_at_the_end__refused(client, drill):
    token = issue_probe_token(drill=drill, actor=INCIDENT)
    revoke_agent_token(token_id=Drill.objects.get(pk=drill.pk).probe_token_id, actor=INCIDENT)
    response = gate(client, token, {"tool": PROBE_TOOL, "arguments": {}})
    assert response.status_code == 401
    assert not Action.objects.exists()


def test_drill_token__of_another_drill__does_not_make_a_probe_for_this_one(
    client, support_agent, other_agent
):
    other = Drill.objects.create(agent=other_agent, started_by="t")
    token = issue_probe_token(drill=other, actor=INCIDENT)
    engage_kill_switch(
        scope="agent", target=support_agent.slug, reason="drill", actor=INCIDENT, is_drill=True
    )
    response = gate(client, token, {"tool": PROBE_TOOL, "arguments": {}})
    # The token is the other agent's: its drill switch is not engaged, support's does not apply.
    assert response.json()["status"] == "allowed"
    assert Action.objects.get().agent == other_agent
