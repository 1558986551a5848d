"""The demo agent: the seeded demo agents at work, through the Python SDK only (no Django),
so the dashboard shows a live, realistic queue — and an example of a real SDK client.

Mostly routine reads, some drafts, refunds and emails that need a person (with summaries,
rationale, evidence, blast radius and release), shadow deploys, an occasional forbidden
call and now and then a short runaway burst. Pending calls wait in background threads;
approved ones are "executed" with the approved (possibly edited) arguments and reported.
One log line per call. Runs until SIGTERM/Ctrl-C (or ``--max-calls``); survives the server
restarting (the SDK retries; the loop never dies on an error).

Run: ``python sdk/python/examples/demo_agent.py --tokens var/demo-agent-tokens.json`` where
the file maps agent slugs to bearer tokens (``manage.py agent_token support-assistant
finance-agent deploy-bot ops-agent --name demo-agent --json`` writes one; ``scripts/run``
does). Environment: ``AIRLOCK_URL`` (default http://127.0.0.1:8000), ``AIRLOCK_DEMO_TOKENS``
(the tokens file), ``DEMO_AGENT_INTERVAL`` (seconds between calls: ``"2-5"`` for a random
pause in that range, or one number)."""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SDK_SRC = Path(__file__).resolve().parents[1] / "src"
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_INTERVAL = "2-5"


class DemoAgentError(Exception):
    """A setup problem the demo agent cannot run with (bad interval, no tokens)."""


def _sdk() -> Any:
    """The SDK: the installed one, else the in-repo copy (runs without installing it)."""
    if str(SDK_SRC) not in sys.path:
        sys.path.insert(0, str(SDK_SRC))
    import airlock_sdk

    return airlock_sdk


def parse_interval(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("-")
    try:
        bounds = (float(low), float(high) if sep else float(low))
    except ValueError:
        raise DemoAgentError(f"interval must be N or MIN-MAX seconds, not {text!r}") from None
    if bounds[0] < 0 or bounds[1] < bounds[0]:
        raise DemoAgentError(f"interval must be N or MIN-MAX seconds, not {text!r}")
    return bounds


# --- what the agents do ------------------------------------------------------------------------

CUSTOMERS = [
    ("Dana Whitfield", "dana.whitfield@example.com"),
    ("Amir Haddad", "amir.haddad@example.com"),
    ("Lena Vogel", "lena.vogel@example.com"),
    ("Kenji Mori", "kenji.mori@example.com"),
    ("Sofia Marques", "sofia.marques@example.com"),
    ("Tom Okafor", "tom.okafor@example.com"),
]
SERVICES = ["checkout", "payments-api", "search", "notifications", "inventory"]
RELEASES = {
    "support-assistant": {
        "model": "gpt-5.1",
        "prompt_version": "support-v14",
        "tool_schema_version": "2026-10",
    },
    "finance-agent": {
        "model": "gpt-5.1-mini",
        "prompt_version": "finance-v6",
        "tool_schema_version": "2026-09",
    },
    "deploy-bot": {
        "model": "o4-mini",
        "prompt_version": "deploy-v3",
        "tool_schema_version": "2026-10",
    },
    "ops-agent": {"model": "gpt-5.1", "prompt_version": "ops-v9", "tool_schema_version": "2026-10"},
}


@dataclass
class Call:
    agent: str
    tool: str
    arguments: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)


def _order(rng: random.Random) -> str:
    return f"ORD-{rng.randint(1000, 9999)}"


def _ticket(rng: random.Random) -> str:
    return f"T-{rng.randint(3000, 3999)}"


def support_read(rng: random.Random) -> Call:
    if rng.random() < 0.6:
        order = _order(rng)
        return Call(
            "support-assistant",
            "get_order_status",
            {"order_id": order},
            {"summary": f"Look up the delivery status of {order}"},
        )
    query = rng.choice(
        ["refund for late delivery", "damaged item policy", "change shipping address"]
    )
    return Call(
        "support-assistant",
        "search_policy_docs",
        {"query": query, "limit": 5},
        {"summary": f"Search the policy docs for {query!r}"},
    )


