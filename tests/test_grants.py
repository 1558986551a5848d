"""Execution grants: every allowed or approved action carries a signed grant the tool
service verifies offline (``airlock_sdk.grants``); keys are encrypted at rest and rotate."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

import tests.sdk_path  # noqa: F401
from approvals import actions
from audit.canonical import payload_hash
from audit.chain import Actor
from audit.installation import installation_id
from audit.models import AuditEvent
from grants import keys
from grants.models import GrantKey
from grants.tokens import InvalidGrant, read_grant, sign_grant
from tests import factories
from tests.grant_support import tool_service

# isort: split
from airlock_sdk.grants import GrantRejected, KeySet, RemoteKeySet, verify

pytestmark = pytest.mark.django_db

ORDER = {"order_id": "ORD-1"}
REFUND = {"order_id": "ORD-7711", "amount": 42.18}


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    keys.forget_cached_key()
    yield
    keys.forget_cached_key()


@pytest.fixture
def agent_api(client, support_agent):
    token = factories.make_token(support_agent)

    def call(method: str, path: str, body: dict | None = None, key: str | None = None):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        if method == "post":
            headers["HTTP_IDEMPOTENCY_KEY"] = key or uuid.uuid4().hex
            return client.post(path, json.dumps(body), content_type="application/json", **headers)
        return client.get(path, **headers)

    return call


def key_set(client) -> KeySet:
    response = client.get("/.well-known/airlock-grant-keys.json")
    assert response.status_code == 200
    return KeySet(response.json())


def submit(agent_api, tool: str, arguments: dict, key: str | None = None, **extra) -> dict:
    response = agent_api(
        "post", "/api/v1/actions", {"tool": tool, "arguments": arguments, **extra}, key
    )
    assert response.status_code in (200, 201), response.content
    return response.json()


def test_allowed_call__carries_a_grant_the_tool_service_verifies(client, agent_api, support_agent):
    answer = submit(agent_api, "get_order_status", ORDER, on_behalf_of="nobody-in-particular")
    assert answer["status"] == "allowed"

    grant = verify(answer["grant"], tool="get_order_status", arguments=ORDER, keys=key_set(client))

    assert grant.action_id == answer["id"]
    assert (grant.agent, grant.tool) == (support_agent.slug, "get_order_status")
    assert grant.payload_hash == payload_hash(ORDER) == answer["payload_hash"]
    assert grant.issuer == installation_id()
    assert grant.policy_version == answer["policy_version"]
    assert grant.on_behalf_of is None  # names no person of this installation
    assert grant.environment is None
    assert grant.expires_at - grant.issued_at == 3600  # GRANT_TTL_SECONDS


def test_replayed_submission__answers_the_identical_grant(agent_api):
    first = submit(agent_api, "get_order_status", ORDER, key="same-key")
    again = submit(agent_api, "get_order_status", ORDER, key="same-key")
    assert again["id"] == first["id"] and again["grant"] == first["grant"]


def test_pending_then_approved_with_edits__grant_for_the_edited_payload(
    client, agent_api, reviewer
):
    pending = submit(agent_api, "create_refund_request", REFUND)
    assert pending["status"] == "pending" and pending["grant"] is None
    edited = {"order_id": "ORD-7711", "amount": 40.0}

    actions.approve(action_id=pending["id"], user=reviewer, arguments=edited)

    answer = agent_api("get", f"/api/v1/actions/{pending['id']}").json()
    assert answer["status"] == "approved"
    keyset = key_set(client)
    grant = verify(answer["grant"], tool="create_refund_request", arguments=edited, keys=keyset)
    assert grant.payload_hash == payload_hash(edited)
    with pytest.raises(GrantRejected) as refused:
        verify(answer["grant"], tool="create_refund_request", arguments=REFUND, keys=keyset)
    assert refused.value.code == "wrong_arguments"


def test_denied_and_pending_actions__no_grant(agent_api):
    assert submit(agent_api, "approve_refund", {"order_id": "x"})["grant"] is None
    assert submit(agent_api, "create_refund_request", REFUND)["grant"] is None


def test_people_and_other_agents__never_shown_the_grant(client, agent_api, reviewer, other_agent):
    answer = submit(agent_api, "get_order_status", ORDER)
    client.force_login(reviewer)
    as_person = client.get(f"/api/v1/actions/{answer['id']}")
    assert as_person.status_code == 200 and as_person.json()["grant"] is None
    client.logout()
    other = factories.make_token(other_agent)
    as_other = client.get(f"/api/v1/actions/{answer['id']}", HTTP_AUTHORIZATION=f"Bearer {other}")
    assert as_other.status_code == 404 or as_other.json()["grant"] is None


def _forged(claims: dict, kid: str, private: Ed25519PrivateKey | None = None) -> str:
    signer = private or keys.signing_key()[1]
    return jwt.encode(claims, signer, algorithm="EdDSA", headers={"kid": kid})


def _claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("other tool", "wrong_tool"),
        ("edited arguments", "wrong_arguments"),
        ("other environment", "wrong_environment"),
        ("expired", "expired"),
        ("unknown key id", "unknown_key"),
        ("signed by another key", "bad_signature"),
        ("claims changed after signing", "bad_signature"),
        ("not a token", "malformed"),
        ("other issuer", "wrong_issuer"),
    ],
)
def test_tampered_or_misused_grant__refused_with_its_reason(client, agent_api, case, code):
    answer = submit(agent_api, "get_order_status", ORDER)
    token, keyset = answer["grant"], key_set(client)
    kid = jwt.get_unverified_header(token)["kid"]
    tool, arguments, env, issuer = "get_order_status", ORDER, None, installation_id()
    if case == "other tool":
        tool = "send_email"
    elif case == "edited arguments":
        arguments = {"order_id": "ORD-2"}
    elif case == "other environment":
        env = "production"
    elif case == "expired":
        claims = {**_claims_of(token), "exp": int(time.time()) - 5}
        token = _forged(claims, kid)
    elif case == "unknown key id":
        token = _forged(_claims_of(token), "grant-not-ours")
    elif case == "signed by another key":
        token = _forged(_claims_of(token), kid, Ed25519PrivateKey.generate())
    elif case == "claims changed after signing":
        header, _, signature = token.split(".")
        claims = {**_claims_of(token), "tool": "send_email"}
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        token, tool = f"{header}.{body}.{signature}", "send_email"
    elif case == "not a token":
        token = "hello"
    elif case == "other issuer":
        issuer = "another-installation"

    with pytest.raises(GrantRejected) as refused:
        verify(token, tool=tool, arguments=arguments, env=env, keys=keyset, issuer=issuer)
    assert refused.value.code == code


def test_rotation__old_grants_verify_until_they_expire_then_the_old_key_goes(client, agent_api):
    before = submit(agent_api, "get_order_status", ORDER)
    old_kid = jwt.get_unverified_header(before["grant"])["kid"]

    call_command("grant_keys", "rotate", stdout=open("/dev/null", "w"))  # noqa: SIM115

    after = submit(agent_api, "get_order_status", ORDER)
    new_kid = jwt.get_unverified_header(after["grant"])["kid"]
    assert new_kid != old_kid
    keyset = key_set(client)
    verify(before["grant"], tool="get_order_status", arguments=ORDER, keys=keyset)
    verify(after["grant"], tool="get_order_status", arguments=ORDER, keys=keyset)
    rotated = AuditEvent.objects.get(verb="grant_key.rotated")
    assert rotated.data == {"kid": new_kid, "retired": [old_kid]}

    # Once every grant the old key signed has expired, it is no longer published.
    GrantKey.objects.filter(kid=old_kid).update(
        retired_at=timezone.now() - timedelta(seconds=3600 + keys.SIGNING_KEY_CACHE_SECONDS + 1)
    )
    published = [
        k["kid"] for k in client.get("/.well-known/airlock-grant-keys.json").json()["keys"]
    ]
    assert published == [new_kid]
    with pytest.raises(InvalidGrant) as refused:
        read_grant(before["grant"], verify_expiry=False)
    assert refused.value.code == "unknown_key"


def test_key_set__public_halves_only(client, agent_api):
    submit(agent_api, "get_order_status", ORDER)
    response = client.get("/.well-known/airlock-grant-keys.json")
    (entry,) = response.json()["keys"]
    assert set(entry) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (entry["kty"], entry["crv"], entry["alg"]) == ("OKP", "Ed25519", "EdDSA")
    assert "max-age" in response["Cache-Control"]
    assert client.post("/.well-known/airlock-grant-keys.json").status_code == 405


def test_private_key__encrypted_at_rest__readable_after_secret_key_rotation_with_fallback(
    settings,
):
    kid, private = keys.signing_key()
    row = GrantKey.objects.get(kid=kid)
    raw = base64.urlsafe_b64encode(private.private_bytes_raw()).decode()
    assert raw.rstrip("=") not in row.private_encrypted
    token = sign_grant(
        {
            "iss": "i",
            "jti": "j",
            "sub": "1",
            "agent": "a",
            "tool": "t",
            "payload_hash": payload_hash({}),
            "obo": None,
            "env": None,
            "pv": 1,
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        }
    )
    old_secret = settings.SECRET_KEY
    keys.forget_cached_key()
    with override_settings(SECRET_KEY="a-new-secret", SECRET_KEY_FALLBACKS=[old_secret]):
        assert keys.signing_key()[1].private_bytes_raw() == private.private_bytes_raw()
    keys.forget_cached_key()
    with (
        override_settings(SECRET_KEY="a-new-secret", SECRET_KEY_FALLBACKS=[]),
        pytest.raises(keys.GrantKeyError, match="SECRET_KEY_FALLBACKS"),
    ):
        keys.signing_key()
    assert read_grant(token)["tool"] == "t"


def test_grant_keys_list__says_which_key_signs(capsys):
    keys.signing_key()
    keys.rotate(actor=Actor.system("tests"))
    call_command("grant_keys", "list")
    out = capsys.readouterr().out
    assert out.count("signing") == 1 and "retired, published until" in out


# --- the SDK middleware in a tool service -------------------------------------------------


def test_tool_service_middleware__runs_only_what_the_grant_allows(client, agent_api):
    draft = {"subject": "Late parcel", "body": "Customer called back"}
    mine = submit(agent_api, "create_ticket_draft", draft)
    other = submit(agent_api, "get_order_status", ORDER)
    assert mine["status"] == "allowed", mine

    with tool_service(key_set(client)) as service:
        no_grant = service.post("/ticket_draft", json=draft)
        other_grant = service.post(
            "/ticket_draft", json=draft, headers={"Airlock-Grant": other["grant"]}
        )
        edited = service.post(
            "/ticket_draft",
            json={**draft, "body": "Refund them twice"},
            headers={"Airlock-Grant": mine["grant"]},
        )
        ok = service.post("/ticket_draft", json=draft, headers={"Airlock-Grant": mine["grant"]})
        ran = service.ran

    assert (no_grant.status_code, no_grant.json()["code"]) == (403, "grant_required")
    assert (other_grant.status_code, other_grant.json()["code"]) == (403, "wrong_tool")
    assert (edited.status_code, edited.json()["code"]) == (403, "wrong_arguments")
    assert (ok.status_code, ok.text) == (200, "noted")
    assert ran == [{"body": draft, "grant": mine["id"]}]


def test_remote_key_set__fetches_and_refetches_on_an_unknown_key(client, agent_api):
    fetches = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetches.append(request.url.path)
        return httpx.Response(200, json=client.get(request.url.path).json())

    remote = RemoteKeySet(
        "http://airlock.test/.well-known/airlock-grant-keys.json",
        min_refetch_seconds=0,
        client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    first = submit(agent_api, "get_order_status", ORDER)
    verify(first["grant"], tool="get_order_status", arguments=ORDER, keys=remote)
    keys.rotate(actor=Actor.system("tests"))
    second = submit(agent_api, "get_order_status", ORDER)
    verify(second["grant"], tool="get_order_status", arguments=ORDER, keys=remote)
    assert len(fetches) == 2
