"""Soak: Airlock under mixed load for a while, then proof that nothing was lost. Not a test;
run by hand (``tests/test_soak.py`` runs it for 45 s in CI):

    .venv/bin/python benchmarks/soak.py --seconds 600
    .venv/bin/python benchmarks/soak.py --seconds 60 --fsync off --json /tmp/soak.json

Self-contained like benchmarks/gate.py, whose ``Services`` it uses: a throwaway PostgreSQL
and Redis on free loopback ports, ``migrate``, ``seed_demo``; then the real processes with
the production settings (``config.settings.base``): uvicorn with ``--workers`` workers, a
Celery worker (prefork) and Celery beat on Redis. This process sets the run up through
Django on the same database (agent tokens, rate limits raised, a short pending TTL for
medium risk and ``GRANT_TTL_SECONDS`` so expiry and revocation happen within the run, a
third reviewer with a personal API token), starts a local webhook receiver, and then for
``--seconds``, all through the real HTTP API:

- ``--agents`` simulated agents (spread over support-assistant, ops-agent, finance-agent)
  submit tool calls that are allowed, denied or pending, with the receiver as their
  ``callback_url`` (ops-agent's half of them on a path that answers 410, so those webhooks
  fail for good; the rest fail at random ``--webhook-fail-rate`` and are retried); replay
  earlier submissions (same key and body: the same action) and send changed bodies under
  old keys (409); abandon some requests mid-flight and retry them with the same key;
  long-poll their pending actions, sometimes withdraw them, report executions of approved
  and allowed ones with the payload hash they were given — and, after an edit, sometimes
  first with the pre-edit hash, which must be refused;
- three reviewers decide from the pending pool: ``reviewer`` and ``reviewer2`` by session
  cookie + CSRF header, ``reviewer3`` with a personal token: approve, edit-and-approve
  (sometimes breaking the tool's limit: 400), reject, sometimes twice at once;
- the incident owner engages a kill switch (an agent's, a tool's or the global one) every
  few seconds and releases it shortly after;
- a dashboard watcher loads the queue page and ``/metrics``.

Then: load stops; owed webhooks drain (worker and beat still running); beat stops, so the
database holds still; and the checks run — ``benchmarks/invariants.py`` (every action's
events replay to its one legal state, nothing approved twice by one person, nothing
executed but the approved payload, nothing done under a kill switch, every owed webhook
row delivered or recorded as failed and matching what the receiver got, every
Idempotency-Key one action: the one its client was answered with), ``manage.py
audit_verify`` plus a fork check, and the dashboards' numbers (the queue page's pending
count and the decided page's count for a reviewer, ``/metrics``' gate decisions, pending
backlog, outbox, switches and audit events) against the database. Any answer the API
should not have given (a 5xx, a status or code outside each call's contract) is a
violation too. Printed: the load held (requests/s, decisions/s, …), latencies, and every
violation. Exit status 0 only when there are none.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.gate import HOST, PY, BenchmarkError, Services, log  # noqa: E402
from benchmarks.stop_time import login, pct, stop_process_group  # noqa: E402
from tests.webhook_receiver import Receiver  # noqa: E402

AGENTS = ("support-assistant", "ops-agent", "finance-agent")
SESSION_REVIEWERS = ("reviewer", "reviewer2")
TOKEN_REVIEWER = "reviewer3"
INCIDENT_OWNER = "incident"
mono = time.monotonic


# --- what the agents ask for ---------------------------------------------------------------


def _n(rng: random.Random) -> str:
    return str(rng.randint(1000, 99999))


def read_call(slug: str, rng: random.Random) -> dict:
    """A call the agent's tier allows (or auto-approves)."""
    return rng.choice(
        {
            "support-assistant": [
                {"tool": "get_order_status", "arguments": {"order_id": f"ORD-{_n(rng)}"}},
                {"tool": "search_policy_docs", "arguments": {"query": f"refund {_n(rng)}"}},
            ],
            "ops-agent": [
                {"tool": "get_metrics", "arguments": {"service": f"svc-{_n(rng)}"}},
                {"tool": "restart_pod", "arguments": {"pod": f"web-{_n(rng)}"}},
            ],
            "finance-agent": [
                {"tool": "get_invoice", "arguments": {"invoice_id": f"INV-{_n(rng)}"}},
                {"tool": "draft_payment_run", "arguments": {"run": _n(rng)}},
            ],
        }[slug]
    )


