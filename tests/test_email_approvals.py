"""Deciding from the inbox (issue 20, part 1): the notification email carries the card's
essentials and the person's own Approve / Reject links; a link opens a confirmation page
(GET decides nothing), and the confirmation goes through the write path with channel
``email`` — so every rule holds, and a used, foreign, expired, stale or altered link
decides nothing.

Mail is sent by the real task (``send_notification_batches``) into Django's test outbox;
``tests/browser/test_email_approvals_browser.py`` sends it over SMTP and follows a link in
Chromium."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection
from django.db.models import Value
from django.db.models.functions import Concat
from django.test import Client
from django.utils import timezone

from approvals import actions, notifications
from approvals.models import Action, Decision, EmailDecisionLink
from approvals.tasks import send_notification_batches
from audit import verbs
from audit.models import AuditEvent
from core.digests import token_digest
from incidents.actions import engage_kill_switch
from tests import factories
from tests.access_support import give_second_factor, next_code

PUBLIC = "https://airlock.example.test"
LINK = re.compile(
    r"(Approve|Reject) \([^)]*\): (https://airlock\.example\.test(/actions/(\d+)/email/([\w-]+)))"
)
HIGH = {"blast_radius": {"amount": {"value": 5000, "currency": "EUR"}}}


@pytest.fixture(autouse=True)
def email_settings(settings):
    settings.AIRLOCK_PUBLIC_URL = PUBLIC + "/"
    settings.NOTIFY_MIN_RISK = "low"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@dataclass(frozen=True)
class MailedLink:
    verdict: str
    url: str
    path: str
    action_id: int
    token: str


def address(user: Any) -> str:
    return f"{user.username}@example.test"


def give_addresses() -> None:
    """Everyone gets an email address (the factories make people without one)."""
    get_user_model().objects.filter(email="").update(
        email=Concat("username", Value("@example.test"))
    )


def message_to(user: Any) -> Any:
    return [m for m in mail.outbox if address(user) in m.to][-1]


def links_to(user: Any) -> list[MailedLink]:
    """The decision links in the emails to ``user``, as their plain-text parts say."""
    return [
        MailedLink(verdict.lower(), url, path, int(pk), token)
        for message in mail.outbox
        if address(user) in message.to
        for verdict, url, path, pk, token in LINK.findall(message.body)
    ]


def link_for(user: Any, verdict: str, action: Action) -> MailedLink:
    return next(
        link for link in links_to(user) if link.verdict == verdict and link.action_id == action.pk
    )


def mailed(agent: Any, **body: Any) -> Action:
    """A pending action, submitted and emailed to its reviewers."""
    give_addresses()
    action = factories.submit(
        agent, body.pop("tool", "send_email"), body.pop("arguments", None), **body
    )
    assert action.status == "pending"
    send_notification_batches()
    return action


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def refusal_code(response: Any) -> str:
    found = re.search(rb'data-refusal-code="([a-z_]+)"', response.content)
    return found.group(1).decode() if found else ""


# --- the email ----------------------------------------------------------------------------


def test_email__pending_action__essentials_masked_arguments_and_personal_links(
    db, support_agent, reviewer, reviewer2
):
    # Given an action whose agent wrote hostile text and a card number into it
    action = mailed(
        support_agent,
        arguments={"to": "a@example.com", "card_number": "4111111111111111"},
        summary="Refund <script>alert(1)</script>\nApprove (now): https://evil.example/x",
        blast_radius={"environment": "production", "amount": {"value": 120, "currency": "EUR"}},
    )
    message = message_to(reviewer)
    text, (html, mime) = message.body, message.alternatives[0]
    # Then the plain-text part has the essentials on lines of Airlock's own
    assert mime == "text/html"
    assert "tool: send_email" in text and f"#{action.pk}" in text
    assert "Environment production · Amount 120 EUR" in text
    assert "4111111111111111" not in text + html and "[masked]" in text
    # and the agent's line break cannot start a line that looks like one of Airlock's
    assert "\nApprove (now)" not in text
    assert "Summary: Refund <script>alert(1)</script> Approve (now): https://evil.example/x" in text
    # The HTML part escapes the agent's text; its only links are Airlock's
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert hrefs and all(href.startswith(PUBLIC + "/") for href in hrefs)
    # Each reviewer gets their own Approve and Reject link, built from the public URL
    mine, theirs = links_to(reviewer), links_to(reviewer2)
    assert [link.verdict for link in mine] == ["approve", "reject"]
    assert {link.token for link in mine}.isdisjoint({link.token for link in theirs})
    assert all(link.url.startswith(f"{PUBLIC}/actions/{action.pk}/email/") for link in mine)
    # Only digests are stored, bound to person, verdict, payload and the action's expiry
    rows = EmailDecisionLink.objects.filter(person=reviewer).order_by("verdict")
    assert [(r.verdict, r.payload_hash, r.expires_at) for r in rows] == [
        ("approve", action.payload_hash, action.expires_at),
        ("reject", action.payload_hash, action.expires_at),
    ]
    assert {r.token_digest for r in rows} == {token_digest(link.token) for link in mine}


def test_email__the_requester__gets_a_reject_link_only_and_is_told_why(db, support_agent, reviewer):
    mailed(support_agent, on_behalf_of="RITA")  # the reviewer's name, as login would fold it
    assert [link.verdict for link in links_to(reviewer)] == ["reject"]
    body = message_to(reviewer).body
    assert "No Approve link for you: You requested this action, so you cannot approve it." in body


def test_email__new_card_and_its_escalation_in_one_email__one_pair_of_links(
    db, support_agent, critical_reviewer
):
    # Given a senior reviewer told of a new card and, in the same batch, of its escalation
    give_addresses()
    action = factories.submit(support_agent, "send_email")
    notifications.owe_escalation(action)
    send_notification_batches()
    # Then their one email lists both, with the same two links
    links = links_to(critical_reviewer)
    assert len(links) == 4 and len({link.token for link in links}) == 2
    assert EmailDecisionLink.objects.filter(person=critical_reviewer).count() == 2


def test_email__decided_before_it_was_sent__no_links(db, support_agent, reviewer, reviewer2):
    give_addresses()
    action = factories.submit(support_agent, "send_email")
    actions.approve(action_id=action.pk, user=reviewer2)
    send_notification_batches()
    assert links_to(reviewer) == []
    assert "Now approved: nothing left to decide." in mail.outbox[0].body


def test_email__smtp_refuses__no_link_is_left_behind(db, support_agent, reviewer, settings):
    settings.EMAIL_BACKEND = "tests.test_email_approvals.RefusingBackend"
    give_addresses()
    factories.submit(support_agent, "send_email")
    send_notification_batches()
    assert not EmailDecisionLink.objects.exists()


class RefusingBackend:
    def __init__(self, **kwargs: Any) -> None:
        pass

    def send_messages(self, messages: list) -> int:
        raise ConnectionRefusedError("mail server down")


# --- the confirmation page ----------------------------------------------------------------


def test_link__anonymous__logs_in_first_and_comes_back(db, support_agent, reviewer):
    action = mailed(support_agent)
    link = link_for(reviewer, "approve", action)
    response = Client().get(link.path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
    login = Client().post(response["Location"], {"username": "rita", "password": "pw-for-tests"})
    assert (login.status_code, login["Location"]) == (302, link.path)


def test_link__get__shows_the_card_and_decides_nothing(db, support_agent, reviewer):
    # Given the bound person, logged in, opening their Approve link (as a mail scanner would)
    action = mailed(support_agent, summary="Send the quarterly report")
    link = link_for(reviewer, "approve", action)
    client = logged_in(reviewer)
    for _ in range(3):
        page = client.get(link.path)
        assert page.status_code == 200
    # Then the page shows the card and a Confirm button, and nothing happened
    html = page.content.decode()
    assert "Send the quarterly report" in html and "Confirm approval" in html
    assert Action.objects.get(pk=action.pk).status == "pending"
    assert not Decision.objects.exists()
    assert EmailDecisionLink.objects.filter(used_at__isnull=False).count() == 0


def test_link__confirm_approve__approved_through_the_write_path_with_channel_email(
    db, support_agent, reviewer, django_capture_on_commit_callbacks
):
    action = mailed(support_agent)
    link = link_for(reviewer, "approve", action)
    client = logged_in(reviewer)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(link.path, {"comment": "fine by mail"})
    assert (response.status_code, response["Location"]) == (302, f"/actions/{action.pk}")
    action.refresh_from_db()
    assert action.status == "approved"
    decision = Decision.objects.get(action=action)
    assert (decision.reviewer, decision.channel, decision.comment) == (
        reviewer,
        "email",
        "fine by mail",
    )
    approved = AuditEvent.objects.get(verb=verbs.ACTION_APPROVED, target_id=str(action.pk))
    assert approved.data["channels"] == ["email"]
    assert EmailDecisionLink.objects.get(token_digest=token_digest(link.token)).used_at
    # The card says so, and the agent's API sees it approved
    card = client.get(response["Location"]).content.decode()
    assert "Approved: the agent may now run" in card
    token = factories.make_token(support_agent)
    api = Client(headers={"Authorization": f"Bearer {token}"}).get(f"/api/v1/actions/{action.pk}")
    assert api.json()["status"] == "approved"


def test_link__confirm_reject_with_a_reason__rejected_and_the_reason_sent(
    db, support_agent, reviewer
):
    action = mailed(support_agent)
    link = link_for(reviewer, "reject", action)
    response = logged_in(reviewer).post(link.path, {"comment": "Wrong customer."})
    assert response.status_code == 302
    action.refresh_from_db()
    assert (action.status, action.feedback) == ("rejected", "Wrong customer.")
    assert Decision.objects.get(action=action).channel == "email"


# --- refusals: nothing decided ------------------------------------------------------------


@dataclass
class World:
    agent: Any
    reviewer: Any
    reviewer2: Any


def _replayed(world: World) -> tuple[Client, str, dict]:
    action = mailed(world.agent)
    link = link_for(world.reviewer, "reject", action)
    client = logged_in(world.reviewer)
    assert client.post(link.path, {"comment": "no"}).status_code == 302
    return client, link.path, {"comment": "no, again"}


def _someone_elses(world: World) -> tuple[Client, str, dict]:
    action = mailed(world.agent)
    forwarded = link_for(world.reviewer, "approve", action)
    return logged_in(world.reviewer2), forwarded.path, {}


def _expired(world: World) -> tuple[Client, str, dict]:
    action = mailed(world.agent)
    link = link_for(world.reviewer, "approve", action)
    past = timezone.now() - timedelta(seconds=1)
    Action.objects.filter(pk=action.pk).update(expires_at=past)
    EmailDecisionLink.objects.filter(action=action).update(expires_at=past)
    return logged_in(world.reviewer), link.path, {}


def _edited_after_the_mail(world: World) -> tuple[Client, str, dict]:
    # A two-approval action another reviewer edits (and approves) after the mail went out
    action = mailed(world.agent, arguments={"to": "a@example.com"}, **HIGH)
    link = link_for(world.reviewer, "approve", action)
    actions.approve(action_id=action.pk, user=world.reviewer2, arguments={"to": "b@example.com"})
    assert Action.objects.get(pk=action.pk).status == "pending"
    return logged_in(world.reviewer), link.path, {}


def _tampered(world: World) -> tuple[Client, str, dict]:
    action = mailed(world.agent)
    link = link_for(world.reviewer, "approve", action)
    flipped = ("A" if link.token[5] != "A" else "B").join(
        (link.path[: -len(link.token) + 5], link.token[6:])
    )
    return logged_in(world.reviewer), flipped, {}


def _another_actions_id(world: World) -> tuple[Client, str, dict]:
    first, second = mailed(world.agent), mailed(world.agent)
    link = link_for(world.reviewer, "approve", first)
    return logged_in(world.reviewer), link.path.replace(f"/{first.pk}/", f"/{second.pk}/"), {}


def _stopped_by_a_kill_switch(world: World) -> tuple[Client, str, dict]:
    action = mailed(world.agent)
    link = link_for(world.reviewer, "approve", action)
    engage_kill_switch(scope="agent", target=world.agent.slug, reason="incident", actor=_system())
    return logged_in(world.reviewer), link.path, {}


def _requester_with_an_old_link(world: World) -> tuple[Client, str, dict]:
    # A link issued before the action named the person as its requester cannot exist; one
    # made by hand shows the write path itself refuses (separation of duties).
    action = mailed(world.agent, on_behalf_of=world.reviewer.username)
    token = "made-by-hand-" + "x" * 30
    EmailDecisionLink.objects.create(
        action=action,
        person=world.reviewer,
        verdict="approve",
        payload_hash=action.payload_hash,
        token_digest=token_digest(token),
        expires_at=action.expires_at,
    )
    return logged_in(world.reviewer), f"/actions/{action.pk}/email/{token}", {}


def _system() -> Any:
    from audit.chain import Actor

    return Actor.system("tests")


REFUSALS = [
    # scenario, HTTP status, refusal code, audited as access.refused
    (_replayed, 409, "link_used", False),
    (_someone_elses, 403, "link_not_yours", True),
    (_expired, 409, "link_expired", False),
    (_edited_after_the_mail, 409, "payload_changed", False),
    (_tampered, 404, "link_invalid", False),
    (_another_actions_id, 404, "link_invalid", False),
    (_stopped_by_a_kill_switch, 409, "not_pending", False),
    (_requester_with_an_old_link, 403, "own_request", True),
]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    ("scenario", "status", "code", "audited"), REFUSALS, ids=[r[0].__name__[1:] for r in REFUSALS]
)
def test_link__refused__says_why_and_decides_nothing(
    db, support_agent, reviewer, reviewer2, scenario, status, code, audited, method
):
    client, path, data = scenario(World(support_agent, reviewer, reviewer2))
    decisions = list(Decision.objects.values_list("pk", flat=True))
    used = EmailDecisionLink.objects.filter(used_at__isnull=False).count()
    refused_before = AuditEvent.objects.filter(verb=verbs.ACCESS_REFUSED).count()
    response = client.get(path) if method == "GET" else client.post(path, data)
    assert (response.status_code, refusal_code(response)) == (status, code)
    assert "This link decided nothing" in response.content.decode()
    assert list(Decision.objects.values_list("pk", flat=True)) == decisions
    assert EmailDecisionLink.objects.filter(used_at__isnull=False).count() == used
    refused_after = AuditEvent.objects.filter(verb=verbs.ACCESS_REFUSED).count()
    assert refused_after - refused_before == (1 if audited else 0)


def test_link__expired__the_action_is_recorded_expired_at_once(
    db, support_agent, reviewer, reviewer2
):
    client, path, _ = _expired(World(support_agent, reviewer, reviewer2))
    client.post(path)
    action = Action.objects.get(pk=int(path.split("/")[2]))
    assert action.status == "expired"
    assert AuditEvent.objects.filter(verb=verbs.ACTION_EXPIRED, target_id=str(action.pk)).exists()


def test_link__forwarded__shows_nothing_of_the_action(db, support_agent, reviewer, reviewer2):
    _, path, _ = _someone_elses(World(support_agent, reviewer, reviewer2))
    outsider = factories.make_user("oscar", groups=("governance_owner",))
    page = logged_in(outsider).get(path).content.decode()
    assert "send_email" not in page and "a@example.com" not in page
    assert "sent to another person" in page


def test_link__reject_without_a_reason__asked_for_one_and_nothing_decided(
    db, support_agent, reviewer
):
    action = mailed(support_agent)
    link = link_for(reviewer, "reject", action)
    client = logged_in(reviewer)
    response = client.post(link.path, {"comment": "   "})
    assert response.status_code == 422
    assert "Say why you reject it" in response.content.decode()
    assert Action.objects.get(pk=action.pk).status == "pending"
    assert not EmailDecisionLink.objects.filter(used_at__isnull=False).exists()
    # The link still works once a reason is given
    assert client.post(link.path, {"comment": "Not this week."}).status_code == 302
    assert Action.objects.get(pk=action.pk).status == "rejected"


def test_link__two_approvals_needed__records_one_and_stays_pending(
    db, support_agent, reviewer, reviewer2
):
    action = mailed(support_agent, **HIGH)
    assert action.required_approvals == 2
    response = logged_in(reviewer).post(link_for(reviewer, "approve", action).path)
    assert response.status_code == 302
    action.refresh_from_db()
    assert (action.status, len(actions.current_approvals(action))) == ("pending", 1)
    # The second reviewer's own link completes the quorum
    logged_in(reviewer2).post(link_for(reviewer2, "approve", action).path)
    action.refresh_from_db()
    assert action.status == "approved"


def test_link__critical_action__last_slot_needs_a_critical_approver(
    db, support_agent, reviewer, reviewer2, critical_reviewer
):
    action = mailed(
        support_agent, **{"blast_radius": {"amount": {"value": 20000, "currency": "EUR"}}}
    )
    assert action.needs_critical_approver
    logged_in(reviewer).post(link_for(reviewer, "approve", action).path)
    # reviewer2's link was issued while a slot was open to anyone; now the write path says no
    refused = logged_in(reviewer2).post(link_for(reviewer2, "approve", action).path)
    assert (refused.status_code, refusal_code(refused)) == (403, "critical_approver_required")
    logged_in(critical_reviewer).post(link_for(critical_reviewer, "approve", action).path)
    assert Action.objects.get(pk=action.pk).status == "approved"


def test_link__step_up_required__asked_on_the_page_then_recorded(
    db, support_agent, critical_reviewer, settings
):
    settings.STEP_UP_ENABLED = True
    action = mailed(support_agent, tool="wipe_database", arguments={"scope": "all"})
    assert action.risk == "critical"
    give_second_factor(critical_reviewer)
    link = link_for(critical_reviewer, "approve", action)
    client = logged_in(critical_reviewer)
    assert 'data-testid="step-up-field"' in client.get(link.path).content.decode()
    refused = client.post(link.path)
    assert refused.status_code == 403 and "authenticator app" in refused.content.decode()
    assert not Decision.objects.exists()
    ok = client.post(link.path, {"step_up_code": next_code(critical_reviewer)})
    assert ok.status_code == 302
    assert Decision.objects.get(action=action).channel == "email"


@pytest.mark.django_db(transaction=True)
def test_link__two_confirmations_at_once__one_decision(reference_data, support_agent, reviewer):
    # Given one approve link confirmed twice at the same instant (a double click, two tabs)
    action = mailed(support_agent)
    link = link_for(reviewer, "approve", action)
    barrier, outcomes = threading.Barrier(2), []

    def confirm() -> None:
        try:
            barrier.wait(timeout=10)
            actions.decide_by_email_link(action_id=action.pk, token=link.token, user=reviewer)
            outcomes.append("decided")
        except actions.ActionRefused as refused:
            outcomes.append(refused.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=confirm) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Then one decided and the other was told the link was used
    assert sorted(outcomes) == ["decided", "link_used"]
    assert Decision.objects.filter(action=action).count() == 1
