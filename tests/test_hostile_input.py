"""Hostile bodies to every write endpoint of the agent API — oversized, nested too deep,
invalid UTF-8, numbers out of range, and text tricks (bidirectional override, zero-width
space, NUL, a lone surrogate) in values and in keys — answer a clean 4xx with a stable
code, and write nothing: no action, no state change, no execution, no audit event."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from approvals import actions
from approvals.models import Action, Report
from audit.models import AuditEvent
from tests import factories

# The agent API's write endpoints, each with a body it would otherwise accept. "{text}"
# marks a string the hostile variants replace; "{key}" a key they replace.
ENDPOINTS = {
    "submit": (
        "/api/v1/actions",
        '{"tool": "send_email", "arguments": {"to": "dana@example.com", "{key}": 1}, '
        '"summary": "{text}"}',
    ),
    "execution": (
        "/api/v1/actions/{allowed}/execution",
        '{"outcome": "succeeded", "payload_hash": "{hash}", "result": {"{key}": "{text}"}}',
    ),
    "rollback": (
        "/api/v1/actions/{rollback}/rollback",
        '{"outcome": "rolled_back", "result": {"{key}": "{text}"}}',
    ),
    # takes no fields: any body with some is refused, hostile ones with their own code
    "withdraw": ("/api/v1/actions/{pending}/withdraw", '{"{key}": "{text}"}'),
}

TEXT_TRICKS = {
    "rtl-override": "\\u202e" + "gpj.exe",
    "zero-width-space": "ceo@exam\\u200bple.com",
    "nul": "a\\u0000b",
    "lone-surrogate": "\\ud800",
    "bom-inside": "x\\ufeffy",
}


def with_text(template: str, text: str = "plain", key: str = "note") -> str:
    return template.replace("{text}", text).replace("{key}", key)


def hostile_bodies(template: str) -> list[tuple[str, bytes, int, str]]:
    """(name, raw body, expected status, expected code) for one endpoint's template."""
    valid = with_text(template)
    bodies = [
        ("oversized", with_text(template, "x" * (300 * 1024)).encode(), 413, "payload_too_large"),
        ("deep-objects", ('{"a":' * 200 + "1" + "}" * 200).encode(), 400, "malformed_json"),
        ("deep-arrays", ("[" * 5000 + "]" * 5000).encode(), 400, "malformed_json"),
        (
            "invalid-utf8",
            valid.replace("plain", "\udcff", 1).encode("utf-8", "surrogateescape"),
            400,
            "malformed_json",
        ),
        ("huge-float", valid.replace('"plain"', "1e400", 1).encode(), 400, "malformed_json"),
        ("nan", valid.replace('"plain"', "NaN", 1).encode(), 400, "malformed_json"),
        ("huge-int", valid.replace('"plain"', "9" * 5000, 1).encode(), 400, "malformed_json"),
    ]
    for name, trick in TEXT_TRICKS.items():
        bodies.append(
            (f"{name}-in-value", with_text(template, trick).encode(), 400, "invalid_text")
        )
        bodies.append(
            (f"{name}-in-key", with_text(template, key=trick).encode(), 400, "invalid_text")
        )
    return bodies


CASES = [
    pytest.param(endpoint, name, raw, status, code, id=f"{endpoint}-{name}")
    for endpoint, (_, template) in ENDPOINTS.items()
    for name, raw, status, code in hostile_bodies(template)
]


@pytest.fixture
def agent_api(reference_data: None, reviewer: Any) -> tuple[Client, dict]:
    """The agent's client, and an action in the state each endpoint acts on: allowed (to
    report its execution), pending (to withdraw), rollback requested (to report on)."""
    agent = factories.make_agent("auto-agent", tier="autonomous")
    client = Client(headers={"Authorization": f"Bearer {factories.make_token(agent)}"})
    allowed = factories.submit(agent, "get_order_status", {"order_id": "ORD-1"})
    pending = factories.submit(agent, "send_email", {"to": "dana@example.com"})
    rollback = factories.submit(
        agent,
        "update_crm_note",
        {"id": 1},
        compensation={"tool": "restore_crm_note", "window_seconds": 600},
    )
    actions.report_execution(
        action_id=rollback.pk, agent=agent, outcome="succeeded", reported_hash=rollback.payload_hash
    )
    rollback = actions.request_rollback(action_id=rollback.pk, user=reviewer, comment="undo")
    assert (allowed.status, pending.status, rollback.status) == (
        "allowed",
        "pending",
        "rollback_requested",
    )
    return client, {"allowed": allowed, "pending": pending, "rollback": rollback}


def post(client: Client, path: str, raw: bytes) -> Any:
    return client.post(
        path, raw, content_type="application/json", headers={"Idempotency-Key": "hostile-1"}
    )


def snapshot() -> tuple:
    return (
        list(Action.objects.order_by("pk").values_list("pk", "status")),
        Report.objects.count(),
        AuditEvent.objects.count(),
    )


@pytest.mark.parametrize(("endpoint", "name", "raw", "status", "code"), CASES)
def test_agent_write__hostile_body__clean_4xx_stable_code_nothing_written(
    agent_api: tuple[Client, dict], endpoint: str, name: str, raw: bytes, status: int, code: str
) -> None:
    client, targets = agent_api
    path = ENDPOINTS[endpoint][0].format(**{k: a.pk for k, a in targets.items()})
    raw = raw.replace(b"{hash}", targets["allowed"].payload_hash.encode())
    before = snapshot()
    # When the agent sends the hostile body
    response = post(client, path, raw)
    # Then it is refused with a stable code, as JSON
    assert response.status_code == status, response.content[:300]
    body = response.json()
    assert body["code"] == code
    if code == "invalid_text":
        assert body["fields"], body  # says where
    # and nothing was written
    assert snapshot() == before


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_agent_write__same_body_without_tricks__is_accepted(
    agent_api: tuple[Client, dict], endpoint: str
) -> None:
    # The refusals above are the hostile parts': the plain variant of each body is taken
    # (the withdrawal's plain variant is no body at all).
    client, targets = agent_api
    path, template = ENDPOINTS[endpoint]
    path = path.format(**{k: a.pk for k, a in targets.items()})
    raw = b"" if endpoint == "withdraw" else with_text(template).encode()
    raw = raw.replace(b"{hash}", targets["allowed"].payload_hash.encode())
    response = post(client, path, raw)
    assert response.status_code in {200, 201}, response.content[:300]
    assert "id" in response.json()