def write_call(slug: str, rng: random.Random) -> dict | None:
    """A call that waits for people (medium: one approval; high: two), or None when the
    agent has none (finance-agent's tier denies its writes)."""
    if slug == "support-assistant":
        if rng.random() < 0.5:
            call = {
                "tool": "send_email",
                "arguments": {"to": "c@example.com", "subject": f"Order {_n(rng)}", "body": "Hi"},
            }
            if rng.random() < 0.3:  # irreversible: high risk, two approvals
                call["blast_radius"] = {"reversible": False}
            return call
        return {
            "tool": "create_refund_request",
            "arguments": {"order_id": f"ORD-{_n(rng)}", "amount": rng.randint(5, 900)},
        }
    if slug == "ops-agent":
        if rng.random() < 0.6:
            return {
                "tool": "scale_deployment",
                "arguments": {"deployment": f"svc-{_n(rng)}", "replicas": rng.randint(2, 20)},
            }
        return {"tool": "drain_node", "arguments": {"node": f"node-{_n(rng)}"}}
    return None


def denied_call(slug: str, rng: random.Random) -> dict:
    """A call the gate must deny (forbidden, unknown, over a limit, or the tier denies)."""
    return rng.choice(
        {
            "support-assistant": [
                {"tool": "approve_refund", "arguments": {"order_id": f"ORD-{_n(rng)}"}},
                {"tool": "delete_customer_record", "arguments": {"customer_id": _n(rng)}},
                {"tool": "format_disk", "arguments": {}},
                {
                    "tool": "create_refund_request",
                    "arguments": {"order_id": f"ORD-{_n(rng)}", "amount": 20000},
                },
            ],
            "ops-agent": [{"tool": "delete_volume", "arguments": {"volume": f"vol-{_n(rng)}"}}],
            "finance-agent": [
                {"tool": "create_payment", "arguments": {"amount": rng.randint(10, 500)}}
            ],
        }[slug]
    )


