"""Sensitive argument fields (``AUDIT_REDACTED_ARGUMENT_PATHS``: by default ``card_number``
and ``cvv`` anywhere) never reach a person without ``audit.view_sensitive`` — tried as a
curious reviewer would, through HTTP: the API (detail, decision answer), the card, the
action page, the edit diff and the argument editor, the decided page, the trace and replay,
notifications and socket messages. People holding the right see them whole; the action's
own agent always gets the real values it executes (its GET, its submission answer, its
webhooks). An editor who cannot see a field keeps its stored value."""

from __future__ import annotations

import json
import re

import pytest
from channels.db import database_sync_to_async
from django.core import mail
from django.test import Client

from approvals import actions, tasks
from approvals.models import Action, Decision, NotificationRoute, Outbox
from audit.canonical import payload_hash
from tests import factories
from tests.test_websocket_queue import open_socket, receive_until

CARD = "4111111111111111"
CVV = "cvv-7x3"  # a marker no timestamp or hash can contain by chance
ARGUMENTS = {"order_id": "ORD-1", "amount": 40, "payment": {"card_number": CARD, "cvv": CVV}}
SHOWN = {
    "order_id": "ORD-1",
    "amount": 40,
    "payment": {"card_number": "[masked]", "cvv": "[masked]"},
}
RULES = [factories.rule("create_refund_request", "write", "requires_approval", "medium")]
HOOK = "https://hooks.example.com/airlock"


@pytest.fixture
def payments(reference_data):
    return factories.make_agent("payments", rules=RULES)


@pytest.fixture
def refund(payments):
    return factories.submit(
        payments, "create_refund_request", ARGUMENTS, callback_url=HOOK, summary="Refund ORD-1"
    )


@pytest.fixture
def sensitive_auditor(reference_data):
    return factories.make_user("sam", groups=("auditor",), perms=("audit.view_sensitive",))


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def as_agent(agent) -> Client:
    return Client(headers={"authorization": f"Bearer {factories.make_token(agent)}"})


def text(response) -> str:
    return response.content.decode()


def editor_text(html: str, action_id: int) -> str:
    """The JSON the card's argument editor holds, unescaped."""
    found = re.search(rf'id="edit-arguments-{action_id}"[^>]*>(.*?)</textarea>', html, re.S)
    assert found, "the card offers no argument editor"
    return found.group(1).replace("&quot;", '"').replace("&amp;", "&")


# --- the API ---------------------------------------------------------------------------------


def test_api__reviewer_without_right__detail_and_decision_answer_masked(refund, reviewer):
    client = logged_in(reviewer)
    # When the reviewer reads the action
    detail = client.get(f"/api/v1/actions/{refund.pk}")
    # Then both argument fields are masked, everything else is there
    assert detail.status_code == 200
    assert detail.json()["arguments"] == SHOWN
    assert detail.json()["original_arguments"] == SHOWN
    assert CARD not in text(detail) and CVV not in text(detail)
    # There is no people's list of actions to read them from instead
    assert CARD not in text(client.get("/api/v1/actions"))
    # When they approve the masked arguments with another field edited
    edited = {**SHOWN, "amount": 45}
    answer = client.post(
        f"/api/v1/actions/{refund.pk}/decisions",
        json.dumps(
            {"verdict": "approve", "arguments": edited, "payload_hash": refund.payload_hash}
        ),
        content_type="application/json",
    )
    # Then the answer is masked, and what runs is their edit with the real card kept
    assert answer.status_code == 201, answer.json()
    assert answer.json()["arguments"] == edited
    assert CARD not in text(answer)
    stored = Action.objects.get(pk=refund.pk)
    assert stored.status == "approved"
    assert stored.arguments == {**ARGUMENTS, "amount": 45}
    assert stored.payload_hash == payload_hash(stored.arguments)


def test_api__person_with_right__sees_the_real_values(refund, sensitive_auditor):
    detail = logged_in(sensitive_auditor).get(f"/api/v1/actions/{refund.pk}")
    assert detail.status_code == 200
    assert detail.json()["arguments"] == ARGUMENTS
    assert detail.json()["original_arguments"] == ARGUMENTS


def test_api__own_agent__submission_get_and_webhook_carry_the_real_values(payments, reviewer):
    agent = as_agent(payments)
    # When the agent submits through HTTP
    submitted = agent.post(
        "/api/v1/actions",
        json.dumps({"tool": "create_refund_request", "arguments": ARGUMENTS}),
        content_type="application/json",
        headers={"idempotency-key": "refund-1"},
    )
    assert submitted.status_code == 201, submitted.json()
    assert submitted.json()["arguments"] == ARGUMENTS
    action_id = submitted.json()["id"]
    # And a reviewer who cannot see the card edits another field and approves on the card
    Action.objects.filter(pk=action_id).update(callback_url=HOOK)  # no DNS here to check it
    action = Action.objects.get(pk=action_id)
    actions.approve(action_id=action_id, user=reviewer, arguments={**SHOWN, "amount": 45})
    # Then the agent's GET and its webhook carry the real card with the edit
    real = {**ARGUMENTS, "amount": 45}
    read = agent.get(f"/api/v1/actions/{action_id}")
    assert (read.json()["status"], read.json()["arguments"]) == ("approved", real)
    assert read.json()["original_arguments"] == ARGUMENTS
    webhook = Outbox.objects.get(kind="webhook", action=action)
    assert webhook.payload["arguments"] == real


