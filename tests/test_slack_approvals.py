"""Slack approvals (issue 20): direct messages to the linked people who may decide an
action, decisions from Slack through the same write path, the message updated whatever
ended the action, and the signed link that proves who a Slack user is.

Slack's Web API is a recording server on 127.0.0.1 (``tests/slack_support.py``), reached by
slack-sdk's ``WebClient`` through ``SLACK_API_URL``; Slack's requests are signed here as
Slack signs them."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.core import signing
from django.utils import timezone
from slack_sdk.errors import SlackApiError

from approvals import actions as approvals_actions
from approvals.models import Action, Decision, Outbox
from audit import verbs
from audit.chain import Actor
from audit.models import AuditEvent
from incidents.actions import engage_kill_switch
from slack_approvals import actions, tasks
from slack_approvals.models import SlackAccount, SlackMessage, SlackNotice
from tests import factories
from tests.slack_support import (
    BOT_TOKEN,
    DM_CHANNEL,
    SIGNING_SECRET,
    TEAM,
    block_action,
    form_body,
    signed_headers,
    start_recording_slack,
    view_submission,
)

HOSTILE = "<!channel> please <https://evil.example|click here> & <@U999>"
PUBLIC = "https://airlock.example"
WIRE = factories.rule("wire_money", "write", "requires_approval", "high")


@pytest.fixture(scope="module")
def recording_slack():
    state, server = start_recording_slack()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def slack(recording_slack, settings):
    """Slack on, its Web API at the recording server (never slack.com)."""
    settings.SLACK_BOT_TOKEN = BOT_TOKEN
    settings.SLACK_SIGNING_SECRET = SIGNING_SECRET
    settings.SLACK_API_URL = recording_slack.url
    settings.AIRLOCK_PUBLIC_URL = PUBLIC
    recording_slack.reset()
    return recording_slack


def link(user, slack_user: str, *, min_risk: str = "low") -> SlackAccount:
    actions.link_identity(
        user=user, identity=actions.SlackIdentity(TEAM, slack_user, slack_user.lower())
    )
    return actions.set_threshold(user=user, min_risk=min_risk)


def deliver() -> None:
    """What the workers would do after commit: every owed message, then every notice."""
    for message_id in SlackMessage.objects.order_by("pk").values_list("pk", flat=True):
        tasks.deliver_slack_message(message_id)
    for notice_id in SlackNotice.objects.filter(delivered_at__isnull=True).values_list(
        "pk", flat=True
    ):
        tasks.deliver_slack_notice(notice_id)


def interact(client, payload: dict, **signing_kwargs):
    body = form_body(payload)
    return client.post(
        "/slack/interactivity",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers=signed_headers(body, **signing_kwargs),
    )


def posted_to(slack, slack_user: str):
    """The chat.postMessage of the DM opened with ``slack_user``."""
    opened = [c.args["users"] for c in slack.of("conversations.open")]
    posts = slack.of("chat.postMessage")
    assert len(opened) == len(posts)
    return posts[opened.index(slack_user)]


def value_of(action: Action) -> str:
    return json.dumps({"action": action.pk, "hash": action.payload_hash})


# --- delivery ------------------------------------------------------------------------------


def test_pending_action__dm_to_linked_eligible_people_only(
    db, slack, support_agent, other_agent, reviewer, reviewer2
):
    # Given linked people: one who may decide, one who reviews another agent only, one
    # disabled, one whose threshold is above the action's risk; and an unlinked reviewer
    link(reviewer, "URITA")
    link(factories.make_user("scoped", agent_perms={"review_agent": other_agent}), "USCOPED")
    gone = factories.make_user("gone", groups=("reviewer",))
    link(gone, "UGONE")
    gone.is_active = False
    gone.save()
    link(reviewer2, "UROB", min_risk="high")
    factories.make_user("unlinked", groups=("reviewer",))
    # When a medium-risk action waits
    action = factories.submit(support_agent, "send_email")
    assert action.status == "pending" and action.risk == "medium"
    deliver()
    # Then only the reviewer who may decide it, at their threshold, gets a direct message:
    # a DM opened with them, then posted to that DM channel (never to a channel)
    assert [c.args["users"] for c in slack.of("conversations.open")] == ["URITA"]
    post = posted_to(slack, "URITA")
    assert post.args["channel"] == DM_CHANNEL
    assert post.authorization == f"Bearer {BOT_TOKEN}"
    assert set(post.buttons()) == {"airlock_approve", "airlock_reject", "airlock_open"}
    assert post.buttons()["airlock_open"]["url"] == f"{PUBLIC}/actions/{action.pk}"
    message = SlackMessage.objects.get()
    assert (message.channel_id, message.ts) == (DM_CHANNEL, post.args.get("ts") or message.ts)
    assert message.posted_at is not None and message.user == reviewer


def test_slack_off__nothing_owed_and_endpoints_say_so(db, support_agent, reviewer, client):
    link(reviewer, "URITA")
    factories.submit(support_agent, "send_email")
    assert not SlackMessage.objects.exists()
    response = client.post(
        "/slack/interactivity", data="payload={}", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 503
    assert response.json()["code"] == "slack_not_configured"


def test_message__agent_text_escaped_and_sensitive_fields_masked(
    db, slack, support_agent, reviewer, settings
):
    # Given an agent that writes Slack markup and a sensitive argument
    settings.AUDIT_REDACTED_ARGUMENT_PATHS = {"*": ["**.card_number"]}
    link(reviewer, "URITA")
    factories.submit(
        support_agent,
        "send_email",
        arguments={"to": "a@example.com", "body": HOSTILE, "card_number": "4111111111111111"},
        summary=HOSTILE,
        blast_radius={"note": HOSTILE},
    )
    deliver()
    text = posted_to(slack, "URITA").text_of_blocks()
    # Then no mention and no disguised link survives: they arrive as text
    assert "<!channel>" not in text and "<@U999>" not in text and "<https://evil" not in text
    assert (
        "&lt;!channel&gt; please &lt;https://evil.example|click here&gt; &amp; &lt;@U999&gt;"
        in text
    )
    # and the card number never reaches Slack, whoever reads it
    assert "4111111111111111" not in text and "[masked]" in text
    # and the only link is Airlock's own
    links = [part.split(">")[0] for part in text.split("<")[1:]]
    assert all(link.startswith(f"{PUBLIC}/actions/") for link in links), links


def test_high_risk__only_open_button__forged_approve_refused(db, slack, reviewer, client):
    # Given a high-risk action (two approvals, decided in Airlock)
    agent = factories.make_agent("payments", rules=[WIRE])
    link(reviewer, "URITA")
    action = factories.submit(agent, "wire_money", arguments={"to": "x", "amount": 1})
    assert action.risk == "high"
    deliver()
    # Then its message offers only the card
    assert set(posted_to(slack, "URITA").buttons()) == {"airlock_open"}
    # When a click on an approve button it never had is forged (signed: Slack's own user)
    response = interact(client, block_action("airlock_approve", value_of(action), user="URITA"))
    # Then nothing is decided, and the person is told why
    assert response.status_code == 200
    assert Action.objects.get(pk=action.pk).status == "pending"
    assert not Decision.objects.exists()
    notice = SlackNotice.objects.get()
    assert "decided in Airlock" in notice.text and notice.slack_user_id == "URITA"


# --- interactivity -------------------------------------------------------------------------


def test_approve_click__signed__approves_through_the_write_path(
    db, slack, support_agent, reviewer, client
):
    link(reviewer, "URITA")
    action = factories.submit(support_agent, "send_email")
    deliver()
    slack.reset()
    # When Slack sends the reviewer's click on Approve
    response = interact(client, block_action("airlock_approve", value_of(action), user="URITA"))
    # Then Slack is answered at once and the action is approved by that person, via Slack
    assert response.status_code == 200
    action.refresh_from_db()
    assert action.status == "approved"
    decision = Decision.objects.get(action=action)
    assert (decision.reviewer, decision.channel) == (reviewer, "slack")
    recorded = AuditEvent.objects.get(verb=verbs.ACTION_APPROVAL_RECORDED, target_id=str(action.pk))
    assert recorded.actor == "rita" and recorded.data["channel"] == "slack"
    approved = AuditEvent.objects.get(verb=verbs.ACTION_APPROVED, target_id=str(action.pk))
    assert approved.data["channels"] == ["slack"]
    # and the message owes its update: the outcome, without buttons
    assert SlackMessage.objects.get().update_owed
    deliver()
    (update,) = slack.of("chat.update")
    assert (
        update.args["channel"] == DM_CHANNEL and update.args["ts"] == SlackMessage.objects.get().ts
    )
    assert update.buttons() == {}
    assert "Approved* by rita (via slack)" in update.text_of_blocks()


@pytest.mark.parametrize(
    "forgery",
    ["tampered body", "wrong secret", "stale timestamp", "no signature", "junk timestamp"],
)
def test_interactivity__bad_signature__401_and_nothing_decided(
    db, slack, support_agent, reviewer, client, forgery, caplog
):
    link(reviewer, "URITA")
    action = factories.submit(support_agent, "send_email")
    body = form_body(block_action("airlock_approve", value_of(action), user="URITA"))
    headers = signed_headers(body)
    if forgery == "tampered body":
        body = body.replace("URITA", "UMALL")
    elif forgery == "wrong secret":
        headers = signed_headers(body, secret="not-the-secret")
    elif forgery == "stale timestamp":
        headers = signed_headers(body, timestamp=int(time.time()) - 6 * 60)
    elif forgery == "no signature":
        headers = {}
    else:
        headers = {**headers, "X-Slack-Request-Timestamp": "soon"}
    response = client.post(
        "/slack/interactivity",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )
    assert response.status_code == 401
    assert response.json()["code"] == "bad_slack_signature"
    assert Action.objects.get(pk=action.pk).status == "pending"
    assert not Decision.objects.exists() and not SlackNotice.objects.exists()
    assert "refused a Slack request" in caplog.text


def test_reject__opens_modal__submission_with_reason_rejects(
    db, slack, support_agent, reviewer, client
):
    link(reviewer, "URITA")
    action = factories.submit(support_agent, "send_email")
    deliver()
    # When the reviewer clicks Reject
    response = interact(
        client, block_action("airlock_reject", value_of(action), user="URITA", trigger_id="T.42")
    )
    # Then a modal asking the reason is opened with the click's trigger, nothing decided
    assert response.status_code == 200
    (opened,) = slack.of("views.open")
    assert opened.args["trigger_id"] == "T.42"
    view = (
        opened.args["view"]
        if isinstance(opened.args["view"], dict)
        else json.loads(opened.args["view"])
    )
    assert Action.objects.get(pk=action.pk).status == "pending"
    # When it is submitted empty
    empty = interact(client, view_submission(view["private_metadata"], "  ", user="URITA"))
    # Then the modal shows the error, nothing decided
    assert empty.json() == {
        "response_action": "errors",
        "errors": {"reason": "A rejection needs a reason for the agent."},
    }
    assert Action.objects.get(pk=action.pk).status == "pending"
    # When it is submitted with a reason
    done = interact(
        client, view_submission(view["private_metadata"], "Wrong customer", user="URITA")
    )
    # Then the action is rejected with that feedback, via Slack, and the dialog closes
    assert done.status_code == 200 and done.content == b""
    action.refresh_from_db()
    assert (action.status, action.feedback) == ("rejected", "Wrong customer")
    event = AuditEvent.objects.get(verb=verbs.ACTION_REJECTED, target_id=str(action.pk))
    assert event.data["channel"] == "slack" and event.actor == "rita"


def test_reject_submission__already_decided__shown_in_modal(
    db, slack, support_agent, reviewer, reviewer2, client
):
    link(reviewer, "URITA")
    action = factories.submit(support_agent, "send_email")
    approvals_actions.approve(action_id=action.pk, user=reviewer2)
    metadata = json.dumps({"action": action.pk, "hash": action.payload_hash, "channel": DM_CHANNEL})
    response = interact(client, view_submission(metadata, "no", user="URITA"))
    assert response.json()["response_action"] == "errors"
    assert "approved, not pending" in response.json()["errors"]["reason"]
    assert Action.objects.get(pk=action.pk).status == "approved"


def test_approve_click__refusals_told_back(db, slack, support_agent, reviewer, reviewer2, client):
    link(reviewer, "URITA")
    # Separation of duties: the person the action is on behalf of
    own = factories.submit(support_agent, "send_email", on_behalf_of="rita")
    interact(client, block_action("airlock_approve", value_of(own), user="URITA"))
    # A quorum not yet reached
    two = factories.submit(support_agent, "send_email")
    Action.objects.filter(pk=two.pk).update(required_approvals=2)
    interact(client, block_action("airlock_approve", value_of(two), user="URITA"))
    # Already decided elsewhere
    gone = factories.submit(support_agent, "send_email")
    approvals_actions.reject(action_id=gone.pk, user=reviewer2, comment="no")
    interact(client, block_action("airlock_approve", value_of(gone), user="URITA"))
    texts = list(SlackNotice.objects.order_by("pk").values_list("text", flat=True))
    assert "requested this action" in texts[0]
    assert (
        texts[1] == f"Your approval of action #{two.pk} is recorded; it needs 1 more: any reviewer."
    )
    assert "rejected, not pending" in texts[2]
    assert Action.objects.get(pk=own.pk).status == "pending"
    assert Action.objects.get(pk=two.pk).status == "pending"
    # and each reply goes only to that person, in the conversation they clicked in
    deliver()
    ephemeral = slack.of("chat.postEphemeral")
    assert [(c.args["channel"], c.args["user"]) for c in ephemeral] == [(DM_CHANNEL, "URITA")] * 3


def test_unlinked_click__told_how_to_link__nothing_decided(db, slack, support_agent, client):
    action = factories.submit(support_agent, "send_email")
    interact(client, block_action("airlock_approve", value_of(action), user="UNOBODY"))
    assert Action.objects.get(pk=action.pk).status == "pending"
    notice = SlackNotice.objects.get()
    assert notice.slack_user_id == "UNOBODY"
    assert f"<{PUBLIC}/accounts/profile/?slack_link=" in notice.text


# --- the message follows the action wherever it is decided -----------------------------------


def test_decided_on_dashboard__message_updated(
    db, slack, support_agent, reviewer, reviewer2, client
):
    link(reviewer, "URITA")
    action = factories.submit(support_agent, "send_email")
    deliver()
    # When another reviewer approves it on the dashboard
    client.force_login(reviewer2)
    response = client.post(
        f"/actions/{action.pk}/approve", {"payload_hash": action.payload_hash, "comment": ""}
    )
    assert response.status_code == 302
    assert Action.objects.get(pk=action.pk).status == "approved"
    deliver()
    # Then the DM sent to the first reviewer shows who decided, and offers no button
    (update,) = slack.of("chat.update")
    assert update.buttons() == {}
    assert "Approved* by rob (via page)" in update.text_of_blocks()


def test_kill_switch__message_updated(db, slack, support_agent, reviewer):
    link(reviewer, "URITA")
    factories.submit(support_agent, "send_email")
    deliver()
    engage_kill_switch(
        scope="agent",
        target=support_agent.slug,
        reason="<!channel> runaway",
        actor=Actor.system("t"),
    )
    deliver()
    (update,) = slack.of("chat.update")
    text = update.text_of_blocks()
    assert "Cancelled*: Stopped by kill switch: &lt;!channel&gt; runaway" in text
    assert update.buttons() == {}


@pytest.mark.parametrize(
    ("ending", "shown"),
    [
        ("withdrawn", "Cancelled*: Withdrawn by the agent."),
        ("expired", "Expired* before a human decided."),
        ("agent_gone", "Cancelled*: Cancelled: the agent stopped renewing its lease"),
    ],
)
def test_left_pending_without_a_person__message_updated(
    db, slack, support_agent, reviewer, ending, shown
):
    link(reviewer, "URITA")
    action = factories.submit(support_agent, "send_email")
    deliver()
    past = timezone.now() - timedelta(seconds=1)
    if ending == "withdrawn":
        approvals_actions.withdraw(action_id=action.pk, agent=support_agent)
    elif ending == "expired":
        Action.objects.filter(pk=action.pk).update(expires_at=past)
        assert approvals_actions.expire(action_id=action.pk)
    else:
        Action.objects.filter(pk=action.pk).update(lease_seconds=30, lease_expires_at=past)
        assert approvals_actions.settle_overdue(action_id=action.pk)
    deliver()
    (update,) = slack.of("chat.update")
    assert shown in update.text_of_blocks() and update.buttons() == {}


def test_decided_before_the_dm_was_sent__not_posted(db, slack, support_agent, reviewer, reviewer2):
    link(reviewer, "URITA")
    action = factories.submit(support_agent, "send_email")
    approvals_actions.approve(action_id=action.pk, user=reviewer2)
    deliver()
    assert slack.calls == []
    assert SlackMessage.objects.get().skipped_at is not None


def test_rate_limited__retried_after_retry_after(db, slack, support_agent, reviewer):
    link(reviewer, "URITA")
    factories.submit(support_agent, "send_email")
    slack.script["chat.postMessage"] = [
        (429, {"Retry-After": "7"}, {"ok": False, "error": "ratelimited"})
    ]
    # Slack's own 429, as the client raises it, asks for exactly its Retry-After
    with pytest.raises(SlackApiError) as limited:
        tasks.slack_client().chat_postMessage(channel=DM_CHANNEL, text="x")
    assert tasks.retry_delay(limited.value, 0) == 7
    slack.script["chat.postMessage"] = [
        (429, {"Retry-After": "7"}, {"ok": False, "error": "ratelimited"})
    ]
    # The task retries (eagerly here) and the message is posted once
    tasks.deliver_slack_message.apply(args=[SlackMessage.objects.get().pk])
    message = SlackMessage.objects.get()
    assert message.posted_at is not None and message.attempts == 2
    assert len([c for c in slack.of("chat.postMessage") if c.args.get("blocks")]) == 2


def test_slack_refuses_for_good__row_failed_not_retried(db, slack, support_agent, reviewer):
    link(reviewer, "URITA")
    factories.submit(support_agent, "send_email")
    slack.script["conversations.open"] = [(200, {}, {"ok": False, "error": "user_not_found"})]
    tasks.deliver_slack_message.apply(args=[SlackMessage.objects.get().pk])
    message = SlackMessage.objects.get()
    assert message.failed_at is not None and "user_not_found" in message.last_error
    assert len(slack.of("conversations.open")) == 1


# --- linking --------------------------------------------------------------------------------


def command(client, text: str, user: str = "URITA", **signing_kwargs):
    body = f"team_id={TEAM}&user_id={user}&user_name=rita.s&command=%2Fairlock&text={text}"
    return client.post(
        "/slack/commands",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers=signed_headers(body, **signing_kwargs),
    )


def _link_from(text: str) -> str:
    start = text.index(f"<{PUBLIC}") + 1
    return text[start : text.index("|", start)].removeprefix(PUBLIC)


def test_linking__command_link_confirm_unlink(db, slack, reviewer, client):
    reviewer.email = "rita@example.com"
    reviewer.save(update_fields=["email"])
    # Given a Slack user who types /airlock link
    answer = command(client, "link").json()
    assert answer["response_type"] == "ephemeral"
    url = _link_from(answer["text"])
    # When they open it logged in as their Airlock person
    client.force_login(reviewer)
    page = client.get(url)
    # Then the profile asks to confirm exactly that Slack identity
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="slack-confirm"' in html and "@rita.s (URITA)" in html and TEAM in html
    token = url.split("slack_link=")[1].split("#")[0]
    # A GET linked nothing
    assert not SlackAccount.objects.filter(slack_user_id="URITA").exists()
    # When they confirm (the password typed again)
    response = client.post(
        "/accounts/slack/link", {"token": token, "current_password": "pw-for-tests"}
    )
    assert response.status_code == 302
    account = SlackAccount.objects.get(user=reviewer)
    assert (account.team_id, account.slack_user_id, account.min_risk) == (TEAM, "URITA", "low")
    event = AuditEvent.objects.get(verb=verbs.SLACK_LINKED)
    assert event.actor == "rita" and event.data["slack_user_id"] == "URITA"
    assert "linked to rita" in command(client, "").json()["text"]
    # and she is told by email (a link is a credential)
    (mail,) = Outbox.objects.filter(kind="email", destination="rita@example.com")
    assert "Slack user URITA (workspace T0AIRLOCK) was linked" in mail.payload["line"]
    # When they set a threshold, then unlink
    assert client.post("/accounts/slack/threshold", {"min_risk": "high"}).status_code == 302
    assert client.post("/accounts/slack/unlink").status_code == 302
    account.refresh_from_db()
    assert (account.slack_user_id, account.min_risk) == ("", "high")
    assert AuditEvent.objects.filter(verb=verbs.SLACK_UNLINKED).count() == 1
    assert AuditEvent.objects.filter(verb=verbs.SLACK_THRESHOLD_CHANGED).count() == 1


def test_linking__forged_or_expired_link_refused(db, slack, reviewer, client, settings):
    client.force_login(reviewer)
    good = actions.link_token(actions.SlackIdentity(TEAM, "URITA"))
    forged = signing.dumps({"t": TEAM, "u": "UEVIL", "n": ""}, salt="some.other.salt")
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    for token, code in ((forged, "slack_link_invalid"), (tampered, "slack_link_invalid")):
        response = client.post(
            "/accounts/slack/link", {"token": token, "current_password": "pw-for-tests"}
        )
        assert response.status_code == 400, code
        assert "not valid" in response.content.decode()
    settings.SLACK_LINK_MAX_AGE_SECONDS = -1
    expired = client.post(
        "/accounts/slack/link", {"token": good, "current_password": "pw-for-tests"}
    )
    assert expired.status_code == 400 and "expired" in expired.content.decode()
    assert not SlackAccount.objects.exists()


def test_linking__one_slack_identity_per_person(db, slack, reviewer, reviewer2, client):
    link(reviewer, "URITA")
    token = actions.link_token(actions.SlackIdentity(TEAM, "URITA"))
    client.force_login(reviewer2)
    response = client.post(
        "/accounts/slack/link", {"token": token, "current_password": "pw-for-tests"}
    )
    assert response.status_code == 409
    assert "linked to another Airlock person" in response.content.decode()
    assert list(SlackAccount.objects.values_list("user", "slack_user_id")) == [
        (reviewer.pk, "URITA")
    ]


def test_linking__needs_the_password(db, slack, reviewer, client):
    client.force_login(reviewer)
    token = actions.link_token(actions.SlackIdentity(TEAM, "URITA"))
    response = client.post("/accounts/slack/link", {"token": token})
    assert response.status_code == 403
    assert not SlackAccount.objects.exists()


def test_threshold__invalid_risk__400_nothing_changed(db, slack, reviewer, client):
    client.force_login(reviewer)
    response = client.post("/accounts/slack/threshold", {"min_risk": "extreme"})
    assert response.status_code == 400
    assert not SlackAccount.objects.exists()
