"""Races on the action write path: people's approvals, rejections and edits, expiry, the
agent's withdrawals and execution reports, gate calls and kill switches, all aimed at the
same actions at the same instant from real threads AND separate processes on PostgreSQL.
Not a test; run by hand (``tests/test_races.py`` runs a few hundred rounds of the same
code in CI):

    .venv/bin/python benchmarks/races.py                    # 2000 rounds + the replay storm
    .venv/bin/python benchmarks/races.py --rounds 5000 --processes 3 --replays 400

Self-contained like benchmarks/gate.py, whose ``Services`` it uses: a throwaway PostgreSQL
and Redis, ``migrate``, then this process configures Django on that database and runs the
rounds. Then ``benchmarks/invariants.py`` checks every action it made (one outcome each,
one audit event per transition, no approver counted twice, nothing executed but the
approved payload, nothing in a kill switch's scope acted on while engaged) and the audit
chain (verifies, no fork). Then promise 2, the replay storm: a uvicorn server with two
workers (production settings), and for each of ``--keys`` Idempotency-Keys ``--replays``
threads released at once, one in ten with a changed body: one action per key, one identical
response for every same-body replay, 409 for the other body. Exit status 0 only when no
violation was found.

A round: the main process creates the round's action(s) (committed), hands one operation to
each racer — ``--threads`` threads here plus ``--per-process`` threads in each of
``--processes`` worker processes, shuffled each round — and they all wait on one
cross-process barrier, then run their operation through ``approvals.actions`` /
``incidents.actions``. Reports spin (1 ms) while the action is still pending so they land
right after the decision. Then any switch engaged is released and the next round starts.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import random
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RACE_RULES = [
    # (tool, effect, rule kind, base risk, argument limits)
    ("get_order_status", "read", "allowed", "low", []),
    ("send_email", "write", "requires_approval", "medium", []),
    (
        "create_refund_request",
        "write",
        "requires_approval",
        "medium",
        [{"field": "amount", "op": "<=", "value": 10000}],
    ),
]
# Risk follows the refund's own amount, not only what the agent declares.
RACE_ARGUMENT_RADIUS = {"create_refund_request": {"amount": "amount"}}
REPORT_SPIN_SECONDS = 0.15
BARRIER_TIMEOUT = 60


# --- the world a run races in ---------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """Ids of the agent and people the rounds use (ids, so worker processes load their own)."""

    agent_id: int
    agent_slug: str
    reviewers: tuple[int, int, int]  # two plain reviewers, then one critical approver


def make_world(prefix: str = "") -> World:
    """Register a racing agent (rate limit out of the way) and three reviewers, the last one
    also a critical approver. Audited like any registration."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission

    from audit.chain import Actor
    from rollout.actions import register_agent

    tag = prefix or uuid.uuid4().hex[:8]
    agent = register_agent(
        actor=Actor.system("races"),
        slug=f"racer-{tag}",
        name=f"Racer {tag}",
        tier="supervised",
        rules=[
            {
                "tool": t,
                "effect": e,
                "rule": k,
                "base_risk": r,
                "argument_limits": limits,
                "blast_radius_from_arguments": RACE_ARGUMENT_RADIUS.get(t, {}),
            }
            for t, e, k, r, limits in RACE_RULES
        ],
        rate_limit_per_minute=10_000_000,
    )
    group = Group.objects.get(name="reviewer")
    critical = Permission.objects.get(
        content_type__app_label="rollout", codename="critical_approve_agent"
    )
    ids = []
    for i in range(3):
        user = get_user_model().objects.create_user(username=f"race-{tag}-{i}", password=None)
        user.groups.add(group)
        if i == 2:
            user.user_permissions.add(critical)
        ids.append(user.pk)
    return World(agent.pk, agent.slug, tuple(ids))


# --- operations (run by racers; each answers a short outcome) ------------------------------


# Each racer thread loads the people and the agent once (with their permission caches):
# the rounds race the write path, not these reads.
_loaded = threading.local()


def _user(pk: int) -> Any:
    from django.contrib.auth import get_user_model

    users = _loaded.__dict__.setdefault("users", {})
    if pk not in users:
        users[pk] = get_user_model().objects.get(pk=pk)
    return users[pk]


