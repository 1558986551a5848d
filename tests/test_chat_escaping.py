"""Issue 16 class 8: agent text reaches Slack-compatible chat escaped; only Airlock builds
links (``<its own url|open in Airlock>``)."""

import json

import pytest

from approvals import tasks
from approvals.models import NotificationRoute
from approvals.notifications import slack_escape
from audit.chain import Actor
from incidents.actions import engage_kill_switch
from tests import factories
from tests.webhook_receiver import Receiver

HOSTILE = "<!channel> <https://evil.example|click here> & <@U123> <!here|here> &lt;"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("<https://evil|click>", "&lt;https://evil|click&gt;"),
        ("a & b", "a &amp; b"),
        ("&lt;", "&amp;lt;"),
        ("plain", "plain"),
    ],
)
def test_slack_escape__table(text, shown):
    assert slack_escape(text) == shown


def test_chat__agent_summary_and_tool__escaped_only_airlock_links(db, support_agent, settings):
    # Given a chat route on a loopback receiver and a pending action an agent described
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.NOTIFY_MIN_RISK = "low"
    with Receiver() as chat:
        NotificationRoute.objects.create(agent=support_agent, chat_webhook_url=chat.url)
        action = factories.submit(support_agent, "send_email", summary=HOSTILE)
        # When the batch is sent
        assert tasks.send_notification_batches() >= 1
        assert chat.event.wait(10)
    text = json.loads(chat.received[0][1])["text"]
    # Then the agent's text is inert: no mention, no disguised link
    assert "<!channel>" not in text and "<!here" not in text and "<@U123>" not in text
    assert "<https://evil" not in text
    assert "&lt;!channel&gt; &lt;https://evil.example|click here&gt; &amp; " in text
    # and the only link is Airlock's own
    links = [part.split(">")[0] for part in text.split("<")[1:]]
    assert links == [
        f"{settings.AIRLOCK_PUBLIC_URL.rstrip('/')}/actions/{action.pk}|open in Airlock"
    ]


def test_chat__kill_switch_reason__escaped(db, support_agent, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    with Receiver() as chat:
        NotificationRoute.objects.create(agent=support_agent, chat_webhook_url=chat.url)
        engage_kill_switch(
            scope="agent", target=support_agent.slug, reason=HOSTILE, actor=Actor.system("t")
        )
        tasks.send_notification_batches()
        assert chat.event.wait(10)
    text = json.loads(chat.received[0][1])["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert text.count("<") == 1  # the incidents link Airlock built


def test_email__keeps_the_text_as_written(db, support_agent, settings):
    """Escaping is chat's rule: email shows what the agent wrote."""
    from django.core import mail

    settings.NOTIFY_MIN_RISK = "low"
    user = factories.make_user("ema", groups=("reviewer",))
    user.email = "ema@example.com"
    user.save()
    factories.submit(support_agent, "send_email", summary="a & b <c>")
    tasks.send_notification_batches()
    assert "a & b <c>" in mail.outbox[0].body