def edited_arguments(tool: str, arguments: dict, rng: random.Random) -> tuple[dict, bool]:
    """A reviewer's edit, and whether it breaks the tool's limit (then it must get 400)."""
    edited = dict(arguments)
    if tool == "create_refund_request":
        if rng.random() < 0.15:
            edited["amount"] = 20000
            return edited, True
        edited["amount"] = max(1, int(arguments["amount"]) // 2)
    elif tool == "send_email":
        edited["subject"] = f"{arguments['subject']} (edited)"
    elif tool == "scale_deployment":
        edited["replicas"] = int(arguments["replicas"]) + 1
    else:
        edited["node"] = f"node-{_n(rng)}"
    return edited, False


# --- the load ------------------------------------------------------------------------------


@dataclass
class Pending:
    action_id: int
    slug: str
    tool: str
    arguments: dict
    payload_hash: str


@dataclass
class Load:
    """What the simulated clients did and were answered."""

    calls: Counter = field(default_factory=Counter)  # (endpoint, status, code) -> n
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    unexpected: list[str] = field(default_factory=list)
    happened: Counter = field(default_factory=Counter)
    ledger: dict[tuple[str, str], int] = field(default_factory=dict)  # (slug, key) -> id
    seconds: float = 0.0


class Soak:
    def __init__(
        self,
        args: argparse.Namespace,
        base_url: str,
        tokens: dict[str, str],
        personal_token: str,
        sessions: dict[str, tuple[str, str]],
        receiver: Receiver,
        metrics_token: str,
    ) -> None:
        self.args = args
        self.base_url = base_url
        self.tokens = tokens
        self.personal_token = personal_token
        self.sessions = sessions
        self.receiver = receiver
        self.metrics_token = metrics_token
        self.rng = random.Random(args.seed)
        self.load = Load()
        self.pool: dict[int, Pending] = {}  # pending actions people may pick up
        self.sent: dict[str, list[tuple[str, dict, int]]] = defaultdict(list)
        self.stop = asyncio.Event()
        self.followers: set[asyncio.Task] = set()
        self.clients: list[Any] = []

    # -- HTTP ---------------------------------------------------------------------------

    def client(self, headers: dict[str, str] | None = None, cookies: dict | None = None) -> Any:
        import httpx

        client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers or {}, cookies=cookies, timeout=60
        )
        self.clients.append(client)
        return client

    def session_client(self, username: str) -> Any:
        session, csrf = self.sessions[username]
        return self.client(
            headers={"X-CSRFToken": csrf, "Referer": self.base_url + "/"},
            cookies={"sessionid": session, "csrftoken": csrf},
        )

    async def call(
        self,
        client: Any,
        endpoint: str,
        method: str,
        url: str,
        expect: dict[int, set[str] | None],
        may_break: bool = False,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        """One request; records its status, code and latency. An answer outside ``expect``
        (status → allowed error codes, None: any) is a violation of the API's contract; so
        is no answer at all, unless ``may_break`` (the caller retries: status 0)."""
        import httpx

        started = mono()
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self.load.calls[(endpoint, 0, exc.__class__.__name__)] += 1
            if not may_break:
                self.load.unexpected.append(f"{endpoint} {method} {url}: {exc!r}")
            return 0, {}
        self.load.latency[endpoint].append(mono() - started)
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        code = payload.get("code", "") if isinstance(payload, dict) else ""
        self.load.calls[(endpoint, response.status_code, code)] += 1
        allowed = expect.get(response.status_code, ())
        if response.status_code not in expect or (allowed is not None and code not in allowed):
            self.load.unexpected.append(
                f"{endpoint} {method} {url}: HTTP {response.status_code} {str(payload)[:300]}"
            )
        return response.status_code, payload

    async def pause(self, seconds: float) -> None:
        """Sleep, unless the run stops first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    # -- agents -------------------------------------------------------------------------

    async def submit(self, client: Any, slug: str, key: str, body: dict) -> dict | None:
        """Submit with ``key``; a request abandoned mid-flight (the agent's connection
        dropped) is retried with the same key, as an agent must."""
        url = "/api/v1/actions"
        headers = {"Idempotency-Key": key}
        expect = {201: None}
        if self.rng.random() < self.args.abandon_rate:
            attempt = asyncio.ensure_future(client.post(url, json=body, headers=headers))
            await asyncio.sleep(self.rng.uniform(0.0, 0.03))
            attempt.cancel()
            with contextlib.suppress(BaseException):
                await attempt
            self.load.happened["submissions abandoned mid-flight, then retried"] += 1
            expect = {200: None, 201: None}  # the first one may have got through
        status, payload = await self.call(
            client, "gate", "POST", url, expect, json=body, headers=headers, may_break=True
        )
        for _ in range(3):
            if status != 0:
                break
            # No answer at all (the connection broke): an agent retries with the same key.
            self.load.happened["submissions retried after a broken connection"] += 1
            status, payload = await self.call(
                client, "gate", "POST", url, {200: None, 201: None}, json=body, headers=headers
            )
        if status not in (200, 201):
            return None
        self.load.ledger[(slug, key)] = payload["id"]
        self.sent[slug].append((key, body, payload["id"]))
        return payload

    async def agent(self, index: int) -> None:
        slug = AGENTS[index % len(AGENTS)]
        client = self.client({"Authorization": f"Bearer {self.tokens[slug]}"})
        while not self.stop.is_set():
            roll = self.rng.random()
            if roll < 0.07 and self.sent[slug]:
                await self.replay(client, slug)
            elif roll < 0.10 and self.sent[slug]:
                await self.conflict(client, slug)
            elif roll < 0.20:
                await self.gate_call(client, slug, denied_call(slug, self.rng), "denied")
            elif roll < 0.50 and slug != "finance-agent":
                await self.gate_call(client, slug, write_call(slug, self.rng), "pending")
            else:
                await self.gate_call(client, slug, read_call(slug, self.rng), "allowed")
            await self.pause(self.args.think)

    async def replay(self, client: Any, slug: str) -> None:
        key, body, action_id = self.rng.choice(self.sent[slug])
        status, payload = await self.call(
            client, "gate", "POST", "/api/v1/actions", {200: None},
            json=body, headers={"Idempotency-Key": key},
        )  # fmt: skip
        self.load.happened["idempotent replays"] += 1
        if status == 200 and payload.get("id") != action_id:
            self.load.unexpected.append(
                f"replay of {slug} key {key}: action {payload.get('id')}, first answer {action_id}"
            )

    async def conflict(self, client: Any, slug: str) -> None:
        key, body, _ = self.rng.choice(self.sent[slug])
        await self.call(
            client, "gate", "POST", "/api/v1/actions", {409: {"idempotency_conflict"}},
            json={**body, "summary": "another body under an old key"},
            headers={"Idempotency-Key": key},
        )  # fmt: skip
        self.load.happened["changed bodies under old keys"] += 1

    def callback_url(self, slug: str) -> str:
        if slug == "ops-agent" and self.rng.random() < 0.5:
            return self.receiver.base_url + "/gone"  # answers 410: the webhook fails for good
        return self.receiver.url

    async def gate_call(self, client: Any, slug: str, body: dict, expected: str) -> None:
        body = {**body, "summary": f"soak {expected}", "callback_url": self.callback_url(slug)}
        payload = await self.submit(client, slug, uuid.uuid4().hex, body)
        if payload is None:
            return
        status, reason = payload["status"], payload["reason_code"]
        self.load.happened[f"gate answered {status}"] += 1
        if reason == "kill_switch":
            self.load.happened["denied by a kill switch"] += 1
            return
        swept = {"pending": "cancelled", "allowed": "revoked"}.get(expected)
        if status == swept and str(payload.get("feedback", "")).startswith("Stopped by kill"):
            # A retried submission answers the action as it is now: a kill switch engaged
            # between the abandoned first attempt and the retry has already swept it.
            self.load.happened["retry answered after a kill switch swept it"] += 1
            return
        if status != expected:
            self.load.unexpected.append(
                f"{slug} {body['tool']}: the gate answered {status}/{reason}, expected {expected}"
            )
            return
        if status == "allowed" and self.rng.random() < 0.8:
            await self.report(client, payload["id"], payload["payload_hash"])
        elif status == "pending":
            entry = Pending(
                payload["id"], slug, body["tool"], body["arguments"], payload["payload_hash"]
            )
            if self.rng.random() < self.args.orphan_rate:
                self.load.happened["pending left for expiry"] += 1
            else:
                self.pool[entry.action_id] = entry
            if len(self.followers) < self.args.followers:
                task = asyncio.ensure_future(self.follow(client, entry))
                self.followers.add(task)
                task.add_done_callback(self.followers.discard)

    async def report(self, client: Any, action_id: int, digest: str) -> tuple[int, Any]:
        succeeded = self.rng.random() < 0.9
        status, payload = await self.call(
            client, "execution report", "POST", f"/api/v1/actions/{action_id}/execution",
            {200: None, 409: {"revoked", "grant_expired"}},
            json={
                "outcome": "succeeded" if succeeded else "failed",
                "payload_hash": digest,
                "result": {"soak": True} if succeeded else None,
                "error": "" if succeeded else "the tool failed",
            },
        )  # fmt: skip
        return status, payload

    async def follow(self, client: Any, entry: Pending) -> None:
        """Wait for people (long-poll), maybe withdraw first; execute if approved."""
        status, payload = "pending", {}
        withdraw = self.rng.random() < self.args.withdraw_rate
        while status == "pending" and not self.stop.is_set():
            if withdraw:
                withdraw = False
                await self.pause(self.rng.uniform(0.05, 1.0))
                await self.call(
                    client, "withdraw", "POST", f"/api/v1/actions/{entry.action_id}/withdraw",
                    {200: None, 409: {"not_pending"}},
                )  # fmt: skip
                self.load.happened["withdrawals tried"] += 1
            code, payload = await self.call(
                client, "long-poll", "GET",
                f"/api/v1/actions/{entry.action_id}?wait={self.args.long_poll}&status=pending",
                {200: None},
            )  # fmt: skip
            if code != 200:
                return
            status = payload["status"]
        self.pool.pop(entry.action_id, None)
        if status != "approved" or self.stop.is_set():
            return
        if payload["payload_hash"] != entry.payload_hash:
            # After an edit-approve the pre-edit payload must never be accepted as executed.
            code, refused = await self.call(
                client, "execution report", "POST", f"/api/v1/actions/{entry.action_id}/execution",
                {409: {"payload_mismatch", "revoked", "grant_expired"}},
                json={"outcome": "succeeded", "payload_hash": entry.payload_hash},
            )  # fmt: skip
            if code == 409 and refused.get("code") == "payload_mismatch":
                self.load.happened["pre-edit hash refused after an edit"] += 1
        if self.rng.random() < 0.9:
            await self.report(client, entry.action_id, payload["payload_hash"])

    # -- people -------------------------------------------------------------------------

    async def reviewer(self, name: str, client: Any) -> None:
        while not self.stop.is_set():
            if not self.pool:
                await self.pause(0.05)
                continue
            entry = self.pool[self.rng.choice(list(self.pool))]
            roll = self.rng.random()
            if roll < 0.10:
                await self.pause(0.05)  # looked, decided nothing this time
                continue
            expect: dict[int, set[str] | None] = {
                201: None,
                409: {"not_pending", "already_approved", "expired"},
            }
            if roll < 0.30:
                body: dict[str, Any] = {"verdict": "reject", "comment": f"{name}: not now"}
            elif roll < 0.45:
                arguments, breaks_limit = edited_arguments(entry.tool, entry.arguments, self.rng)
                body = {"verdict": "approve", "comment": "edited", "arguments": arguments}
                if breaks_limit:
                    expect[400] = {"argument_limit"}
                    self.load.happened["edits over the tool's limit"] += 1
            else:
                body = {"verdict": "approve", "comment": f"{name}: fine"}
            times = 2 if self.rng.random() < 0.05 else 1
            if times == 2:
                self.load.happened["decisions sent twice at once"] += 1
            answers = await asyncio.gather(
                *(
                    self.call(
                        client,
                        "decision",
                        "POST",
                        f"/api/v1/actions/{entry.action_id}/decisions",
                        expect,
                        json=body,
                    )
                    for _ in range(times)
                )
            )
            for status, payload in answers:
                decided = status == 201 and payload.get("status") != "pending"
                if decided or (status == 409 and payload.get("code") in ("not_pending", "expired")):
                    self.pool.pop(entry.action_id, None)

    async def operator(self) -> None:
        """The incident owner: engage a switch now and then, release it shortly after."""
        client = self.session_client(INCIDENT_OWNER)
        low, high = self.args.kill_every
        while not self.stop.is_set():
            await self.pause(self.rng.uniform(low, high))
            if self.stop.is_set():
                return
            roll = self.rng.random()
            if roll < 0.7:
                body = {"scope": "agent", "target": self.rng.choice(AGENTS)}
            elif roll < 0.9:
                body = {"scope": "tool", "target": self.rng.choice(["send_email", "get_metrics"])}
            else:
                body = {"scope": "global"}
            status, switch = await self.call(
                client, "kill switch", "POST", "/api/v1/kill-switches", {201: None},
                json={**body, "reason": "soak: a drill of the real thing"},
            )  # fmt: skip
            if status != 201:
                continue
            self.load.happened[f"kill switches engaged ({body['scope']})"] += 1
            # Released even when the run stops meanwhile.
            await asyncio.sleep(self.rng.uniform(0.3, 1.5))
            await self.call(
                client, "kill switch", "POST", f"/api/v1/kill-switches/{switch['id']}/release",
                {200: None}, json={"reason": "soak: back to normal"},
            )  # fmt: skip

    async def watcher(self) -> None:
        """A reviewer's dashboard open, and a metrics scraper."""
        client = self.session_client(SESSION_REVIEWERS[1])
        scraper = self.client({"Authorization": f"Bearer {self.metrics_token}"})
        while not self.stop.is_set():
            await self.call(client, "queue page", "GET", "/", {200: None})
            await self.call(scraper, "metrics", "GET", "/metrics", {200: None})
            await self.pause(2.0)

    async def run(self) -> Load:
        people = [self.reviewer(name, self.session_client(name)) for name in SESSION_REVIEWERS] + [
            self.reviewer(
                TOKEN_REVIEWER, self.client({"Authorization": f"Bearer {self.personal_token}"})
            )
        ]
        tasks = [asyncio.ensure_future(c) for c in people]
        tasks += [asyncio.ensure_future(self.agent(i)) for i in range(self.args.agents)]
        tasks += [asyncio.ensure_future(self.operator()), asyncio.ensure_future(self.watcher())]
        started = mono()
        done, _ = await asyncio.wait(tasks, timeout=self.args.seconds)
        self.load.seconds = mono() - started
        self.stop.set()
        for task in done:  # a loop that ended early crashed: that is a finding
            if task.exception():
                self.load.unexpected.append(f"a simulated client crashed: {task.exception()!r}")
        await asyncio.wait(tasks, timeout=60)
        for task in list(self.followers):
            task.cancel()
        await asyncio.gather(*self.followers, return_exceptions=True)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception():
                self.load.unexpected.append(f"a simulated client crashed: {task.exception()!r}")
        for client in self.clients:
            await client.aclose()
        return self.load


# --- processes -------------------------------------------------------------------------------


class SoakServices(Services):
    """``Services`` (PostgreSQL, Redis, uvicorn) plus a Celery worker and Celery beat, each
    in its own process group with its own log; ``stop()`` stops them all."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.celery: dict[str, subprocess.Popen] = {}
        self.celery_logs: dict[str, Any] = {}

    def start_celery(self, role: str) -> None:
        """``role`` "worker" (prefork, ``--celery-concurrency``) or "beat"."""
        cmd = [PY, "-m", "celery", "-A", "config", role, "--loglevel", "WARNING"]
        if role == "worker":
            cmd += ["--pool", "prefork", "--concurrency", str(self.args.celery_concurrency)]
            cmd += ["--without-gossip", "--without-mingle"]
        else:
            cmd += ["--schedule", str(self.tmp / "celerybeat-schedule")]
        log_file = open(self.tmp / f"celery-{role}.log", "wb")  # noqa: SIM115 - closed in stop
        self.celery_logs[role] = log_file
        self.celery[role] = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def celery_alive(self) -> list[str]:
        return [role for role, proc in self.celery.items() if proc.poll() is None]

    def celery_tail(self, role: str) -> str:
        with contextlib.suppress(OSError):
            return (self.tmp / f"celery-{role}.log").read_text(errors="replace")[-2000:]
        return ""

    def stop_celery(self, role: str) -> None:
        proc = self.celery.pop(role, None)
        if proc is not None:
            stop_process_group(proc)  # SIGTERM: a warm shutdown finishes the running task
        log_file = self.celery_logs.pop(role, None)
        if log_file is not None:
            log_file.close()

    def stop_server(self) -> None:
        for role in list(self.celery):
            try:
                self.stop_celery(role)
            except Exception as exc:
                print(f"warning: celery {role} did not stop cleanly: {exc}", file=sys.stderr)
        super().stop_server()


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Inside Django, on the soak's database: the agents' rate limits out of the way and a
    short pending TTL for medium risk (new, audited policy versions), agent tokens, and a
    third reviewer with a personal token limited to deciding."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connections, transaction

    from accounts.personal_tokens import create_personal_token
    from audit.chain import Actor
    from rollout.actions import issue_agent_token, record_policy_version
    from rollout.models import Agent, Tier

    actor = Actor.system("soak")
    with transaction.atomic():
        for tier in Tier.objects.all():
            tier.pending_ttl_seconds = {**tier.pending_ttl_seconds, "medium": args.pending_ttl}
            tier.save(update_fields=["pending_ttl_seconds"])
        for agent in Agent.objects.filter(slug__in=AGENTS):
            Agent.objects.filter(pk=agent.pk).update(rate_limit_per_minute=10_000_000)
            record_policy_version(
                agent=agent, actor=actor, reason="soak: no rate limit, medium TTL shortened"
            )
    tokens = {
        slug: issue_agent_token(agent=Agent.objects.get(slug=slug), actor=actor, name="soak")
        for slug in AGENTS
    }
    user = get_user_model().objects.create_user(username=TOKEN_REVIEWER, password=None)
    user.groups.add(Group.objects.get(name="reviewer"))
    _, personal = create_personal_token(
        user=user, name="soak reviewer", scopes=["decide"], expires_in_days=1
    )
    connections.close_all()
    return {"tokens": tokens, "personal_token": personal}


# --- after the load: drain, then check --------------------------------------------------------


def undelivered_webhooks() -> int:
    from approvals.models import Outbox

    return Outbox.objects.filter(
        kind=Outbox.Kind.WEBHOOK, delivered_at__isnull=True, failed_at__isnull=True
    ).count()


def drain(timeout: float) -> tuple[float, int]:
    """Wait until no webhook is owed but undelivered (or ``timeout``); (seconds, left)."""
    started = mono()
    left = undelivered_webhooks()
    while left and mono() - started < timeout:
        time.sleep(0.5)  # the worker delivers and retries on its own schedule
        left = undelivered_webhooks()
    return mono() - started, left


def database_counts(reviewer: str) -> dict[str, int]:
    """What the dashboards should show, counted straight from the tables."""
    from django.db.models import Count

    from approvals.models import Action, Outbox
    from audit.models import AuditEvent
    from rollout.models import KillSwitch

    counts = {
        "queue page: pending": Action.objects.filter(status="pending").count(),
        "decided page: decided": Action.objects.filter(decided_at__isnull=False).count(),
        "metrics: audit events": AuditEvent.objects.count(),
    }
    for row in Action.objects.values("agent__slug", "reason_code").annotate(n=Count("id")):
        counts[f"metrics: gate decisions {row['agent__slug']}/{row['reason_code']}"] = row["n"]
    for row in (
        Action.objects.filter(status="pending").values("agent__slug").annotate(n=Count("id"))
    ):
        counts[f"metrics: pending {row['agent__slug']}"] = row["n"]
    for kind in Outbox.Kind.values:
        rows = Outbox.objects.filter(kind=kind)
        if rows.exists():
            counts[f"metrics: outbox {kind}/failed"] = rows.filter(failed_at__isnull=False).count()
            counts[f"metrics: outbox {kind}/undelivered"] = rows.filter(
                delivered_at__isnull=True, failed_at__isnull=True
            ).count()
    for row in (
        KillSwitch.objects.filter(released_at__isnull=True, is_drill=False)
        .values("scope")
        .annotate(n=Count("id"))
    ):
        counts[f"metrics: switches engaged {row['scope']}"] = row["n"]
    return {k: v for k, v in counts.items() if v or not k.startswith("metrics: ")}


def dashboard_counts(base_url: str, session: tuple[str, str], metrics_token: str) -> dict[str, int]:
    """The same numbers as the reviewer's queue and decided pages and ``/metrics`` show them."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    cookies = {"sessionid": session[0], "csrftoken": session[1]}
    with httpx.Client(base_url=base_url, cookies=cookies, timeout=60) as client:
        queue = client.get("/").text
        decided = client.get("/decided").text
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}"}).text
    found = re.search(r"data-queue-count>(\d+)<", queue)
    shown = re.search(r"<strong>(\d+)</strong> decided", decided)
    counts = {
        "queue page: pending": int(found.group(1)) if found else -1,
        "decided page: decided": int(shown.group(1)) if shown else -1,
    }
    names = {
        "airlock_gate_decisions": lambda x: f"gate decisions {x['agent']}/{x['reason_code']}",
        "airlock_pending_actions": lambda x: f"pending {x['agent']}",
        "airlock_outbox_rows": lambda x: f"outbox {x['kind']}/{x['state']}",
        "airlock_kill_switches_engaged": lambda x: f"switches engaged {x['scope']}",
        "airlock_audit_events": lambda x: "audit events",
    }
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            base = sample.name.removesuffix("_total")
            if base in names and not sample.name.endswith("_created"):
                counts[f"metrics: {names[base](sample.labels)}"] = int(sample.value)
    return {k: v for k, v in counts.items() if v or not k.startswith("metrics: ")}