def support_draft(rng: random.Random) -> Call:
    name, _ = rng.choice(CUSTOMERS)
    ticket = _ticket(rng)
    return Call(
        "support-assistant",
        "create_ticket_draft",
        {
            "ticket_id": ticket,
            "body": f"Hi {name.split()[0]}, thanks for your patience. I am looking into it.",
        },
        {"summary": f"Draft a first reply on ticket {ticket}"},
    )


def support_refund(rng: random.Random) -> Call:
    name, _ = rng.choice(CUSTOMERS)
    order, ticket = _order(rng), _ticket(rng)
    roll = rng.random()
    amount = (
        round(rng.uniform(12, 180), 2)
        if roll < 0.75
        else round(rng.uniform(1200, 4800), 2)
        if roll < 0.95
        else 12500.0  # over the tool's limit: denied at the gate
    )
    late_days = rng.randint(6, 14)
    return Call(
        "support-assistant",
        "create_refund_request",
        {"order_id": order, "amount": amount, "currency": "EUR", "reason": "late_delivery"},
        {
            "summary": f"Refund {amount:.2f} EUR to {name} for {order}: delivered {late_days} days late",
            "rationale": {
                "objective": f"Resolve ticket {ticket} within the refund policy",
                "plan": "Refund the order amount, then email the customer a confirmation",
                "alternatives": ["Offer a 15% voucher instead", "Escalate to a supervisor"],
                "confidence": round(rng.uniform(0.62, 0.95), 2),
            },
            "evidence": [
                {
                    "kind": "shipping_status",
                    "title": "Carrier tracking",
                    "content": f"Promised in 3 business days; delivered after {late_days + 3}.",
                },
                {
                    "kind": "refund_policy",
                    "title": "Refund policy §4.2",
                    "content": "Deliveries more than five business days late are refundable.",
                },
                {
                    "kind": "ticket",
                    "title": f"Ticket {ticket}",
                    "content": f"{name}: 'The parcel came almost two weeks late. I want my money back.'",
                },
            ],
            "blast_radius": {
                "environment": "production",
                "reversible": True,
                "amount": {"value": amount, "currency": "EUR"},
                "users_affected": 1,
                "systems": ["payments"],
            },
            "compensation": {"tool": "cancel_refund_request", "window_seconds": 86400},
            "correlation_id": ticket,
        },
    )


def support_email(rng: random.Random) -> Call:
    name, email = rng.choice(CUSTOMERS)
    order = _order(rng)
    return Call(
        "support-assistant",
        "send_email",
        {
            "to": email,
            "subject": f"Update on your order {order}",
            "body": (
                f"Hi {name.split()[0]},\n\nyour refund for {order} has been requested and "
                "should reach your card within 5 business days.\n\nBest, Support"
            ),
        },
        {
            "summary": f"Email {name} that the refund for {order} is on its way",
            "rationale": {"objective": "Keep the customer informed", "confidence": 0.9},
            "evidence": [
                {"kind": "ticket", "title": "Customer asked for an update", "content": "…"}
            ],
            "blast_radius": {"environment": "production", "reversible": False, "users_affected": 1},
        },
    )


def support_forbidden(rng: random.Random) -> Call:
    if rng.random() < 0.8:
        order = _order(rng)
        return Call(
            "support-assistant",
            "approve_refund",
            {"order_id": order, "amount": 89.9},
            {"summary": f"Approve the refund for {order} myself to save time"},
        )
    return Call(
        "support-assistant",
        "delete_customer_record",
        {"customer_id": f"C-{rng.randint(10000, 99999)}", "reason": "GDPR request"},
        {"summary": "Delete a customer record after an erasure request"},
    )


