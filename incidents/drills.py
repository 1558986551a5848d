"""Kill-switch drills: prove the stop path end to end without disturbing real work.

A drill engages a *drill* switch on one agent — read by every process exactly like a real
one, but matching only that agent's probe tool — while a separate probe process calls the
real gate over HTTP with the probe tool. It measures the time from the engage's commit
until the probe is denied, and until the agent's dashboard group hears of it, then releases
the switch. Real pending and approved actions are untouched (drill switches do not sweep).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import verbs
from audit.chain import Actor, append_event
from core.digests import token_digest
from core.errors import Refused
from incidents.actions import engage_kill_switch, release_kill_switch
from incidents.models import Drill
from rollout.actions import issue_agent_token, revoke_agent_token
from rollout.models import Agent, AgentToken, KillSwitch
from rollout.policy import PROBE_TOOL

PROBE_TIMEOUT_SECONDS = 20
# A drill's token stops answering this long after the drill started, even if the drill
# never finished (a worker killed mid-drill): it cannot outlive the drill it was made for.
PROBE_TOKEN_LIFETIME = timedelta(seconds=PROBE_TIMEOUT_SECONDS + 60)


class DrillTokenMisused(Refused):
    """A drill's token was used for anything but its running drill's bare probe (``403``)."""

    def __init__(self) -> None:
        super().__init__(
            "drill_token",
            "This token belongs to a drill: it calls only that drill's probe "
            f"({PROBE_TOOL}, no arguments), and only while the drill runs.",
            403,
        )


def issue_probe_token(*, drill: Drill, actor: Actor) -> str:
    """The drill's own one-time token, made when it starts: an agent token (so only its
    SHA-256 is stored, and issuing it is audited) tied to this drill, which ``probe_call``
    honours only for this drill's bare probe while it runs. ``run_drill`` revokes it."""
    token = issue_agent_token(agent=drill.agent, actor=actor, name=f"drill-{drill.pk}")
    drill.probe_token = AgentToken.objects.get(token_hash=token_digest(token))
    drill.save(update_fields=["probe_token"])
    return token


def probe_call(token: AgentToken | None, body: dict) -> bool:
    """Whether this gate call is a running drill's probe — the write path's half of the
    probe rule; ``rollout.policy.evaluate`` gets the answer as ``GateRequest.drill_probe``.

    True only for the drill's own token (issued when the drill started, stored hashed,
    revoked when it ends), naming ``PROBE_TOOL`` with no arguments and no blast radius,
    while that drill runs. Any other call with a drill's token raises ``DrillTokenMisused``
    (it is not an agent's credential). Every other token answers False: for agents
    ``PROBE_TOOL`` is an unknown tool like any other (default deny)."""
    if token is None or not isinstance(token, AgentToken):
        return False
    # Drill tokens are named drill-<id> (issue_probe_token); any other token needs no
    # query, which keeps an ordinary gate call at its four statements.
    if not token.name.startswith("drill-"):
        return False
    drill = Drill.objects.filter(probe_token=token).first()
    if drill is None:
        return False
    running = drill.finished_at is None and (
        timezone.now() - drill.started_at < PROBE_TOKEN_LIFETIME
    )
    bare = (
        body.get("tool") == PROBE_TOOL
        and not body.get("arguments")
        and not body.get("blast_radius")
    )
    if not (running and bare and token.agent_id == drill.agent_id):
        raise DrillTokenMisused
    return True