def compare_dashboards(base_url: str, session: tuple[str, str], metrics_token: str) -> list[str]:
    for _ in range(5):
        before = database_counts(SESSION_REVIEWERS[0])
        shown = dashboard_counts(base_url, session, metrics_token)
        after = database_counts(SESSION_REVIEWERS[0])
        if before == after:  # the database held still while the pages were read
            return [
                f"{name}: the dashboard shows {shown.get(name, 0)}, the database has "
                f"{before.get(name, 0)}"
                for name in sorted(set(before) | set(shown))
                if shown.get(name, 0) != before.get(name, 0)
            ]
        time.sleep(1)  # something still changed it: read again
    return ["the database kept changing while the dashboards were compared with it"]


# --- the script --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--seconds", type=float, default=600, help="how long the load runs (600)")
    add("--agents", type=int, default=6, help="simulated agents (6)")
    add("--think", type=float, default=0.02, help="each agent's pause between calls, s (0.02)")
    add("--followers", type=int, default=40, help="pending actions waited on at once (40)")
    add("--workers", type=int, default=2, help="uvicorn workers (2)")
    add("--celery-concurrency", type=int, default=2, help="Celery worker processes (2)")
    add("--kill-every", default="3,8", help="seconds between kill switches, low,high (3,8)")
    add("--pending-ttl", type=int, default=20, help="medium-risk pending TTL, s (20)")
    add("--grant-ttl", type=int, default=20, help="GRANT_TTL_SECONDS (20)")
    add("--long-poll", type=int, default=5, help="long-poll wait, s (5)")
    add("--webhook-fail-rate", type=float, default=0.1, help="receiver 500s at random (0.1)")
    add("--abandon-rate", type=float, default=0.03, help="submissions cut off and retried")
    add("--withdraw-rate", type=float, default=0.04, help="pending actions withdrawn")
    add("--orphan-rate", type=float, default=0.05, help="pending actions nobody decides")
    add("--drain", type=float, default=120, help="longest wait for owed webhooks, s (120)")
    add("--seed", type=int, default=7, help="random seed (7)")
    add("--fsync", choices=["on", "off"], default="on", help="PostgreSQL fsync (on)")
    add("--json", type=Path, help="also write the figures and violations here")
    args = parser.parse_args(argv)
    args.kill_every = tuple(float(x) for x in args.kill_every.split(","))
    args.http_rate = "1000000/min"  # Services reads it; the throttle stays on the path
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    services = SoakServices(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on a plain kill too
    try:
        return run(services, args)
    except BenchmarkError as exc:
        log(f"error: {exc}")
        return 2
    finally:
        services.stop()


def run(services: SoakServices, args: argparse.Namespace) -> int:
    t0 = mono()

    def step(text: str) -> None:
        log(f"[{mono() - t0:6.1f} s] {text}")

    metrics_token = secrets.token_urlsafe(24)
    services.env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "SECURE_COOKIES": "0",  # plain-HTTP loopback logins
            "WEBHOOK_ALLOWED_HOSTS": HOST,  # the local receiver
            "METRICS_TOKEN": metrics_token,
            "PERSON_HTTP_RATE": "1000000/min",
            "GRANT_TTL_SECONDS": str(args.grant_ttl),
            # Notification emails go nowhere real (this measures webhooks, not SMTP).
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        }
    )
    log(
        f"Airlock soak, {time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    step(f"PostgreSQL (fsync={args.fsync}) and Redis in {services.tmp}; migrate; seed_demo")
    services.start_databases()
    services.manage("migrate", "--noinput", timeout=300)
    services.manage("seed_demo", timeout=120)
    os.environ.update(services.env)
    import django

    import config  # noqa: F401  (see MANAGE in benchmarks/gate.py)

    django.setup()
    from benchmarks.invariants import (
        Findings,
        check_actions,
        check_chain,
        check_idempotency,
        check_webhooks_settled,
    )

    prepared = prepare(args)
    step(
        f"uvicorn ({args.workers} workers), Celery worker ({args.celery_concurrency}) and beat; "
        "production settings"
    )
    services.start_server({})
    services.start_celery("worker")
    services.start_celery("beat")
    base_url = f"http://{HOST}:{services.http_port}"
    sessions = {
        name: login(services.http_port, name) for name in (*SESSION_REVIEWERS, INCIDENT_OWNER)
    }

    rng = random.Random(args.seed + 1)

    def webhook_status(path: str) -> int:
        if path.startswith("/gone"):
            return 410
        return 500 if rng.random() < args.webhook_fail_rate else 200

    with Receiver(status_for=webhook_status) as receiver:
        step(
            f"load for {args.seconds:g} s: {args.agents} agents, 3 reviewers, kill switches "
            f"every {args.kill_every[0]:g}-{args.kill_every[1]:g} s, webhooks to {receiver.base_url}"
        )
        soak = Soak(
            args, base_url, prepared["tokens"], prepared["personal_token"], sessions, receiver,
            metrics_token,
        )  # fmt: skip
        load = asyncio.run(soak.run())
        dead = {"worker", "beat"} - set(services.celery_alive())
        if dead:
            raise BenchmarkError(
                f"celery {', '.join(sorted(dead))} died:\n"
                + "\n".join(services.celery_tail(r) for r in dead)
            )
        step("load stopped; draining owed webhooks (worker and beat running)")
        waited, left = drain(args.drain)
        step(f"    {waited:.1f} s, {left} left; stopping beat, so the database holds still")
        services.stop_celery("beat")
        waited, left = drain(args.drain)
        step(f"    drained again: {waited:.1f} s, {left} left")
        received = []
        with receiver.lock:
            for _, body in receiver.received:
                received.append(json.loads(body)["delivery_id"])

    step("checks: invariants, audit_verify, dashboards against the database")
    findings = Findings()
    findings.extend(check_actions())
    findings.extend(check_webhooks_settled(received))
    findings.extend(check_idempotency((s, k, i) for (s, k), i in load.ledger.items()))
    findings.extend(check_chain())
    findings.counts["webhook receipts (with duplicates)"] = len(received)
    findings.counts["webhook duplicate receipts"] = len(received) - len(set(received))
    violations = list(load.unexpected) + findings.violations
    try:
        verified = services.manage("audit_verify", timeout=300).strip()
    except BenchmarkError as exc:
        verified = ""
        violations.append(f"manage.py audit_verify: {exc}")
    violations += compare_dashboards(base_url, sessions[SESSION_REVIEWERS[0]], metrics_token)
    return report(args, load, findings, verified, violations)


def report(
    args: argparse.Namespace, load: Load, findings: Any, verified: str, violations: list[str]
) -> int:
    from benchmarks.invariants import summary

    seconds = load.seconds or 1.0
    by_endpoint: Counter = Counter()
    for (endpoint, _, _), n in load.calls.items():
        by_endpoint[endpoint] += n
    requests = sum(by_endpoint.values())
    decisions = sum(n for (e, s, _), n in load.calls.items() if e == "decision" and s == 201)
    reports = sum(n for (e, s, _), n in load.calls.items() if e == "execution report" and s == 200)
    figures = {
        "seconds": round(seconds, 1),
        "requests": requests,
        "requests_per_second": round(requests / seconds, 1),
        "gate_calls_per_second": round(by_endpoint["gate"] / seconds, 1),
        "decisions_per_second": round(decisions / seconds, 2),
        "executions_per_second": round(reports / seconds, 2),
        "latency_ms": {
            endpoint: {
                "p50": round(1000 * pct(values, 0.50), 1),
                "p99": round(1000 * pct(values, 0.99), 1),
            }
            for endpoint, values in sorted(load.latency.items())
            if endpoint != "long-poll"
        },
        "answers": {f"{e} {s} {c}".strip(): n for (e, s, c), n in sorted(load.calls.items())},
        "happened": dict(load.happened),
        "counts": dict(findings.counts),
        "audit_verify": verified,
        "violations": violations,
    }
    log()
    log("=" * 100)
    log(
        f"Soak: {seconds:.0f} s, {args.agents} agents + 3 reviewers + kill switches, "
        f"uvicorn {args.workers} workers, fsync={args.fsync}"
    )
    log(
        f"  load held: {figures['requests_per_second']} requests/s ({requests} in all), gate "
        f"{figures['gate_calls_per_second']} calls/s, {figures['decisions_per_second']} "
        f"decisions/s, {figures['executions_per_second']} execution reports/s"
    )
    for endpoint, lat in figures["latency_ms"].items():
        log(
            f"  {endpoint:<17} p50 {lat['p50']:7.1f} ms  p99 {lat['p99']:7.1f} ms  n={by_endpoint[endpoint]}"
        )
    log("  answers: " + ", ".join(f"{k} x{n}" for k, n in figures["answers"].items()))
    log("  happened: " + ", ".join(f"{k} {n}" for k, n in sorted(load.happened.items())))
    log(f"  checked: {summary(findings.counts)}")
    log(f"  audit_verify: {verified or 'FAILED'}")
    log(f"  violations: {len(violations)}")
    for line in violations[:40]:
        log(f"    {line}")
    log("=" * 100)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0 if not violations else 1


if __name__ == "__main__":
    sys.exit(main())