def finance_call(rng: random.Random) -> Call:
    roll = rng.random()
    if roll < 0.5:
        invoice = f"INV-2026-{rng.randint(100, 999)}"
        return Call(
            "finance-agent",
            "get_invoice",
            {"invoice_id": invoice},
            {"summary": f"Read invoice {invoice} to match it to a purchase order"},
        )
    if roll < 0.7:
        return Call(
            "finance-agent",
            "export_ledger",
            {"period": "2026-10", "format": "csv"},
            {"summary": "Export the October ledger for the month-end reconciliation"},
        )
    if roll < 0.9:
        invoices = [f"INV-2026-{rng.randint(100, 999)}" for _ in range(rng.randint(2, 6))]
        return Call(
            "finance-agent",
            "draft_payment_run",
            {"run_date": "2026-11-28", "invoices": invoices},
            {"summary": f"Draft the payment run for {len(invoices)} supplier invoices"},
        )
    amount = round(rng.uniform(800, 9000), 2)
    return Call(  # draft_only: a payment is denied by the tier
        "finance-agent",
        "create_payment",
        {"payee": "Acme Logistics GmbH", "amount": amount, "currency": "EUR"},
        {
            "summary": f"Pay Acme Logistics {amount:.2f} EUR",
            "blast_radius": {"amount": {"value": amount, "currency": "EUR"}, "reversible": False},
        },
    )


def deploy_call(rng: random.Random) -> Call:
    service = rng.choice(SERVICES)
    version = f"v2.{rng.randint(10, 40)}.{rng.randint(0, 9)}"
    roll = rng.random()
    if roll < 0.4:
        return Call(
            "deploy-bot",
            "get_build_status",
            {"service": service, "version": version},
            {"summary": f"Check the CI status of {service} {version}"},
        )
    if roll < 0.6:
        return Call(
            "deploy-bot",
            "create_release_notes_draft",
            {"service": service, "version": version},
            {"summary": f"Draft release notes for {service} {version}"},
        )
    environment = rng.choice(["staging", "staging", "production"])
    return Call(
        "deploy-bot",
        "deploy_service",
        {"service": service, "version": version, "environment": environment},
        {
            "summary": f"Deploy {service} {version} to {environment}",
            "rationale": {"objective": "Ship the fix for the checkout timeout", "confidence": 0.8},
            "blast_radius": {
                "environment": environment,
                "reversible": True,
                "systems": [service],
                "users_affected": 50000 if environment == "production" else 0,
            },
        },
    )


def ops_call(rng: random.Random) -> Call:
    service = rng.choice(SERVICES)
    roll = rng.random()
    if roll < 0.55:
        return Call(
            "ops-agent",
            "get_metrics",
            {"service": service, "metric": "p99_latency_ms", "window": "15m"},
            {"summary": f"Read the p99 latency of {service} over the last 15 minutes"},
        )
    if roll < 0.75:
        pod = f"{service}-{rng.randint(1000, 9999)}-x{rng.randint(10, 99)}"
        return Call(
            "ops-agent",
            "restart_pod",
            {"namespace": "prod", "pod": pod},
            {
                "summary": f"Restart {pod}: OOMKilled 3 times in 10 minutes",
                "blast_radius": {"environment": "production", "reversible": True},
            },
        )
    if roll < 0.9:
        replicas = rng.choice([8, 10, 12, 16])
        return Call(
            "ops-agent",
            "scale_deployment",
            {"deployment": service, "replicas": replicas, "namespace": "prod"},
            {
                "summary": f"Scale {service} to {replicas} replicas: p99 over 400 ms for 15 min",
                "rationale": {"objective": "Keep p99 latency under 300 ms", "confidence": 0.75},
                "blast_radius": {
                    "environment": "production",
                    "reversible": True,
                    "systems": [service],
                },
            },
        )
    node = f"ip-10-0-{rng.randint(1, 9)}-{rng.randint(10, 250)}"
    return Call(
        "ops-agent",
        "drain_node",
        {"node": node, "grace_period_seconds": 120},
        {
            "summary": f"Drain {node}: disk pressure, kernel errors in dmesg",
            "blast_radius": {"environment": "production", "reversible": True, "systems": ["k8s"]},
        },
    )


