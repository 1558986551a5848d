"""The online grant check (service tokens): once-only use across replicas, revocation by a
kill switch, the revocation list — over HTTP against the running server."""

from __future__ import annotations

import threading

import httpx
import pytest
from django.core.management import call_command

import tests.sdk_path  # noqa: F401
from approvals import actions
from approvals.models import Action
from audit.chain import Actor
from audit.models import AuditEvent
from grants import keys
from grants.services import issue_service_token, revoke_service_token
from incidents.actions import engage_kill_switch
from tests import factories
from tests.grant_support import tool_service

# isort: split
from airlock_sdk.grants import GrantRejected, KeySet, OnlineCheck

pytestmark = pytest.mark.django_db(transaction=True)

DRAFT = {"subject": "Late parcel", "body": "Customer called back"}


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    keys.forget_cached_key()
    yield
    keys.forget_cached_key()


@pytest.fixture
def service_token(reference_data) -> str:
    return issue_service_token(name="ticketing", actor=Actor.system("tests"))[1]


def allowed(agent, tool: str = "create_ticket_draft", arguments: dict | None = None) -> Action:
    action = factories.submit(agent, tool, DRAFT if arguments is None else arguments)
    assert action.status == "allowed" and action.grant
    return action


def ask(live_api: httpx.Client, token: str, **body) -> httpx.Response:
    return live_api.post(
        "/api/v1/grants/verify", json=body, headers={"Authorization": f"Bearer {token}"}
    )


def test_consume__ok_once__then_used__audited(live_api, service_token, support_agent):
    action = allowed(support_agent)

    first = ask(
        live_api,
        service_token,
        grant=action.grant,
        tool="create_ticket_draft",
        arguments=DRAFT,
        environment=None,
        consume=True,
    )
    second = ask(live_api, service_token, grant=action.grant, consume=True)
    peek = ask(live_api, service_token, grant=action.grant)

    assert first.status_code == 200, first.content
    assert first.json() == {
        "valid": True,
        "code": "ok",
        "detail": "The grant allows this call.",
        "action": action.pk,
        "agent": support_agent.slug,
        "tool": "create_ticket_draft",
    }
    assert (second.json()["valid"], second.json()["code"]) == (False, "used")
    assert peek.json()["code"] == "used"
    event = AuditEvent.objects.get(verb="grant.consumed", target_id=str(action.pk))
    assert event.actor == "service:ticketing"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"tool": "send_email"}, "wrong_tool"),
        ({"arguments": {**DRAFT, "body": "other"}}, "wrong_arguments"),
        ({"environment": "production"}, "wrong_environment"),
        ({"grant": "not.a.grant"}, "malformed"),
    ],
)
def test_binding_questions__refused_with_the_reason__nothing_used(
    live_api, service_token, support_agent, body, code
):
    action = allowed(support_agent)
    answer = ask(live_api, service_token, **{"grant": action.grant, "consume": True, **body})
    assert (answer.status_code, answer.json()["valid"], answer.json()["code"]) == (200, False, code)
    action.refresh_from_db()
    assert action.grant_used_at is None