def test_api__schema__documents_the_masking(reviewer):
    schema = logged_in(reviewer).get("/api/schema/?format=json").json()
    fields = schema["components"]["schemas"]["Action"]["properties"]
    for name in ("arguments", "original_arguments"):
        assert "audit.view_sensitive" in fields[name]["description"]


# --- the dashboard ---------------------------------------------------------------------------


def test_card__reviewer_without_right__masked_everywhere_and_edit_keeps_the_card(
    refund, reviewer, reviewer2
):
    client = logged_in(reviewer)
    # Given the queue and the action page, as the reviewer opens them
    queue = text(client.get("/"))
    page = text(client.get(f"/actions/{refund.pk}"))
    for html in (queue, page):
        assert CARD not in html and CVV not in html
        assert "[masked]" in html
    # The argument editor holds the masked arguments
    shown = json.loads(editor_text(page, refund.pk))
    assert shown == SHOWN
    # When the reviewer edits the amount in that text and approves
    response = client.post(
        f"/actions/{refund.pk}/edit",
        {
            "arguments": json.dumps({**shown, "amount": 45}),
            "payload_hash": refund.payload_hash,
        },
        headers={"HX-Request": "true"},
    )
    # Then the edit is approved, the card it answers is masked, the real card is kept
    assert response.status_code == 200, text(response)
    assert CARD not in text(response)
    stored = Action.objects.get(pk=refund.pk)
    assert stored.status == "approved"
    assert stored.arguments == {**ARGUMENTS, "amount": 45}
    assert Decision.objects.get(action=stored).edited_arguments == stored.arguments
    # And the edit diff, the action page and the decided page stay masked, for them and another
    for person in (reviewer, reviewer2):
        viewer = logged_in(person)
        for url in (f"/actions/{refund.pk}", "/decided", f"/actions/{refund.pk}?partial=1"):
            html = text(viewer.get(url))
            assert CARD not in html and CVV not in html, (person, url)
    assert 'class="diff' in text(client.get(f"/actions/{refund.pk}"))


def test_card__person_with_right__sees_the_real_values(refund, sensitive_auditor):
    page = text(logged_in(sensitive_auditor).get(f"/actions/{refund.pk}"))
    assert CARD in page and "[masked]" not in page


def test_trace_and_replay__reviewer_without_right__masked(refund, reviewer):
    actions.approve(action_id=refund.pk, user=reviewer, arguments={**SHOWN, "amount": 45})
    client = logged_in(reviewer)
    for url in (
        f"/api/v1/audit/actions/{refund.pk}/trace",
        f"/api/v1/audit/actions/{refund.pk}/replay",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert CARD not in text(response) and CVV not in text(response), url


# --- notifications and sockets ---------------------------------------------------------------


def test_notifications__email_and_chat__carry_no_sensitive_value(payments, settings):
    settings.NOTIFY_MIN_RISK = "low"
    person = factories.make_user("nina", groups=("reviewer",))
    person.email = "nina@example.com"
    person.save()
    NotificationRoute.objects.create(agent=payments, chat_webhook_url="https://chat.example.com/x")
    action = factories.submit(payments, "create_refund_request", ARGUMENTS)
    rows = Outbox.objects.filter(action=action).exclude(kind="webhook")
    assert {row.kind for row in rows} == {"email", "chat"}
    assert all(CARD not in json.dumps(row.payload) for row in rows)
    settings.NOTIFY_CHAT_WEBHOOK_URL = ""
    Outbox.objects.filter(kind="chat").delete()  # no chat server here; the body is the row
    tasks.send_notification_batches()
    assert mail.outbox and all(CARD not in m.body and CARD not in m.subject for m in mail.outbox)


@pytest.mark.django_db(transaction=True)
async def test_socket__reviewer__messages_carry_no_arguments(
    close_test_sockets, reference_data, reviewer
):
    agent = await database_sync_to_async(factories.make_agent)("payments", rules=RULES)
    communicator, connected, _ = await open_socket(reviewer)
    assert connected
    action = await database_sync_to_async(factories.submit)(
        agent, "create_refund_request", ARGUMENTS
    )
    message = await receive_until(communicator, lambda m: m.get("action_id") == action.pk)
    assert CARD not in json.dumps(message) and "arguments" not in message
    await communicator.disconnect()