def ops_forbidden(rng: random.Random) -> Call:
    volume = f"pvc-{rng.getrandbits(32):08x}"
    return Call(
        "ops-agent",
        "delete_volume",
        {"volume": volume, "namespace": "prod"},
        {"summary": f"Delete {volume}: looks orphaned, frees 500 GiB"},
    )


def runaway_burst(rng: random.Random) -> list[Call]:
    """An agent stuck in a loop: the same restart, again and again."""
    pod = f"checkout-{rng.randint(1000, 9999)}-x{rng.randint(10, 99)}"
    call = Call(
        "ops-agent",
        "restart_pod",
        {"namespace": "prod", "pod": pod},
        {"summary": f"Restart {pod} (retrying: pod still not ready)"},
    )
    return [call] * rng.randint(6, 12)


# (weight, what) — most calls are routine reads.
PLAN: list[tuple[float, Callable[[random.Random], Call]]] = [
    (30, support_read),
    (8, support_draft),
    (9, support_refund),
    (7, support_email),
    (2, support_forbidden),
    (10, finance_call),
    (8, deploy_call),
    (20, ops_call),
    (1, ops_forbidden),
]
BURST_CHANCE = 0.02
COMPENSATED = frozenset({"create_refund_request"})  # declare how to undo them


def fake_result(tool: str, arguments: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """What the "real" tool would have returned."""
    if tool == "get_order_status":
        return {"order_id": arguments.get("order_id"), "status": "delivered", "late_days": 8}
    if tool == "create_refund_request":
        return {"refund_id": f"RF-{rng.randint(10000, 99999)}", "amount": arguments.get("amount")}
    if tool == "send_email":
        return {"message_id": f"<{rng.getrandbits(48):x}@mail.example.com>"}
    return {"ok": True}


# --- the loop ----------------------------------------------------------------------------------


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Drive the seeded demo agents through the SDK against a running Airlock."
    )
    parser.add_argument("--url", default=os.environ.get("AIRLOCK_URL") or DEFAULT_URL)
    parser.add_argument(
        "--tokens",
        default=os.environ.get("AIRLOCK_DEMO_TOKENS") or "var/demo-agent-tokens.json",
        help="JSON file mapping agent slugs to bearer tokens",
    )
    parser.add_argument(
        "--interval",
        default=os.environ.get("DEMO_AGENT_INTERVAL") or DEFAULT_INTERVAL,
        help="seconds between calls: N, or MIN-MAX for a random pause (default 2-5)",
    )
    parser.add_argument("--max-calls", type=int, default=0, help="stop after N (0: never)")
    parser.add_argument(
        "--max-waiting", type=int, default=12, help="pending calls waited on at once"
    )
    parser.add_argument(
        "--give-up-after",
        type=float,
        default=20.0,
        help="seconds the SDK retries one request before failing closed",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument(
        "--failure-rate",
        type=float,
        default=0.03,
        help="share of approved calls whose (pretend) tool fails and is reported failed",
    )
    parser.add_argument(
        "--rollback-check",
        type=float,
        default=15.0,
        help="seconds between checks for rollbacks people requested",
    )
    return parser


def read_tokens(path: str) -> dict[str, str]:
    """The agents' bearer tokens, ``{slug: token}``, from the JSON file at ``path``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DemoAgentError(f"cannot read the agents' tokens from {path}: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise DemoAgentError(f"{path} must be a JSON object of agent slug to token")
    return data


class DemoAgent:
    """The demo agents' loop. ``out`` receives one line per call (a text stream)."""

    def __init__(self, tokens: dict[str, str], out: Any = None) -> None:
        self.tokens = tokens
        self.out = out or sys.stdout

    def run(self, **options: Any) -> int:
        """Runs until stopped (SIGTERM/SIGINT) or ``max_calls``; returns the calls made."""
        sdk = _sdk()
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call is ours
        # Own generators: the process's global one is shared with other threads.
        self.plan_rng = random.Random(options["seed"])  # what the agents do
        self.rng = random.Random()  # background threads: outcomes, results
        self.low, self.high = parse_interval(options["interval"])
        self.max_waiting = options["max_waiting"]
        self.failure_rate = options["failure_rate"]
        if not 0 <= self.failure_rate <= 1:
            raise DemoAgentError(f"--failure-rate must be between 0 and 1, not {self.failure_rate}")
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.waiting: dict[int, Any] = {}
        self.threads: list[threading.Thread] = []
        # Executed actions that declared a compensation: people may ask to roll them back.
        self.reversible: collections.deque = collections.deque(maxlen=50)
        self.rollback_every = options["rollback_check"]
        self.last_rollback_check = time.monotonic()
        clients = self._clients(sdk, options["url"], options["give_up_after"])
        if not clients:
            raise DemoAgentError("no demo agents' tokens: see the module docstring")
        self.log(f"demo agent: {', '.join(sorted(clients))} against {options['url']}")
        previous_handlers = self._install_signal_handlers()
        calls = 0
        limit = options["max_calls"] or float("inf")
        try:
            while not self.stop.is_set() and calls < limit:
                batch = self._next_calls(clients)
                for number, call in enumerate(batch):
                    if self.stop.is_set() or calls >= limit:
                        break
                    if number:
                        self.stop.wait(0.25)  # a runaway loop: fast, but not instant
                    self._do(sdk, clients[call.agent], call, burst=len(batch) > 1)
                    calls += 1
                self._check_rollbacks(sdk)
                if calls < limit:
                    self.stop.wait(self.rng.uniform(self.low, self.high))
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            self._shut_down(clients)
        self.log(f"demo agent stopped after {calls} calls")
        return calls

    # --- setup ---------------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, Any]:
        """SIGTERM/SIGINT stop the loop gracefully; returns the handlers to restore."""
        if threading.current_thread() is not threading.main_thread():
            return {}  # signals only reach the main thread; --max-calls ends the run
        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: self.stop.set())
        return previous

    def _clients(self, sdk: Any, url: str, give_up_after: float) -> dict[str, Any]:
        retry = sdk.RetryPolicy(
            attempts=8, backoff=0.5, max_backoff=5.0, give_up_after=give_up_after
        )
        return {
            slug: sdk.Airlock(url, token, retry=retry, release=RELEASES[slug], poll_seconds=10)
            for slug, token in sorted(self.tokens.items())
            if slug in RELEASES
        }

    def _next_calls(self, clients: dict[str, Any]) -> list[Call]:
        rng = self.plan_rng
        if "ops-agent" in clients and rng.random() < BURST_CHANCE:
            return runaway_burst(rng)
        while True:
            make = rng.choices([m for _, m in PLAN], weights=[w for w, _ in PLAN])[0]
            call = make(rng)
            if call.agent not in clients:
                continue
            if call.tool in ("create_refund_request", "send_email") and self._busy():
                return [support_read(rng)] if "support-assistant" in clients else []
            return [call]

    def _busy(self) -> bool:
        with self.lock:
            return len(self.waiting) >= self.max_waiting

    # --- one call ------------------------------------------------------------------------

    def _do(self, sdk: Any, client: Any, call: Call, burst: bool = False) -> None:
        try:
            decision = client.request(call.tool, call.arguments, **call.fields)
        except sdk.AirlockError as exc:
            self.log(f"{call.agent:<17} {call.tool:<26} ERROR {exc}")
            return
        tag = " [runaway]" if burst else ""
        self.log(
            f"{call.agent:<17} {call.tool:<26} {decision.status:<8} {decision.reason_code:<22} "
            f"{decision.risk:<8} #{decision.id}{tag} {call.fields.get('summary', '')}".rstrip()
        )
        if decision.executable:
            self._execute(sdk, client, decision)
        elif decision.pending:
            with self.lock:
                self.waiting[decision.id] = (client, decision)
            thread = threading.Thread(
                target=self._wait_then_execute, args=(sdk, client, decision), daemon=True
            )
            self.threads = [t for t in self.threads if t.is_alive()] + [thread]
            thread.start()

    def _execute(self, sdk: Any, client: Any, decision: Any) -> None:
        """Pretend to run the tool with the approved arguments, then report it."""
        try:
            with self.lock:
                fails = self.rng.random() < self.failure_rate
                result = fake_result(decision.tool, decision.arguments, self.rng)
            if fails:
                client.report(
                    decision, "failed", error="TimeoutError: upstream did not answer in 10 s"
                )
            else:
                client.report(decision, "succeeded", result)
                if decision.status == "executed" and decision.tool in COMPENSATED:
                    with self.lock:
                        self.reversible.append((client, decision))
        except sdk.AirlockError as exc:
            self.log(f"  report of #{decision.id} failed: {exc}")

    def _wait_then_execute(self, sdk: Any, client: Any, decision: Any) -> None:
        try:
            while not self.stop.is_set():
                try:
                    decision.wait(timeout=15)
                    break
                except sdk.DecisionTimeout:
                    continue
            else:
                return
            edited = " with edited arguments" if decision.edited else ""
            self.log(f"  #{decision.id} {decision.tool} approved{edited}: executing")
            self._execute(sdk, client, decision)
        except sdk.ActionNotPermitted as exc:
            self.log(f"  #{decision.id} {decision.tool}: {exc}")
        except sdk.AirlockError as exc:
            self.log(f"  #{decision.id} {decision.tool}: gave up waiting: {exc}")
        except Exception as exc:  # never let a demo thread die loudly
            self.log(f"  #{decision.id} {decision.tool}: unexpected {type(exc).__name__}: {exc}")
        finally:
            with self.lock:
                self.waiting.pop(decision.id, None)

    def _check_rollbacks(self, sdk: Any, force: bool = False) -> None:
        """Undo (pretend) the executed actions people asked to roll back, and report it."""
        if not force and time.monotonic() - self.last_rollback_check < self.rollback_every:
            return
        self.last_rollback_check = time.monotonic()
        with self.lock:
            tracked = list(self.reversible)
        for client, decision in tracked:
            try:
                decision.refresh()
                if decision.status == "rollback_requested":
                    client.report_rollback(decision, "rolled_back", {"undone": decision.tool})
                    self.log(f"  #{decision.id} {decision.tool}: rolled back as requested")
            except sdk.GateUnavailable:
                return  # the server is away; try again next round
            except sdk.AirlockError as exc:
                self.log(f"  #{decision.id} {decision.tool}: rollback check failed: {exc}")
                continue
            if decision.status != "executed":
                with self.lock, contextlib.suppress(ValueError):
                    self.reversible.remove((client, decision))

    # --- shutdown ------------------------------------------------------------------------

    def _shut_down(self, clients: dict[str, Any]) -> None:
        """Withdraw what is still pending (nobody will execute it), stop the waiters."""
        self.stop.set()
        sdk = _sdk()
        quick = sdk.RetryPolicy(attempts=2, backoff=0.2, give_up_after=2)
        with self.lock:
            pending = list(self.waiting.values())
        for client, decision in pending:
            with contextlib.suppress(sdk.AirlockError):
                client.withdraw(decision, retry=quick)
        deadline = time.monotonic() + 10
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._check_rollbacks(sdk, force=True)
        for client in clients.values():
            client.close()

    def log(self, line: str) -> None:
        with self.lock:
            self.out.write(f"{time.strftime('%H:%M:%S')} {line}\n")
            self.out.flush()


def main(argv: list[str] | None = None, out: Any = None) -> int:
    options = vars(argument_parser().parse_args(argv))
    try:
        tokens = read_tokens(options.pop("tokens"))
        DemoAgent(tokens, out=out).run(**options)
    except DemoAgentError as exc:
        print(f"demo agent: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
