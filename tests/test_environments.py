"""Environments: an agent token bound to sandbox, staging or production acts only there.
The gate takes the environment from the token (a different declaration is denied,
``environment_mismatch``), idempotency keys and what an agent may read are per
environment, and the grant names the environment its tool service must run in."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

import tests.sdk_path  # noqa: F401
from approvals.models import Action
from audit.models import AuditEvent
from grants import keys
from rollout.models import AgentToken
from tests import factories

# isort: split
from airlock_sdk.grants import GrantRejected, KeySet, verify

pytestmark = pytest.mark.django_db

ORDER = {"order_id": "ORD-1"}


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    keys.forget_cached_key()
    yield
    keys.forget_cached_key()


class AgentClient:
    """The agent API as one token sees it."""

    def __init__(self, agent, environment: str = "") -> None:
        self.token = factories.make_token(agent, environment=environment)
        self.client = Client()

    def _headers(self, **extra) -> dict:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.token}", **extra}

    def submit(self, tool: str, arguments: dict, key: str | None = None, **body):
        return self.client.post(
            "/api/v1/actions",
            json.dumps({"tool": tool, "arguments": arguments, **body}),
            content_type="application/json",
            **self._headers(HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex),
        )

    def get(self, path: str):
        return self.client.get(path, **self._headers())

    def post(self, path: str, body: dict | None = None):
        return self.client.post(
            path, json.dumps(body or {}), content_type="application/json", **self._headers()
        )


# (token environment, declared blast_radius.environment or None, expected status,
#  reason code, recorded action environment, risk)
GATE_CASES = [
    # Risk is assessed in the token's environment, whatever the call declares.
    ("staging", "production", "denied", "environment_mismatch", "staging", "low"),
    ("staging", "prod", "denied", "environment_mismatch", "staging", "low"),
    ("production", "staging", "denied", "environment_mismatch", "production", "medium"),
    ("staging", " Staging ", "allowed", "allowed", "staging", "low"),
    ("staging", None, "allowed", "allowed", "staging", "low"),
    # A bound token that declares nothing acts in its environment: production's floor.
    ("production", None, "allowed", "allowed", "production", "medium"),
    ("production", "PRODUCTION", "allowed", "allowed", "production", "medium"),
    # An unbound token keeps today's behaviour: the declaration only raises risk.
    ("", "production", "allowed", "allowed", "", "medium"),
    ("", "staging", "allowed", "allowed", "", "low"),
    ("", None, "allowed", "allowed", "", "low"),
]


@pytest.mark.parametrize(
    ("token_env", "declared", "status", "code", "recorded", "risk"), GATE_CASES
)
def test_gate__takes_the_environment_from_the_token(
    support_agent, token_env, declared, status, code, recorded, risk
):
    agent = AgentClient(support_agent, token_env)
    extra = {} if declared is None else {"blast_radius": {"environment": declared}}
    response = agent.submit("get_order_status", ORDER, **extra)
    assert response.status_code == 201, response.content
    answer = response.json()
    assert (answer["status"], answer["reason_code"]) == (status, code)
    assert answer["environment"] == recorded
    assert answer["risk"] == risk
    action = Action.objects.get(pk=answer["id"])
    assert action.environment == recorded
    event = AuditEvent.objects.get(verb="action.submitted", target_id=str(action.pk))
    assert event.data["reason_code"] == code
    assert event.data["environment"] == recorded
    if status == "denied":
        # Recorded and audited like every denial; the agent is told why; nothing to run.
        assert "this token acts in" in answer["reasons"][0]
        assert answer["grant"] is None and action.grant == ""


def test_staging_token_cannot_act_in_production__even_for_a_call_people_would_approve(
    support_agent,
):
    staging = AgentClient(support_agent, "staging")
    answer = staging.submit(
        "send_email", {"to": "a@example.com"}, blast_radius={"environment": "production"}
    ).json()
    # Denied at the gate: never put in front of reviewers.
    assert (answer["status"], answer["reason_code"]) == ("denied", "environment_mismatch")
    assert not Action.objects.filter(status="pending").exists()


def test_bound_token__records_its_environment_in_the_blast_radius(support_agent):
    production = AgentClient(support_agent, "production")
    answer = production.submit("send_email", {"to": "a@example.com"}).json()
    action = Action.objects.get(pk=answer["id"])
    assert action.blast_radius == {"environment": "production"}
    assert action.status == "pending" and action.risk == "medium"


def test_idempotency_keys__are_scoped_per_environment(support_agent):
    staging = AgentClient(support_agent, "staging")
    production = AgentClient(support_agent, "production")
    first = staging.submit("get_order_status", ORDER, key="same-key")
    second = production.submit("get_order_status", ORDER, key="same-key")
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    assert first.json()["environment"] == "staging"
    assert second.json()["environment"] == "production"
    # Within one environment the key still replays (or conflicts) as before.
    again = AgentClient(support_agent, "staging").submit("get_order_status", ORDER, key="same-key")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    conflict = staging.submit("get_order_status", {"order_id": "other"}, key="same-key")
    assert conflict.status_code == 409 and conflict.json()["code"] == "idempotency_conflict"
    assert Action.objects.filter(idempotency_key="same-key").count() == 2


def test_agent_sees_only_its_environments_actions__another_is_404(support_agent):
    staging = AgentClient(support_agent, "staging")
    production = AgentClient(support_agent, "production")
    unbound = AgentClient(support_agent)
    pending = production.submit("send_email", {"to": "a@example.com"}, lease_seconds=60).json()
    allowed = production.submit("get_order_status", ORDER).json()
    path = f"/api/v1/actions/{pending['id']}"
    for other in (staging, unbound):
        assert other.get(path).status_code == 404
        assert other.post(f"{path}/heartbeat").status_code == 404
        assert other.post(f"{path}/withdraw").status_code == 404
        report = other.post(
            f"/api/v1/actions/{allowed['id']}/execution",
            {"outcome": "succeeded", "payload_hash": allowed["payload_hash"]},
        )
        assert report.status_code == 404 and report.json()["code"] == "not_found"
    assert Action.objects.get(pk=pending["id"]).status == "pending"
    # Another token of the same environment is the same agent acting there.
    same_env = AgentClient(support_agent, "production")
    assert same_env.get(path).status_code == 200
    assert same_env.post(f"{path}/withdraw").json()["status"] == "cancelled"


def test_grant__carries_the_environment_and_verify_checks_it(client, support_agent):
    key_set = KeySet(client.get("/.well-known/airlock-grant-keys.json").json())
    staging = AgentClient(support_agent, "staging").submit("get_order_status", ORDER).json()
    grant = verify(
        staging["grant"], tool="get_order_status", arguments=ORDER, env="staging", keys=key_set
    )
    assert grant.environment == "staging"
    with pytest.raises(GrantRejected) as refused:
        verify(
            staging["grant"],
            tool="get_order_status",
            arguments=ORDER,
            env="production",
            keys=key_set,
        )
    assert refused.value.code == "wrong_environment"
    # An unbound token's grant names no environment: a service in one refuses it.
    unbound = AgentClient(support_agent).submit("get_order_status", ORDER).json()
    assert verify(unbound["grant"], tool="get_order_status", arguments=ORDER, keys=key_set)
    with pytest.raises(GrantRejected):
        verify(
            unbound["grant"], tool="get_order_status", arguments=ORDER, env="staging", keys=key_set
        )


def test_issuing_a_token__names_a_configured_environment(support_agent, reference_data):
    governor = factories.make_user("gwen", groups=("governance_owner",))
    client = Client()
    client.force_login(governor)
    url = "/api/v1/agents/support-assistant/tokens"
    made = client.post(url, {"name": "ci", "environment": " Staging "}, "application/json")
    assert made.status_code == 201 and made.json()["environment"] == "staging"
    listed = client.get(url).json()
    assert [t["environment"] for t in listed] == ["staging"]
    issued = AuditEvent.objects.get(verb="agent.token_issued")
    assert issued.data["environment"] == "staging"

    before = AgentToken.objects.count(), AuditEvent.objects.count()
    refused = client.post(url, {"name": "x", "environment": "qa"}, "application/json")
    assert refused.status_code == 400
    body = refused.json()
    assert body["code"] == "invalid_environment" and "environment" in body["fields"]
    assert "sandbox, staging, production" in body["detail"]
    assert (AgentToken.objects.count(), AuditEvent.objects.count()) == before


def test_agent_token_command__binds_an_environment(support_agent):
    out = io.StringIO()
    call_command("agent_token", "support-assistant", "--environment", "sandbox", stdout=out)
    assert AgentToken.objects.get(prefix=out.getvalue().strip()[:10]).environment == "sandbox"
    with pytest.raises(CommandError, match="Unknown environment 'moon'"):
        call_command("agent_token", "support-assistant", "--environment", "moon")
    assert AgentToken.objects.count() == 1


# --------------------------------------------------------------- environment kill switches

ENGINE_SNAPSHOT = {
    "agent": {"slug": "bot", "active": True, "rate_limit_per_minute": None},
    "tier": {
        "name": "supervised",
        "rank": 3,
        "outcomes": {"read": "allow", "draft": "allow", "write": "pending"},
        "auto_approve_max_risk": "",
    },
    "tools": {
        "lookup": {"effect": "read", "rule": "allowed", "base_risk": "low", "argument_limits": []}
    },
}

# (switch environment, token environment, declared environment, denied by the switch?)
# Only a token vouches for an environment: an unbound token's calls are stopped by every
# environment's switch, whatever they declare (declaring "staging" must not slip past a
# production switch).
SWITCH_CASES = [
    ("production", "production", "", True),
    ("production", "staging", "", False),
    ("production", "", "production", True),
    ("production", "", " PRODUCTION ", True),
    ("production", "", "staging", True),  # the agent's word: stopped all the same
    ("production", "", "", True),
    ("", "staging", "", True),  # a switch of every environment stops them all
    ("", "", "", True),
]


@pytest.mark.parametrize(("switch_env", "token_env", "declared", "stopped"), SWITCH_CASES)
def test_engine__an_environment_switch_applies_only_in_its_environment(
    switch_env, token_env, declared, stopped
):
    from rollout.policy import GateRequest, SwitchState, evaluate

    radius = {"environment": declared} if declared else {}
    request = GateRequest("lookup", {}, radius, environment=token_env)
    decision = evaluate(ENGINE_SNAPSHOT, request, [SwitchState(4, "global", "", False, switch_env)])
    assert (decision.reason_code == "kill_switch") is stopped
    if stopped and switch_env:
        assert decision.reasons == [f"kill switch engaged on everything in {switch_env}"]


def test_production_switch__stops_production_and_leaves_staging_running(support_agent):
    from audit.chain import Actor
    from incidents.actions import engage_kill_switch, release_kill_switch

    staging = AgentClient(support_agent, "staging")
    production = AgentClient(support_agent, "production")
    unbound = AgentClient(support_agent)
    email = {"to": "a@example.com"}
    prod_pending = production.submit("send_email", email).json()
    prod_allowed = production.submit("get_order_status", ORDER).json()
    declared_prod = unbound.submit(
        "send_email", email, blast_radius={"environment": " Production "}
    ).json()
    staging_pending = staging.submit("send_email", email).json()
    staging_allowed = staging.submit("get_order_status", ORDER).json()
    unbound_pending = unbound.submit("send_email", email).json()

    switch = engage_kill_switch(
        scope="agent",
        target="support-assistant",
        reason="bad deploy in production",
        actor=Actor.system("tests"),
        environment="production",
    )
    # Production's and the unbound token's (where those run is only the agent's word);
    # staging's keep running.
    assert switch.stopped_counts == {"cancelled": 3, "revoked": 1}
    status = dict(Action.objects.values_list("id", "status"))
    assert status[prod_pending["id"]] == "cancelled"
    assert status[declared_prod["id"]] == "cancelled"
    assert status[prod_allowed["id"]] == "revoked"
    assert status[staging_pending["id"]] == "pending"
    assert status[staging_allowed["id"]] == "allowed"
    assert status[unbound_pending["id"]] == "cancelled"
    engaged = AuditEvent.objects.get(verb="kill_switch.engaged")
    assert engaged.data["environment"] == "production"

    denied = production.submit("get_order_status", ORDER).json()
    assert (denied["status"], denied["reason_code"]) == ("denied", "kill_switch")
    assert "in production" in denied["reasons"][0]
    assert staging.submit("get_order_status", ORDER).json()["status"] == "allowed"
    # An unbound token cannot step out of the switch by declaring another environment.
    for radius in ({}, {"environment": "production"}, {"environment": "staging"}):
        answer = unbound.submit("get_order_status", ORDER, blast_radius=radius).json()
        assert answer["reason_code"] == "kill_switch", radius

    release_kill_switch(switch_id=switch.pk, reason="fixed", actor=Actor.system("tests"))
    assert production.submit("get_order_status", ORDER).json()["status"] == "allowed"
    assert unbound.submit("get_order_status", ORDER).json()["status"] == "allowed"


def test_engaging_a_switch__refuses_an_unknown_environment(incident_owner, support_agent):
    from rollout.models import KillSwitch

    client = Client()
    client.force_login(incident_owner)
    body = {"scope": "global", "reason": "x", "environment": "moon"}
    refused = client.post("/api/v1/kill-switches", body, "application/json")
    assert refused.status_code == 400, refused.content
    assert refused.json()["code"] == "invalid_environment"
    assert "environment" in refused.json()["fields"]
    assert not KillSwitch.objects.exists()
    body["environment"] = "staging"
    made = client.post("/api/v1/kill-switches", body, "application/json")
    assert made.status_code == 201 and made.json()["environment"] == "staging"

    out = io.StringIO()
    call_command(
        "kill", "tool", "send_email", "--reason", "r", "--environment", "sandbox", stdout=out
    )
    assert "tool:send_email in sandbox" in out.getvalue()
    with pytest.raises(CommandError, match="Unknown environment"):
        call_command("kill", "global", "--reason", "r", "--environment", "moon")


def test_queue__shows_each_cards_environment_and_filters_by_it(support_agent, reviewer):
    email = {"to": "a@example.com"}
    in_production = AgentClient(support_agent, "production").submit("send_email", email).json()
    in_staging = AgentClient(support_agent, "staging").submit("send_email", email).json()
    declared = (
        AgentClient(support_agent)
        .submit("send_email", email, blast_radius={"environment": "Production"})
        .json()
    )
    client = Client()
    client.force_login(reviewer)
    everything = client.get("/").content.decode()
    for answer in (in_production, in_staging, declared):
        assert f'id="card-{answer["id"]}"' in everything
    assert '<span class="badge badge-env" title="Environment of the agent\'s token">staging' in (
        everything
    )
    production = client.get("/", {"environment": "production"}).content.decode()
    assert f'id="card-{in_production["id"]}"' in production
    assert f'id="card-{declared["id"]}"' in production
    assert f'id="card-{in_staging["id"]}"' not in production


def test_incidents_page__an_unknown_environment_is_refused_next_to_its_field(
    incident_owner, support_agent
):
    from rollout.models import KillSwitch

    client = Client()
    client.force_login(incident_owner)
    form = {"scope": "tool", "target": "send_email", "reason": "mail storm"}
    refused = client.post("/incidents/engage", {**form, "environment": "moon"})
    assert refused.status_code == 400
    page = refused.content.decode()
    assert 'id="environment-tool-error"' in page and "Unknown environment" in page
    assert 'value="mail storm"' in page  # what was typed is kept
    assert not KillSwitch.objects.exists()
    engaged = client.post("/incidents/engage", {**form, "environment": "production"})
    assert engaged.status_code == 302
    assert KillSwitch.objects.get().environment == "production"