def test_two_replicas_consume_at_once__exactly_one_ok(live_api, service_token, support_agent):
    action = allowed(support_agent)
    answers: list[str] = []
    barrier = threading.Barrier(8)

    def replica() -> None:
        with httpx.Client(base_url=live_api.base_url, timeout=60) as client:
            barrier.wait()
            answers.append(
                ask(client, service_token, grant=action.grant, consume=True).json()["code"]
            )

    threads = [threading.Thread(target=replica) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(answers) == ["ok"] + ["used"] * 7


def test_kill_switch__revokes_live_grants__check_and_revocation_list_say_so(
    live_api, service_token, support_agent, other_agent
):
    mine = allowed(support_agent)
    theirs = allowed(other_agent)
    start = live_api.get(
        "/api/v1/grants/revocations", headers={"Authorization": f"Bearer {service_token}"}
    ).json()

    engage_kill_switch(
        scope="agent", target=support_agent.slug, reason="leaking data", actor=Actor.system("t")
    )

    revoked = ask(live_api, service_token, grant=mine.grant, consume=True).json()
    assert (revoked["valid"], revoked["code"]) == (False, "revoked")
    assert "leaking data" in revoked["detail"]
    assert ask(live_api, service_token, grant=theirs.grant).json()["code"] == "ok"
    listed = live_api.get(
        "/api/v1/grants/revocations",
        params={"since": start["next"]},
        headers={"Authorization": f"Bearer {service_token}"},
    ).json()
    assert [r["grant_id"] for r in listed["revocations"]] == [mine.grant_id]
    again = live_api.get(
        "/api/v1/grants/revocations",
        params={"since": listed["next"]},
        headers={"Authorization": f"Bearer {service_token}"},
    ).json()
    assert again["revocations"] == []


def test_sdk_online_check__fails_closed_and_reports_the_code(
    live_api, service_token, support_agent
):
    action = allowed(support_agent)
    online = OnlineCheck(str(live_api.base_url), service_token)
    online.check(action.grant)
    with pytest.raises(GrantRejected) as used:
        online.check(action.grant)
    assert used.value.code == "used"
    with pytest.raises(GrantRejected) as bad_token:
        OnlineCheck(str(live_api.base_url), "als_not-a-token").check(action.grant)
    assert bad_token.value.code == "airlock_unavailable"


def test_who_may_ask__service_tokens_only(live_api, service_token, support_agent, reviewer):
    action = allowed(support_agent)
    agent_token = factories.make_token(support_agent)
    as_agent = ask(live_api, agent_token, grant=action.grant)
    anonymous = live_api.post("/api/v1/grants/verify", json={"grant": action.grant})
    revoke_service_token(name="ticketing", actor=Actor.system("tests"))
    revoked = ask(live_api, service_token, grant=action.grant)
    assert as_agent.status_code in (401, 403)
    assert anonymous.status_code in (401, 403)
    assert revoked.status_code == 401
    action.refresh_from_db()
    assert action.grant_used_at is None


def test_bad_question__400_with_field_detail(live_api, service_token):
    unknown = ask(live_api, service_token, grant="x.y.z", extra=1)
    assert (unknown.status_code, unknown.json()["fields"]) == (400, {"extra": ["Unknown field."]})
    answer = ask(live_api, service_token, grant="x" * 5000, consume="maybe")
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == "invalid" and {"grant", "consume"} == set(body["fields"]), body
    cursor = live_api.get(
        "/api/v1/grants/revocations",
        params={"since": "garbage"},
        headers={"Authorization": f"Bearer {service_token}"},
    )
    assert cursor.status_code == 400 and "since" in cursor.json()["fields"]


def test_service_token_command__issue_list_revoke(reference_data, capsys):
    call_command("service_token", "issue", "payments")
    token = capsys.readouterr().out.strip()
    assert token.startswith("als_")
    call_command("service_token", "list")
    assert "payments" in capsys.readouterr().out
    call_command("service_token", "revoke", "payments")
    assert capsys.readouterr().out.strip() == "revoked the token of payments"
    call_command("service_token", "list")
    assert "payments" not in capsys.readouterr().out
    assert AuditEvent.objects.filter(verb__startswith="service_token.").count() == 2


def test_tool_service_with_online_check__allowed_and_approved_calls_run_exactly_once(
    live_api, service_token, support_agent, reviewer
):
    from airlock_sdk import Airlock, current_grant

    token = factories.make_token(support_agent)
    airlock = Airlock(str(live_api.base_url), token)
    keyset = KeySet(live_api.get("/.well-known/airlock-grant-keys.json").json())
    online = OnlineCheck(str(live_api.base_url), service_token)
    email = {"to": "a@example.com", "subject": "Refund", "body": "Approved"}
    with tool_service(keyset, online) as service:
        seen: list[str] = []

        @airlock.gated(tool="create_ticket_draft", effect="draft")
        def draft_ticket(subject: str, body: str) -> int:
            seen.append(current_grant())
            headers = {"Airlock-Grant": current_grant()}
            answer = service.post(
                "/ticket_draft", json={"subject": subject, "body": body}, headers=headers
            )
            assert answer.status_code == 200, answer.text
            return answer.status_code

        # An allowed call through @gated: the tool service runs it; its grant replayed: refused.
        assert draft_ticket(subject="Late parcel", body="Called back") == 200
        replayed = service.post(
            "/ticket_draft",
            json={"subject": "Late parcel", "body": "Called back"},
            headers={"Airlock-Grant": seen[0]},
        )
        # An approved call: pending, a reviewer approves, the grant runs it once.
        pending = airlock.request("send_email", email)
        assert pending.status == "pending" and pending.grant is None
        actions.approve(action_id=pending.id, user=reviewer)
        approved = live_api.get(
            f"/api/v1/actions/{pending.id}", headers={"Authorization": f"Bearer {token}"}
        ).json()
        first = service.post(
            "/send_email", json=email, headers={"Airlock-Grant": approved["grant"]}
        )
        second = service.post(
            "/send_email", json=email, headers={"Airlock-Grant": approved["grant"]}
        )
        ran = service.ran

    assert (replayed.status_code, replayed.json()["code"]) == (403, "used")
    assert first.status_code == 200
    assert (second.status_code, second.json()["code"]) == (403, "used")
    assert [entry["body"] for entry in ran] == [
        {"subject": "Late parcel", "body": "Called back"},
        email,
    ]
