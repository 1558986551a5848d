"""The blocking SDK keeps a lease on what it waits for: a real agent process that is
stopped (SIGTERM) withdraws its pending action, one that is killed outright leaves a card
that is cancelled as ``agent_gone`` once its lease lapses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

import tests.sdk_path
from approvals import actions
from approvals.models import Action
from approvals.tasks import expire_stale_actions
from audit.models import AuditEvent
from tests import factories

# isort: split
from airlock_sdk import Airlock, AirlockAPIError

pytestmark = pytest.mark.django_db(transaction=True)

# A blocking agent: one gated write, waiting for people. It prints only if the tool ran.
AGENT_SCRIPT = """
import sys
from airlock_sdk import Airlock

airlock = Airlock(poll_seconds=float(sys.argv[1]), lease_seconds=int(sys.argv[2]))

@airlock.gated(tool="send_email", effect="write")
def send_email(to: str) -> str:
    print("SENT", flush=True)
    return "sent"

send_email("customer@example.com")
"""

# The same agent on asyncio: the async client's gated wait, in the main thread's loop.
ASYNC_AGENT_SCRIPT = """
import asyncio, sys
from airlock_sdk import AsyncAirlock

airlock = AsyncAirlock(poll_seconds=float(sys.argv[1]), lease_seconds=int(sys.argv[2]))

@airlock.gated(tool="send_email", effect="write")
async def send_email(to: str) -> str:
    print("SENT", flush=True)
    return "sent"

asyncio.run(send_email("customer@example.com"))
"""


@pytest.fixture
def token(support_agent):
    return factories.make_token(support_agent)


def start_agent(
    url: str, token: str, *, poll: float, lease: int, script: str = AGENT_SCRIPT
) -> subprocess.Popen:
    env = {
        **os.environ,
        "AIRLOCK_URL": url,
        "AIRLOCK_TOKEN": token,
        "PYTHONPATH": str(tests.sdk_path.SDK_SRC),
    }
    return subprocess.Popen(
        [sys.executable, "-c", script, str(poll), str(lease)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until(condition, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def polling(lease: int):
    """The agent's pending action once the agent is inside its wait: its long-poll has
    pushed the lease past the one it was submitted with."""

    def check():
        action = Action.objects.filter(status="pending").first()
        if action and action.lease_expires_at - action.created_at > timedelta(seconds=lease + 1):
            return action
        return None

    return check


@pytest.mark.parametrize("script", [AGENT_SCRIPT, ASYNC_AGENT_SCRIPT], ids=["sync", "async"])
def test_gated_agent__sigterm_while_waiting__withdraws_its_pending_action(
    asgi_server, token, script
):
    # Given a real agent process (sync, or asyncio) in a gated call that waits for people
    agent = start_agent(asgi_server.url, token, poll=2, lease=60, script=script)
    try:
        action = wait_until(polling(60), "the agent to wait on its action")
        assert action.lease_seconds == 60
        # When it is asked to stop, as a container stop or a deploy does
        agent.send_signal(signal.SIGTERM)
        output, _ = agent.communicate(timeout=60)
    finally:
        agent.kill()
    # Then it withdrew the action before exiting, and the tool never ran
    assert agent.returncode == 128 + signal.SIGTERM, output
    assert "SENT" not in output
    action.refresh_from_db()
    assert action.status == "cancelled" and action.feedback == "Withdrawn by the agent."
    assert AuditEvent.objects.filter(verb="action.withdrawn", target_id=str(action.pk)).exists()


def test_gated_agent__killed_while_waiting__card_cancelled_agent_gone_once_the_lease_lapses(
    asgi_server, token, reviewer
):
    # Given a real agent process waiting with a short lease
    agent = start_agent(asgi_server.url, token, poll=3, lease=5)
    try:
        action = wait_until(polling(5), "the agent to wait on its action")
        # When it dies without a word (SIGKILL: nothing can run)
        agent.kill()
        agent.wait(timeout=60)
    finally:
        agent.kill()
    # Then, once its lease lapses, the sweep cancels the card as agent_gone
    wait_until(lambda: expire_stale_actions() and True, "the lease to lapse")
    action.refresh_from_db()
    assert action.status == "cancelled" and "agent_gone" in action.feedback
    event = AuditEvent.objects.get(verb="action.cancelled", target_id=str(action.pk))
    assert event.data["reason"] == "agent_gone"
    # And a reviewer can no longer approve it
    with pytest.raises(actions.ActionRefused):
        actions.approve(action_id=action.pk, user=reviewer)


def test_client_heartbeat__renews_then_refused_once_decided(asgi_server, token, reviewer):
    with Airlock(asgi_server.url, token) as airlock:
        decision = airlock.request("send_email", {"to": "a@example.com"}, lease_seconds=300)
        assert decision.pending and decision.lease_expires_at is not None
        first = decision.lease_expires_at
        time.sleep(0.01)
        assert decision.heartbeat().lease_expires_at > first
        actions.approve(action_id=decision.id, user=reviewer)
        with pytest.raises(AirlockAPIError) as exc:
            decision.heartbeat()
        assert (exc.value.status_code, exc.value.code) == (409, "not_pending")


def test_client_request__without_lease__none_is_sent(asgi_server, token):
    # Interrupt-style agents (which pause and resume later) submit without a lease.
    with Airlock(asgi_server.url, token) as airlock:
        decision = airlock.request("send_email", {"to": "a@example.com"})
    action = Action.objects.get(pk=decision.id)
    assert action.lease_seconds is None and action.lease_expires_at is None