def _agent(world: World) -> Any:
    from rollout.models import Agent

    if getattr(_loaded, "agent", None) is None or _loaded.agent.pk != world.agent_id:
        _loaded.agent = Agent.objects.get(pk=world.agent_id)
    return _loaded.agent


def op_approve(
    world: World,
    action_id: int,
    reviewer: int,
    edit: dict | None = None,
    seen: str | None = None,
) -> str:
    """Approve (``edit``: edited arguments) the payload the reviewer saw (``seen``: its hash,
    as a card sends it; None as the API allows)."""
    from approvals import actions

    actions.approve(
        action_id=action_id,
        user=_user(reviewer),
        comment="race",
        arguments=edit,
        seen_hash=seen,
    )
    return "ok"


def op_reject(world: World, action_id: int, reviewer: int) -> str:
    from approvals import actions

    actions.reject(action_id=action_id, user=_user(reviewer), comment="race: no")
    return "ok"


def op_withdraw(world: World, action_id: int) -> str:
    from approvals import actions

    actions.withdraw(action_id=action_id, agent=_agent(world))
    return "ok"


def op_expire(world: World, action_id: int) -> str:
    from approvals import actions

    return "ok" if actions.expire(action_id=action_id) else "noop"


def op_revoke_stale(world: World, action_id: int) -> str:
    from approvals import actions

    return "ok" if actions.revoke_stale_grant(action_id=action_id) else "noop"


def op_engage(world: World) -> str:
    from audit.chain import Actor
    from incidents.actions import engage_kill_switch

    switch = engage_kill_switch(
        scope="agent", target=world.agent_slug, reason="race", actor=Actor.system("races")
    )
    return f"ok:{sum(switch.stopped_counts.values())}"


def op_submit(world: World) -> str:
    from approvals import actions

    submission = actions.submit_action(
        agent=_agent(world),
        idempotency_key=uuid.uuid4().hex,
        body={"tool": "get_order_status", "arguments": {"order_id": uuid.uuid4().hex[:8]}},
    )
    return f"ok:{submission.action.status}"


def op_report(world: World, action_id: int, digest: str | None = None) -> str:
    """Report the execution as the agent: with ``digest`` (say, the hash from before an
    edit) or else the payload hash the agent reads now. While the action is still pending,
    try again every millisecond for a while, so the report lands right after a decision."""
    from approvals import actions
    from approvals.models import Action

    agent = _agent(world)
    deadline = time.monotonic() + REPORT_SPIN_SECONDS
    while True:
        action = Action.objects.get(pk=action_id)
        try:
            actions.report_execution(
                action_id=action_id,
                agent=agent,
                outcome="succeeded",
                reported_hash=digest or action.payload_hash,
                result={"by": "race"},
            )
            return "ok"
        except actions.ActionRefused as exc:
            if exc.code != "not_executable" or action.status != "pending":
                raise
            if time.monotonic() > deadline:
                return "still_pending"
        time.sleep(0.001)  # the decision it waits for is being made by another racer


OPERATIONS: dict[str, Callable[..., str]] = {
    "approve": op_approve,
    "reject": op_reject,
    "withdraw": op_withdraw,
    "expire": op_expire,
    "revoke_stale": op_revoke_stale,
    "engage": op_engage,
    "submit": op_submit,
    "report": op_report,
}


def run_operation(world: World, name: str, kwargs: dict) -> str:
    """One operation; a refusal by the rules is an outcome (its code), anything else an
    ``error:`` (a deadlock, an integrity error, a crash — each a finding)."""
    from approvals.actions import ActionRefused
    from incidents.actions import KillSwitchError

    try:
        return OPERATIONS[name](world, **kwargs)
    except ActionRefused as exc:
        return exc.code
    except KillSwitchError as exc:
        return f"switch:{exc.code}"
    except Exception as exc:
        return f"error:{exc.__class__.__name__}: {exc} | {traceback.format_exc(limit=3)[-600:]}"


# --- racers: threads here and threads in worker processes -----------------------------------


def _racer_loop(world: World, tasks: Any, results: Any, barrier: Any, slot: int) -> None:
    from django.db import connection

    results.put((slot, "ready", ""))
    try:
        while True:
            task = tasks.get()
            if task is None:
                return
            name, kwargs = task
            try:
                barrier.wait(timeout=BARRIER_TIMEOUT)
            except threading.BrokenBarrierError:
                results.put((slot, name, "error:barrier broken"))
                continue
            results.put((slot, name, run_operation(world, name, kwargs)))
    finally:
        connection.close()