def run_drill(*, agent: Agent, actor: Actor, gate_url: str | None = None) -> Drill:
    """Run one drill of ``agent`` against the gate at ``gate_url``. Records a ``Drill`` with
    the measured stop and notification times; audits ``drill.completed``. Takes a few
    seconds: call it from a task or a command, not a request."""
    gate_url = (gate_url or settings.AIRLOCK_GATE_URL).rstrip("/")
    drill = Drill.objects.create(agent=agent, started_by=str(actor))
    token = issue_probe_token(drill=drill, actor=actor)
    probe = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "drill_probe",
            "--url",
            gate_url,
            "--timeout",
            str(PROBE_TIMEOUT_SECONDS),
        ],
        cwd=Path(settings.BASE_DIR),
        env={**os.environ, "AIRLOCK_PROBE_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    switch = None
    detail = ""
    stop_ms = notify_ms = None
    probes = 0
    listener = None
    try:
        first = probe.stdout.readline()
        if not first.startswith("{") or json.loads(first).get("reason_code") != "allowed":
            raise RuntimeError(
                f"probe did not reach the gate: {first.strip() or probe.stderr.read()[:500]}"
            )
        listener = _GroupListener(f"agent.{agent.slug}")
        listener.start()
        switch = engage_kill_switch(
            scope=KillSwitch.Scope.AGENT,
            target=agent.slug,
            reason=f"drill {drill.pk}",
            actor=actor,
            is_drill=True,
        )
        engaged_at = time.time()
        heard_at = listener.wait(timeout=10)
        if heard_at is not None:
            notify_ms = max(0.0, (heard_at - engaged_at) * 1000)
        output, errors = probe.communicate(timeout=PROBE_TIMEOUT_SECONDS + 10)
        lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        probes = len(lines) + 1
        denied = next((line for line in lines if line.get("reason_code") == "kill_switch"), None)
        if denied is None:
            detail = "the probe was never denied" + (f": {errors[:500]}" if errors else "")
        else:
            # From the engage's commit until the probe held its denial.
            stop_ms = max(0.0, (denied["received_at"] - engaged_at) * 1000)
    except Exception as exc:  # record the failed drill rather than lose it
        detail = str(exc)[:2000]
    finally:
        if listener is not None:
            listener.wait(timeout=0)  # stops it if the drill failed before waiting
        if probe.poll() is None:
            probe.kill()
            probe.wait()
        if switch is not None:
            release_kill_switch(
                switch_id=switch.pk, reason=f"drill {drill.pk} finished", actor=actor
            )
        for record in AgentToken.objects.filter(
            agent=agent, name=f"drill-{drill.pk}", revoked_at__isnull=True
        ):
            revoke_agent_token(token_id=record.pk, actor=actor)
    with transaction.atomic():
        drill.switch = switch
        drill.finished_at = timezone.now()
        drill.stop_ms = stop_ms
        drill.notify_ms = notify_ms
        drill.probes = probes
        drill.succeeded = stop_ms is not None and not detail
        drill.detail = detail
        drill.save()
        append_event(
            verb=verbs.DRILL_COMPLETED,
            actor=actor,
            target_type="drill",
            target_id=drill.pk,
            agent_slug=agent.slug,
            data={
                "succeeded": drill.succeeded,
                "stop_ms": stop_ms,
                "notify_ms": notify_ms,
                "detail": detail,
            },
        )
    return drill


class _GroupListener:
    """Joins a dashboard group on the channel layer and notes when a switch event arrives,
    as a dashboard would.

    It listens on an event loop of its own in a thread, from ``start`` (which returns once
    it has joined) to ``wait``: the pub/sub layer subscribes per event loop and keeps nothing
    for a subscriber that is gone, so joining in one ``async_to_sync`` call and receiving in
    another would miss the event published in between."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.heard_at: float | None = None
        self._joined = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="drill-listener")

    def start(self, timeout: float = 10) -> None:
        self._thread.start()
        if not self._joined.wait(timeout) or self._error is not None:
            self._stop.set()
            raise RuntimeError(f"could not join {self.group}: {self._error!r}")

    def wait(self, timeout: float) -> float | None:
        """When the drill's switch event arrived (wall clock), or None within ``timeout``."""
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join(5)
        return self.heard_at

    def _run(self) -> None:
        asyncio.run(self._listen())

    async def _listen(self) -> None:
        layer = get_channel_layer()
        try:
            channel = await layer.new_channel()
            await layer.group_add(self.group, channel)
        except BaseException as error:  # reported by start()
            self._error = error
            self._joined.set()
            return
        self._joined.set()
        # One receive at a time, never cancelled while listening: cancelling a pub/sub
        # receive unsubscribes its channel, and an event could slip through the gap.
        receiving = asyncio.ensure_future(layer.receive(channel))
        try:
            while not self._stop.is_set():
                done, _ = await asyncio.wait({receiving}, timeout=0.2)
                if not done:
                    continue
                message = receiving.result()
                if message.get("type") == "switch.changed" and message.get("drill"):
                    self.heard_at = time.time()
                    return
                receiving = asyncio.ensure_future(layer.receive(channel))
        finally:
            receiving.cancel()
            with contextlib.suppress(BaseException):
                await receiving
            with contextlib.suppress(Exception):
                await layer.group_discard(self.group, channel)