def _process_main(env: dict, world: World, slots: list[int], tasks: list, results, barrier) -> None:
    """A worker process: Django on the same database, one racer thread per slot."""
    os.environ.update(env)
    import django

    import config  # noqa: F401  (Celery reads the settings as config is imported)

    django.setup()
    threads = [
        threading.Thread(target=_racer_loop, args=(world, tasks[i], results, barrier, slot))
        for i, slot in enumerate(slots)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class Racers:
    """``threads`` racer threads in this process plus ``processes`` worker processes of
    ``per_process`` threads each, all behind one barrier. Use as a context manager: the
    workers start with it (``env`` points them at this process's database) and stop at its
    end."""

    def __init__(
        self, world: World, env: dict, threads: int = 2, processes: int = 2, per_process: int = 2
    ) -> None:
        self.world = world
        self.size = threads + processes * per_process
        ctx = multiprocessing.get_context("spawn")  # never fork a process with threads
        self.barrier = ctx.Barrier(self.size)
        self.results = ctx.Queue()
        self.tasks = [ctx.Queue() for _ in range(self.size)]
        self.where = ["thread"] * threads + ["process"] * (processes * per_process)
        self.threads = [
            threading.Thread(
                target=_racer_loop,
                args=(world, self.tasks[i], self.results, self.barrier, i),
                daemon=True,
            )
            for i in range(threads)
        ]
        self.processes = []
        for p in range(processes):
            slots = list(range(threads + p * per_process, threads + (p + 1) * per_process))
            self.processes.append(
                ctx.Process(
                    target=_process_main,
                    args=(
                        env,
                        world,
                        slots,
                        [self.tasks[s] for s in slots],
                        self.results,
                        self.barrier,
                    ),
                    daemon=True,
                )
            )

    def __enter__(self) -> Racers:
        for p in self.processes:
            p.start()
        for t in self.threads:
            t.start()
        # Worker processes import and set up Django first; rounds start when all are ready.
        for _ in range(self.size):
            try:
                self.results.get(timeout=120)
            except queue.Empty:
                self.__exit__()
                raise RuntimeError("racer processes did not start within 120 s") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        for q in self.tasks:
            q.put(None)
        for t in self.threads:
            t.join(timeout=30)
        for p in self.processes:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join(timeout=10)

    def run(
        self, operations: list[tuple[str, dict]], rng: random.Random
    ) -> list[tuple[str, str, str]]:
        """Hand one operation to each racer (shuffled over threads and processes), release
        them together, and return [(operation, where it ran, outcome)] in operation order."""
        assert len(operations) == self.size, (len(operations), self.size)
        slots = rng.sample(range(self.size), self.size)
        for slot, operation in zip(slots, operations, strict=True):
            self.tasks[slot].put(operation)
        by_slot = {}
        for _ in operations:
            try:
                slot, _, outcome = self.results.get(timeout=BARRIER_TIMEOUT + 30)
            except queue.Empty:
                raise RuntimeError("a racer did not answer (worker process died?)") from None
            by_slot[slot] = outcome
        if self.barrier.broken:
            self.barrier.reset()
        return [
            (op[0], self.where[slot], by_slot[slot])
            for slot, op in zip(slots, operations, strict=True)
        ]


# --- rounds ------------------------------------------------------------------------------


def _pending(world: World, rng: random.Random, high: bool = False, refund: bool = False) -> Any:
    from approvals import actions

    if refund:
        body = {
            "tool": "create_refund_request",
            "arguments": {"order_id": uuid.uuid4().hex[:8], "amount": rng.randint(1, 900)},
        }
    else:
        body = {"tool": "send_email", "arguments": {"to": "c@example.com", "n": rng.random()}}
    if high:  # irreversible: high risk, two approvals
        body["blast_radius"] = {"reversible": False}
    return actions.submit_action(
        agent=_agent(world), idempotency_key=uuid.uuid4().hex, body=body
    ).action


def _allowed(world: World) -> Any:
    from approvals import actions

    return actions.submit_action(
        agent=_agent(world),
        idempotency_key=uuid.uuid4().hex,
        body={"tool": "get_order_status", "arguments": {"order_id": uuid.uuid4().hex[:8]}},
    ).action


def _edit_of(action: Any, rng: random.Random) -> dict:
    arguments = dict(action.arguments)
    if "amount" in arguments:
        # One edit in four breaks the tool's limit: refused, nothing changes.
        arguments["amount"] = 20000 if rng.random() < 0.25 else arguments["amount"] // 2 + 1
    else:
        arguments["edited"] = rng.randint(1, 10**9)
    return arguments


def round_quorum(world: World, rng: random.Random) -> tuple[list[int], list[tuple[str, dict]]]:
    """A two-approval action: double clicks, a critical edit-approve and an execution report
    all at once; in one round of three, a rejection instead of one of the double clicks."""
    action = _pending(world, rng, high=True)
    r1, r2, r3 = world.reviewers
    a = action.pk
    last = (
        ("reject", {"action_id": a, "reviewer": r2})
        if rng.random() < 1 / 3
        else ("approve", {"action_id": a, "reviewer": r2})
    )
    return [a], [
        ("approve", {"action_id": a, "reviewer": r1}),
        ("approve", {"action_id": a, "reviewer": r1}),
        ("approve", {"action_id": a, "reviewer": r2}),
        ("approve", {"action_id": a, "reviewer": r3, "edit": _edit_of(action, rng)}),
        last,
        ("report", {"action_id": a}),
    ]


def round_decide(world: World, rng: random.Random) -> tuple[list[int], list[tuple[str, dict]]]:
    """A one-approval action that expires during the round: approve, reject, edit-approve,
    withdraw, the expiry task and a kill switch."""
    from django.utils import timezone

    from approvals.models import Action

    action = _pending(world, rng, refund=rng.random() < 0.5)
    Action.objects.filter(pk=action.pk).update(
        expires_at=timezone.now() + timedelta(milliseconds=rng.randint(0, 25))
    )
    r1, r2, r3 = world.reviewers
    a = action.pk
    return [a], [
        ("approve", {"action_id": a, "reviewer": r1}),
        ("reject", {"action_id": a, "reviewer": r2}),
        ("approve", {"action_id": a, "reviewer": r3, "edit": _edit_of(action, rng)}),
        ("withdraw", {"action_id": a}),
        ("expire", {"action_id": a}),
        ("engage", {}),
    ]


def round_edit_vs_report(
    world: World, rng: random.Random
) -> tuple[list[int], list[tuple[str, dict]]]:
    """Edit-approve against a plain approval while the agent reports with the pre-edit hash
    and with the hash it reads: after an edit-approve, the pre-edit hash must be refused."""
    action = _pending(world, rng, refund=rng.random() < 0.5)
    r1, r2, _ = world.reviewers
    a, stale = action.pk, action.payload_hash
    return [a], [
        ("approve", {"action_id": a, "reviewer": r1}),
        ("approve", {"action_id": a, "reviewer": r2, "edit": _edit_of(action, rng)}),
        ("report", {"action_id": a, "digest": stale}),
        ("report", {"action_id": a}),
        ("report", {"action_id": a, "digest": stale}),
        ("withdraw", {"action_id": a}),
    ]


def round_raise_the_bar(
    world: World, rng: random.Random
) -> tuple[list[int], list[tuple[str, dict]]]:
    """A medium refund (one approval) that one reviewer edits to a high or critical amount
    while the others approve the payload they saw, or whatever is there: in any order, it
    becomes executable only with the approvals its final payload demands."""
    action = _pending(world, rng, refund=True)
    r1, r2, r3 = world.reviewers
    a, seen = action.pk, action.payload_hash
    # high, high, critical, or over the tool's limit (refused: argument_limit)
    raised = {**action.arguments, "amount": rng.choice([1500, 9000, 10000, 20000])}
    return [a], [
        ("approve", {"action_id": a, "reviewer": r1, "edit": raised}),
        ("approve", {"action_id": a, "reviewer": r2, "seen": seen}),
        ("approve", {"action_id": a, "reviewer": r3, "seen": seen}),
        ("approve", {"action_id": a, "reviewer": r2}),
        ("report", {"action_id": a}),
        ("report", {"action_id": a, "digest": seen}),
    ]


def round_allowed(world: World, rng: random.Random) -> tuple[list[int], list[tuple[str, dict]]]:
    """An allowed action (its grant window sometimes already over): two reports, a wrong
    hash, the revocation task, a kill switch and a new gate call."""
    from django.utils import timezone

    from approvals.models import Action

    action = _allowed(world)
    if rng.random() < 0.3:
        Action.objects.filter(pk=action.pk).update(
            grant_expires_at=timezone.now() - timedelta(seconds=1)
        )
    a = action.pk
    return [a], [
        ("report", {"action_id": a}),
        ("report", {"action_id": a}),
        ("report", {"action_id": a, "digest": "0" * 64}),
        ("revoke_stale", {"action_id": a}),
        ("engage", {}),
        ("submit", {}),
    ]


def round_kill(world: World, rng: random.Random) -> tuple[list[int], list[tuple[str, dict]]]:
    """A kill switch against a pending, an allowed and an approved action being decided,
    reported and withdrawn, and a gate call."""
    from approvals import actions

    pending = _pending(world, rng)
    allowed = _allowed(world)
    approved = _pending(world, rng)
    r1, r2, _ = world.reviewers
    actions.approve(action_id=approved.pk, user=_user(r1))
    return [pending.pk, allowed.pk, approved.pk], [
        ("engage", {}),
        ("approve", {"action_id": pending.pk, "reviewer": r2}),
        ("report", {"action_id": allowed.pk}),
        ("report", {"action_id": approved.pk}),
        ("withdraw", {"action_id": pending.pk}),
        ("submit", {}),
    ]


SCENARIOS: dict[str, Callable[[World, random.Random], tuple[list[int], list[tuple[str, dict]]]]] = {
    "quorum": round_quorum,
    "decide": round_decide,
    "edit_vs_report": round_edit_vs_report,
    "raise_the_bar": round_raise_the_bar,
    "allowed": round_allowed,
    "kill": round_kill,
}


@dataclass
class RaceRun:
    rounds: int = 0
    seconds: float = 0.0
    action_ids: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)  # (operation, outcome) -> n
    by_scenario: Counter = field(default_factory=Counter)
    where: Counter = field(default_factory=Counter)  # (where, outcome is ok) -> n

    def absorb(self, more: RaceRun) -> None:
        """Add the rounds of ``more`` (run after these) to this run."""
        self.rounds += more.rounds
        self.seconds += more.seconds
        self.action_ids += more.action_ids
        self.errors += more.errors
        self.outcomes.update(more.outcomes)
        self.by_scenario.update(more.by_scenario)
        self.where.update(more.where)


def _release_engaged(world: World) -> None:
    from audit.chain import Actor
    from incidents.actions import release_kill_switch
    from rollout.models import KillSwitch

    for pk in KillSwitch.objects.filter(
        released_at__isnull=True, scope="agent", target=world.agent_slug
    ).values_list("pk", flat=True):
        release_kill_switch(switch_id=pk, reason="next round", actor=Actor.system("races"))


def _approvals_stored(action_ids: list[int]) -> int:
    from approvals.models import Decision

    return Decision.objects.filter(action_id__in=action_ids, verdict="approve").count()


def run_rounds(
    world: World,
    racers: Racers,
    rounds: int,
    seed: int = 0,
    scenarios: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> RaceRun:
    """Run ``rounds`` rounds (scenarios in turn, shuffled by ``seed``); collect outcomes and
    the errors no rule explains. The invariants are checked afterwards over ``action_ids``."""
    rng = random.Random(seed)
    names = scenarios or list(SCENARIOS)
    run = RaceRun()
    started = time.monotonic()
    for i in range(rounds):
        scenario = names[i % len(names)] if i < len(names) else rng.choice(names)
        action_ids, operations = SCENARIOS[scenario](world, rng)
        stored_before = _approvals_stored(action_ids)
        results = racers.run(operations, rng)
        _release_engaged(world)
        run.rounds += 1
        run.action_ids += action_ids
        run.by_scenario[scenario] += 1
        for name, where, outcome in results:
            if outcome.startswith("error:"):
                run.errors.append(f"round {i} ({scenario}) {name} in a {where}: {outcome}")
            short = outcome.split(":")[0] if outcome.startswith("ok:") else outcome
            run.outcomes[(name, short if not outcome.startswith("error:") else "error")] += 1
            run.where[(where, outcome.startswith("ok"))] += 1
        # Each approval answered "ok" is one stored decision: a double click never counts
        # twice, and no approval is lost.
        answered_ok = sum(
            1 for name, _, outcome in results if name == "approve" and outcome == "ok"
        )
        stored = _approvals_stored(action_ids) - stored_before
        if answered_ok != stored:
            run.errors.append(
                f"round {i} ({scenario}): {answered_ok} approvals answered ok, {stored} stored"
            )
        if progress and (i + 1) % 100 == 0:
            progress(i + 1)
    run.seconds = time.monotonic() - started
    return run


# --- promise 2: one Idempotency-Key replayed by hundreds of clients at once ------------------


@dataclass
class Storm:
    """What ``replays`` simultaneous submissions of one key were answered."""

    key: str
    replays: int
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    winner: str = ""  # which body created the action: "same" or "changed"
    actions_in_db: int = 0
    problems: list[str] = field(default_factory=list)


def replay_storm(
    urls: list[str], token: str, agent_id: int, replays: int, changed_every: int = 10
) -> Storm:
    """``replays`` threads, each with its own keep-alive connection (spread over ``urls``),
    released together by a barrier, POST one Idempotency-Key; every ``changed_every``-th
    sends a changed body. Then: one action holds the key; exactly one answer is 201; every
    request with the body that created it got the same answer (the same JSON); every
    request with the other body got 409 ``idempotency_conflict``; nothing else."""
    import httpx

    from approvals.models import Action

    key = f"storm-{uuid.uuid4().hex}"
    body = {
        "tool": "send_email",
        "arguments": {"to": "storm@example.com", "subject": key},
        "summary": "one key, many clients",
    }
    changed = {**body, "summary": "the same key with another body"}
    released: list[float] = []
    barrier = threading.Barrier(replays, action=lambda: released.append(time.monotonic()))
    answers: list[tuple[str, int, Any] | None] = [None] * replays

    def fire(i: int) -> None:
        variant = "changed" if i % changed_every == changed_every - 1 else "same"
        # Connected after the barrier: a connection opened before it could sit idle past
        # the server's keep-alive timeout while hundreds of threads start.
        with httpx.Client(base_url=urls[i % len(urls)], timeout=120) as client:
            barrier.wait(timeout=120)
            try:
                response = client.post(
                    "/api/v1/actions",
                    json=changed if variant == "changed" else body,
                    headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
                )
            except httpx.HTTPError as exc:
                answers[i] = (variant, 0, repr(exc))
                return
            try:
                payload = response.json()
            except ValueError:
                payload = response.text[:300]
            answers[i] = (variant, response.status_code, payload)

    threads = [threading.Thread(target=fire, args=(i,), daemon=True) for i in range(replays)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    # From the barrier's release to the last answer.
    storm = Storm(
        key=key, replays=replays, seconds=time.monotonic() - released[0] if released else 0
    )
    storm.actions_in_db = Action.objects.filter(agent_id=agent_id, idempotency_key=key).count()
    if storm.actions_in_db != 1:
        storm.problems.append(f"{storm.actions_in_db} actions hold the key")
    done = [a for a in answers if a is not None]
    if len(done) != replays:
        storm.problems.append(f"{replays - len(done)} requests never answered")
    storm.statuses = Counter(status for _, status, _ in done)
    created = [a for a in done if a[1] == 201]
    if len(created) != 1:
        storm.problems.append(f"{len(created)} answers were 201 Created (must be exactly 1)")
        return storm
    storm.winner = created[0][0]
    expected = created[0][2]
    for variant, status, payload in done:
        if variant == storm.winner:
            if status not in (200, 201) or payload != expected:
                storm.problems.append(
                    f"a replay with the creating body got {status}, a different answer: "
                    f"{str(payload)[:200]}"
                )
        elif (
            status != 409
            or not isinstance(payload, dict)
            or payload.get("code") != "idempotency_conflict"
        ):
            storm.problems.append(
                f"a replay with the other body got {status} {str(payload)[:200]}, not 409"
            )
    return storm


# --- the script -------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--rounds", type=int, default=2000, help="race rounds (2000)")
    add("--threads", type=int, default=2, help="racer threads in this process (2)")
    add("--processes", type=int, default=2, help="worker processes (2)")
    add("--per-process", type=int, default=2, help="racer threads per worker process (2)")
    add("--seed", type=int, default=1, help="random seed of the rounds (1)")
    add(
        "--scenarios",
        default="",
        help=f"comma-separated rounds to run (all: {', '.join(SCENARIOS)})",
    )
    add("--keys", type=int, default=5, help="Idempotency-Keys stormed (5)")
    add("--replays", type=int, default=300, help="simultaneous requests per key (300)")
    add("--workers", type=int, default=2, help="uvicorn workers for the storm (2)")
    add("--fsync", choices=["on", "off"], default="on", help="PostgreSQL fsync (on)")
    args = parser.parse_args()
    args.http_rate = "100000/s"  # Services reads it: the agent throttle stays on the path
    return args


def main() -> int:
    from benchmarks.gate import Services, log

    args = parse_args()
    if args.threads + args.processes * args.per_process != 6:
        log("each round has 6 operations: --threads + --processes x --per-process must be 6")
        return 2
    services = Services(args)
    services.env["DJANGO_SETTINGS_MODULE"] = "config.settings.base"  # production settings
    try:
        log(f"Airlock races, {time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} cores")
        log(f"==> PostgreSQL (fsync={args.fsync}) and Redis in {services.tmp}; migrate")
        services.start_databases()
        services.manage("migrate", "--noinput", timeout=300)
        os.environ.update(services.env)
        import django

        import config  # noqa: F401  (see MANAGE in benchmarks/gate.py)

        django.setup()
        from benchmarks.invariants import check_actions, check_chain, summary

        world = make_world()
        log(
            f"==> {args.rounds} rounds on agent {world.agent_slug}: {args.threads} threads here + "
            f"{args.processes} processes x {args.per_process} threads, one barrier"
        )
        with Racers(world, services.env, args.threads, args.processes, args.per_process) as racers:
            run = run_rounds(
                world,
                racers,
                args.rounds,
                seed=args.seed,
                scenarios=[name for name in args.scenarios.split(",") if name] or None,
                progress=lambda n: log(f"    {n} rounds"),
            )
        seconds = max(run.seconds, 1e-9)
        log(
            f"    {run.rounds} rounds in {run.seconds:.1f} s ({run.rounds / seconds:.1f} "
            f"rounds/s, {6 * run.rounds / seconds:.0f} racing operations/s), "
            f"{len(run.action_ids)} actions"
        )
        log("==> invariants over every action made, and the audit chain")
        checked = time.monotonic()
        findings = check_actions(run.action_ids)
        findings.extend(check_chain())
        log(f"    checked in {time.monotonic() - checked:.1f} s: {summary(findings.counts)}")
        log("    outcomes per operation:")
        per_op: dict[str, list[str]] = defaultdict(list)
        for (name, outcome), n in sorted(run.outcomes.items()):
            per_op[name].append(f"{outcome} {n}")
        for name, parts in per_op.items():
            log(f"      {name:<13} " + ", ".join(parts))
        log(
            "    succeeded in a thread / in a process: "
            f"{run.where[('thread', True)]} / {run.where[('process', True)]} "
            f"(of {run.where[('thread', True)] + run.where[('thread', False)]} / "
            f"{run.where[('process', True)] + run.where[('process', False)]})"
        )

        log(f"==> replay storm: uvicorn, {args.workers} workers, production settings")
        services.start_server({})
        from audit.chain import Actor
        from rollout.actions import issue_agent_token
        from rollout.models import Agent

        token = issue_agent_token(
            agent=Agent.objects.get(pk=world.agent_id), actor=Actor.system("races"), name="storm"
        )
        url = f"http://127.0.0.1:{services.http_port}"
        storms = [
            replay_storm([url], token, world.agent_id, args.replays) for _ in range(args.keys)
        ]
        for storm in storms:
            log(
                f"    {storm.replays} at once, all answered {storm.seconds:.1f} s after release: "
                f"{dict(storm.statuses)}; "
                f"created by the {storm.winner or '?'} body; {storm.actions_in_db} action(s) "
                f"hold the key; problems: {storm.problems or 'none'}"
            )
        violations = run.errors + findings.violations
        violations += [f"storm {s.key}: {p}" for s in storms for p in s.problems]
        log(f"==> violations: {len(violations)}")
        for line in violations[:30]:
            log(f"    {line}")
        return 0 if not violations else 1
    finally:
        services.stop()


if __name__ == "__main__":
    sys.exit(main())
