"""The promises every run of Airlock must have kept, checked against the database after the
fact. Shared by ``benchmarks/soak.py`` and ``benchmarks/races.py`` (and through them by
``tests/test_soak.py`` and ``tests/test_races.py``); needs a configured Django.

Each check returns violations as sentences naming the action, switch or row; an empty list
means the promise held:

- ``check_actions``: every action's audit events replay, through ``approvals.states``, to
  the status it has now — one ``action.submitted`` first, then one event per transition and
  none without one, so no action ever had two outcomes; nobody's approval counted twice;
  an executed action ran exactly the payload that was approved (after the last edit);
  every webhook owed by a change has its outbox row; while a kill switch was engaged,
  nothing in its scope was allowed, approved or executed, and its sweep stopped everything
  in scope that was still live.
- ``check_webhooks_settled``: every owed webhook was delivered or recorded as failed (with
  its ``webhook.failed`` event), and — given what a receiver saw — each delivered one
  arrived and nothing arrived that was not owed.
- ``check_idempotency``: each Idempotency-Key a client used maps to exactly one action, the
  one the client was answered with.
- ``check_chain``: the audit chain verifies (``audit.verification.verify_chain``) and no chain
  partition has two events at one sequence number or a gap (a fork).
"""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Max, Min

from approvals.models import Action, Decision, Outbox, Report
from approvals.states import (
    EXECUTABLE,
    FINAL,
    INITIAL_STATUSES,
    TRANSITIONS,
    Status,
    check_transition,
)
from approvals.states import IllegalTransition as _Illegal
from audit import verbs
from audit.canonical import payload_hash
from audit.models import AuditEvent
from rollout import permissions as rollout_permissions
from rollout.models import KillSwitch
from rollout.policy import assess_edit

# The status each lifecycle verb moves an action to (``approvals.actions`` writes exactly
# one of these events per transition, with the new status in ``data["status"]``).
STATUS_OF_VERB = {
    verbs.ACTION_APPROVED: Status.APPROVED,
    verbs.ACTION_REJECTED: Status.REJECTED,
    verbs.ACTION_WITHDRAWN: Status.CANCELLED,
    verbs.ACTION_EXPIRED: Status.EXPIRED,
    verbs.ACTION_CANCELLED: Status.CANCELLED,
    verbs.ACTION_REVOKED: Status.REVOKED,
    verbs.ACTION_EXECUTED: Status.EXECUTED,
    verbs.ACTION_FAILED: Status.FAILED,
    verbs.ACTION_ROLLBACK_REQUESTED: Status.ROLLBACK_REQUESTED,
    verbs.ACTION_ROLLED_BACK: Status.ROLLED_BACK,
    verbs.ACTION_ROLLBACK_FAILED: Status.ROLLBACK_FAILED,
}
# Events that record no transition but carry the status the action had then.
STATUS_KEEPING_VERBS = frozenset(
    {verbs.ACTION_APPROVAL_RECORDED, verbs.ACTION_EDITED, verbs.ACTION_ESCALATED}
)
# The webhook event each transition owes an agent that gave a callback_url (a withdrawal
# is the agent's own doing; executions are its own reports).
WEBHOOK_OF_VERB = {
    verbs.ACTION_APPROVED: "action.approved",
    verbs.ACTION_REJECTED: "action.rejected",
    verbs.ACTION_EXPIRED: "action.expired",
    verbs.ACTION_CANCELLED: "action.cancelled",
    verbs.ACTION_REVOKED: "action.revoked",
    verbs.ACTION_ROLLBACK_REQUESTED: "action.rollback_requested",
}
# What may not happen to an action in a kill switch's scope while the switch is engaged.
BLOCKED_WHILE_ENGAGED = frozenset(
    {
        verbs.ACTION_APPROVAL_RECORDED,
        verbs.ACTION_APPROVED,
        verbs.ACTION_EDITED,
        verbs.ACTION_EXECUTED,
        verbs.ACTION_FAILED,
        verbs.ACTION_REJECTED,
        verbs.ACTION_WITHDRAWN,
        verbs.ACTION_EXPIRED,
    }
)
LIVE = frozenset({Status.PENDING, *EXECUTABLE})


@dataclass
class Findings:
    """Violations found, and what was looked at (so a run that checked nothing shows it)."""

    violations: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def extend(self, other: Findings) -> None:
        self.violations += other.violations
        self.counts.update(other.counts)


@contextlib.contextmanager
def one_snapshot() -> Iterator[None]:
    """Read everything from one snapshot of the database, so a change committed while the
    checks read cannot look like a broken promise."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


@dataclass
class _Event:
    id: int
    verb: str
    data: dict


def _events_by_action(action_ids: Collection[int] | None) -> dict[int, list[_Event]]:
    rows = AuditEvent.objects.filter(target_type="action")
    if action_ids is not None:
        rows = rows.filter(target_id__in=[str(pk) for pk in action_ids])
    grouped: dict[int, list[_Event]] = defaultdict(list)
    for pk, verb, target_id, data in rows.order_by("id").values_list(
        "id", "verb", "target_id", "data"
    ):
        grouped[int(target_id)].append(_Event(pk, verb, data if isinstance(data, dict) else {}))
    return grouped


def _replay(action: Action, events: list[_Event], problems: list[str]) -> list[tuple[int, str]]:
    """The action's statuses as its events tell them: [(event id, status after it)]."""
    name = f"action {action.pk} ({action.agent.slug}:{action.tool})"
    submitted = [e for e in events if e.verb == verbs.ACTION_SUBMITTED]
    if len(submitted) != 1 or events[0].verb != verbs.ACTION_SUBMITTED:
        problems.append(f"{name}: {len(submitted)} action.submitted events (must be 1, first)")
        if not submitted:
            return []
    first = submitted[0]
    status = first.data.get("outcome")
    if status not in INITIAL_STATUSES:
        problems.append(f"{name}: submitted with outcome {status!r}, not an initial status")
    path = [(first.id, status)]
    for event in events:
        if event.verb in STATUS_OF_VERB:
            new = STATUS_OF_VERB[event.verb]
            try:
                check_transition(status, new)
            except _Illegal:
                problems.append(
                    f"{name}: event {event.id} {event.verb} moves it {status} → {new}, "
                    "which the transition table forbids (two outcomes?)"
                )
            if event.data.get("status") != new:
                problems.append(
                    f"{name}: event {event.id} {event.verb} records status "
                    f"{event.data.get('status')!r}, not {new}"
                )
            status = new
            path.append((event.id, status))
        elif event.verb in STATUS_KEEPING_VERBS and event.data.get("status") != status:
            problems.append(
                f"{name}: event {event.id} {event.verb} records status "
                f"{event.data.get('status')!r} while the events say {status}"
            )
    if status != action.status:
        problems.append(
            f"{name}: its events end in {status} but it is {action.status} "
            "(a transition without its audit event)"
        )
    return path


def _check_decisions(
    action: Action,
    events: list[_Event],
    path: list[tuple[int, str]],
    decisions: list[Decision],
    problems: list[str],
) -> None:
    name = f"action {action.pk}"
    approvals = [d for d in decisions if d.verdict == Decision.Verdict.APPROVE]
    rejections = [d for d in decisions if d.verdict == Decision.Verdict.REJECT]
    recorded = [e for e in events if e.verb == verbs.ACTION_APPROVAL_RECORDED]
    if len(recorded) != len(approvals):
        problems.append(
            f"{name}: {len(approvals)} approvals stored but {len(recorded)} "
            "action.approval_recorded events"
        )
    # A voided approval is history: after an edit back to a payload, its reviewer may
    # approve it again. Live ones count once per reviewer and payload.
    per_payload = Counter((d.reviewer_id, d.payload_hash) for d in approvals if not d.voided)
    for (reviewer_id, digest), n in per_payload.items():
        if n > 1:
            problems.append(f"{name}: reviewer {reviewer_id} approved payload {digest[:12]} {n}x")
    statuses = [status for _, status in path]
    rejected = Status.REJECTED in statuses
    if len(rejections) != (1 if rejected else 0):
        problems.append(f"{name}: {len(rejections)} rejections stored, rejected={rejected}")
    approved_events = [e for e in events if e.verb == verbs.ACTION_APPROVED]
    if not approved_events:
        return
    approved = approved_events[-1]
    # The quorum that decided it: approvals bound to the payload it was approved with.
    live = [d for d in approvals if not d.voided and d.payload_hash == action.payload_hash]
    names = approved.data.get("approvers") or []
    if len(names) != len(set(names)):
        problems.append(f"{name}: an approver counted twice toward its quorum: {names}")
    reviewers = {d.reviewer.get_username() for d in live}
    if set(names) != reviewers:
        problems.append(
            f"{name}: approved by {sorted(names)} but its live approvals are {sorted(reviewers)}"
        )
    if len(reviewers) < action.required_approvals:
        problems.append(
            f"{name}: approved with {len(reviewers)} distinct approvers, "
            f"{action.required_approvals} required"
        )
    if action.needs_critical_approver and not any(
        rollout_permissions.can_approve_critical(d.reviewer, action.agent) for d in live
    ):
        problems.append(f"{name}: a critical action approved without a critical approver")
    # Independently of what the action row says it needed: what the matrix demands for the
    # payload that will run, under the policy version it was last judged by.
    demanded = assess_edit(
        action.policy_version.snapshot, action.tool, action.arguments, action.blast_radius
    )
    if demanded.outcome == "pending" and len(reviewers) < demanded.required_approvals:
        problems.append(
            f"{name}: its payload needs {demanded.required_approvals} approvers "
            f"(risk {demanded.risk}), approved by {len(reviewers)}"
        )
    if (
        demanded.outcome == "pending"
        and demanded.needs_critical_approver
        and not any(
            rollout_permissions.can_approve_critical(d.reviewer, action.agent) for d in live
        )
    ):
        problems.append(f"{name}: its payload is critical; approved without a critical approver")
    edits = [e for e in events if e.verb == verbs.ACTION_EDITED]
    if edits and edits[-1].id > approved.id:
        problems.append(f"{name}: edited (event {edits[-1].id}) after it was approved")


def _check_execution(
    action: Action,
    events: list[_Event],
    path: list[tuple[int, str]],
    reports: list[Report],
    problems: list[str],
) -> None:
    name = f"action {action.pk}"
    executions = [r for r in reports if r.kind == Report.Kind.EXECUTION]
    ran = [e for e in events if e.verb in (verbs.ACTION_EXECUTED, verbs.ACTION_FAILED)]
    if len(executions) != len(ran) or len(executions) > 1:
        problems.append(
            f"{name}: {len(executions)} execution reports, {len(ran)} executed/failed events"
        )
    if payload_hash(action.arguments) != action.payload_hash:
        problems.append(f"{name}: payload_hash does not match its arguments")
    for report in executions:
        if report.payload_hash != action.payload_hash:
            problems.append(
                f"{name}: executed payload {report.payload_hash[:12]}, "
                f"approved payload {action.payload_hash[:12]}"
            )
        before = [status for event_id, status in path if event_id < ran[0].id] if ran else []
        if not before or before[-1] not in EXECUTABLE:
            problems.append(
                f"{name}: executed from {before[-1] if before else 'nowhere'}, "
                "not from approved or allowed"
            )
        edits = [e for e in events if e.verb == verbs.ACTION_EDITED]
        if edits and report.payload_hash != edits[-1].data.get("new_payload_hash"):
            problems.append(f"{name}: executed a payload other than its last edit's")
        if not edits and report.payload_hash != payload_hash(action.original_arguments):
            problems.append(f"{name}: executed a payload the agent never sent, without an edit")


def _check_owed_webhooks(
    action: Action, events: list[_Event], rows: list[Outbox], problems: list[str]
) -> None:
    owed = Counter(WEBHOOK_OF_VERB[e.verb] for e in events if e.verb in WEBHOOK_OF_VERB)
    if not action.callback_url:
        owed = Counter()
    have = Counter(row.payload.get("event") for row in rows)
    if owed != have:
        problems.append(
            f"action {action.pk}: webhooks owed {dict(owed)} but outbox rows {dict(have)}"
        )


def _in_scope(switch: KillSwitch, action: Action) -> bool:
    if switch.scope == KillSwitch.Scope.GLOBAL:
        return True
    if switch.scope == KillSwitch.Scope.AGENT:
        return action.agent.slug == switch.target
    return action.tool == switch.target


def _check_kill_switches(
    actions: list[Action],
    events: dict[int, list[_Event]],
    paths: dict[int, list[tuple[int, str]]],
    problems: list[str],
    counts: Counter,
) -> None:
    switch_events: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for pk, verb, target_id in AuditEvent.objects.filter(
        target_type="kill_switch",
        verb__in=[verbs.KILL_SWITCH_ENGAGED, verbs.KILL_SWITCH_RELEASED],
    ).values_list("id", "verb", "target_id"):
        switch_events[int(target_id)][verb].append(pk)
    sweeps: dict[int, dict[int, int]] = defaultdict(dict)  # switch -> action -> event id
    for action_id, items in events.items():
        for event in items:
            if "kill_switch" in event.data and event.verb in (
                verbs.ACTION_CANCELLED,
                verbs.ACTION_REVOKED,
            ):
                sweeps[event.data["kill_switch"]][action_id] = event.id
    for switch in KillSwitch.objects.filter(is_drill=False).order_by("id"):
        counts["kill switches engaged"] += 1
        engaged = switch_events[switch.pk][verbs.KILL_SWITCH_ENGAGED]
        released = switch_events[switch.pk][verbs.KILL_SWITCH_RELEASED]
        if len(engaged) != 1 or len(released) != (1 if switch.released_at else 0):
            problems.append(
                f"kill switch {switch.pk}: {len(engaged)} engaged and {len(released)} released "
                f"events (released_at {switch.released_at})"
            )
            continue
        swept = sweeps.get(switch.pk, {})
        # The sweep's events come before the engaged event (same transaction); the window
        # opens with the first of them.
        start = min([engaged[0], *swept.values()])
        end = released[0] if released else float("inf")
        for action in actions:
            if not _in_scope(switch, action):
                continue
            before = [status for event_id, status in paths.get(action.pk, []) if event_id < start]
            if before and before[-1] in LIVE and action.pk not in swept:
                problems.append(
                    f"kill switch {switch.pk} ({switch.scope} {switch.target}): action "
                    f"{action.pk} was {before[-1]} when it engaged and was not stopped"
                )
            for event in events.get(action.pk, []):
                if not start < event.id < end:
                    continue
                if event.verb == verbs.ACTION_SUBMITTED and (
                    event.data.get("outcome") != Status.DENIED
                    or event.data.get("reason_code") != "kill_switch"
                ):
                    problems.append(
                        f"kill switch {switch.pk}: action {action.pk} was submitted while it "
                        f"was engaged and answered {event.data.get('outcome')}"
                    )
                elif event.verb in BLOCKED_WHILE_ENGAGED:
                    problems.append(
                        f"kill switch {switch.pk}: {event.verb} on action {action.pk} "
                        f"(event {event.id}) while it was engaged"
                    )
        counts["actions stopped by kill switches"] += len(swept)


def check_actions(action_ids: Collection[int] | None = None) -> Findings:
    """Replay every action's events (or those of ``action_ids``) against its state; see the
    module docstring. Reads only, from one snapshot."""
    with one_snapshot():
        return _check_actions(action_ids)


def _check_actions(action_ids: Collection[int] | None) -> Findings:
    findings = Findings()
    queryset = Action.objects.select_related("agent").order_by("id")
    if action_ids is not None:
        queryset = queryset.filter(pk__in=list(action_ids))
    actions = list(queryset)
    ids = [a.pk for a in actions]
    events = _events_by_action(None if action_ids is None else ids)
    decisions: dict[int, list[Decision]] = defaultdict(list)
    for d in Decision.objects.filter(action_id__in=ids).select_related("reviewer"):
        decisions[d.action_id].append(d)
    reports: dict[int, list[Report]] = defaultdict(list)
    for r in Report.objects.filter(action_id__in=ids):
        reports[r.action_id].append(r)
    outbox: dict[int, list[Outbox]] = defaultdict(list)
    for row in Outbox.objects.filter(kind=Outbox.Kind.WEBHOOK, action_id__in=ids):
        outbox[row.action_id].append(row)

    paths: dict[int, list[tuple[int, str]]] = {}
    for action in actions:
        items = events.get(action.pk, [])
        findings.counts[f"status {action.status}"] += 1
        findings.counts["actions"] += 1
        if action.status not in TRANSITIONS:
            findings.violations.append(f"action {action.pk}: unknown status {action.status!r}")
        # Final, or waiting for people (pending) or for the agent's report (allowed,
        # approved, rollback requested): the only states an action may rest in.
        findings.counts["final" if action.status in FINAL else "open (may still change)"] += 1
        findings.counts["transitions"] += sum(1 for e in items if e.verb in STATUS_OF_VERB)
        if not items:
            findings.violations.append(f"action {action.pk}: no audit events at all")
            continue
        path = _replay(action, items, findings.violations)
        paths[action.pk] = path
        _check_decisions(action, items, path, decisions[action.pk], findings.violations)
        _check_execution(action, items, path, reports[action.pk], findings.violations)
        _check_owed_webhooks(action, items, outbox[action.pk], findings.violations)
        findings.counts["edited"] += any(e.verb == verbs.ACTION_EDITED for e in items)
    findings.counts["approvals"] = sum(
        d.verdict == Decision.Verdict.APPROVE for ds in decisions.values() for d in ds
    )
    findings.counts["execution reports"] = sum(len(rs) for rs in reports.values())
    _check_kill_switches(actions, events, paths, findings.violations, findings.counts)
    return findings


def check_webhooks_settled(received_delivery_ids: Iterable[int] | None = None) -> Findings:
    """Every webhook row delivered or failed (never both, never neither); each failed one has
    its ``webhook.failed`` event; with ``received_delivery_ids`` (the ``delivery_id`` of
    every webhook a receiver accepted), delivered rows and receipts are the same set."""
    with one_snapshot():
        return _check_webhooks_settled(received_delivery_ids)


def _check_webhooks_settled(received_delivery_ids: Iterable[int] | None) -> Findings:
    findings = Findings()
    failed_events = Counter(
        int(data.get("outbox_id") or 0)
        for data in AuditEvent.objects.filter(verb=verbs.WEBHOOK_FAILED).values_list(
            "data", flat=True
        )
    )
    delivered: set[int] = set()
    for pk, delivered_at, failed_at, attempts in Outbox.objects.filter(
        kind=Outbox.Kind.WEBHOOK
    ).values_list("id", "delivered_at", "failed_at", "attempts"):
        findings.counts["webhooks owed"] += 1
        if delivered_at and failed_at:
            findings.violations.append(f"webhook {pk}: both delivered and failed")
        elif delivered_at:
            delivered.add(pk)
            findings.counts["webhooks delivered"] += 1
            findings.counts["webhooks delivered after a retry"] += attempts > 1
        elif failed_at:
            findings.counts["webhooks failed"] += 1
            if failed_events[pk] != 1:
                findings.violations.append(
                    f"webhook {pk}: failed with {failed_events[pk]} webhook.failed events"
                )
        else:
            findings.violations.append(f"webhook {pk}: neither delivered nor recorded as failed")
    if received_delivery_ids is not None:
        received = set(received_delivery_ids)
        if missing := delivered - received:
            findings.violations.append(
                f"{len(missing)} webhooks marked delivered never reached the receiver: "
                f"{sorted(missing)[:10]}"
            )
        if unknown := received - set(failed_events) - delivered:
            # A receipt whose row was then marked failed is possible (the 2xx was lost);
            # a receipt of a row that is neither is not.
            findings.violations.append(
                f"{len(unknown)} webhooks received that are not marked delivered: "
                f"{sorted(unknown)[:10]}"
            )
    return findings


def check_idempotency(ledger: Iterable[tuple[str, str, int]]) -> Findings:
    """``ledger``: (agent slug, Idempotency-Key, action id the client was answered with).
    Each key must have exactly one action, and it must be that one."""
    findings = Findings()
    wanted = {(slug, key): action_id for slug, key, action_id in ledger}
    keys = {key for _, key in wanted}
    found: dict[tuple[str, str], list[int]] = defaultdict(list)
    for pk, slug, key in Action.objects.filter(idempotency_key__in=keys).values_list(
        "id", "agent__slug", "idempotency_key"
    ):
        found[(slug, key)].append(pk)
    for (slug, key), action_id in wanted.items():
        findings.counts["idempotency keys"] += 1
        have = found.get((slug, key), [])
        if have != [action_id]:
            findings.violations.append(
                f"{slug} key {key}: the client was answered with action {action_id}, "
                f"the database has {have}"
            )
    return findings


def check_chain() -> Findings:
    """The audit chain verifies, and no partition forks (two events at one sequence number)
    or skips a number."""
    from audit.verification import verify_chain

    findings = Findings()
    result = verify_chain(workers=1)
    findings.counts["audit events"] = result.events
    if not result.ok:
        findings.violations.append(
            f"audit chain broken at event {result.first_broken_id}: {result.problem}"
        )
    per_partition = AuditEvent.objects.values("partition").annotate(
        n=Count("id"),
        distinct=Count("chain_seq", distinct=True),
        low=Min("chain_seq"),
        high=Max("chain_seq"),
    )
    for row in per_partition:
        if not (row["n"] == row["distinct"] == row["high"] - row["low"] + 1 and row["low"] == 1):
            findings.violations.append(
                f"audit partition {row['partition']}: {row['n']} events over sequence numbers "
                f"{row['low']}..{row['high']} ({row['distinct']} distinct): a fork or a gap"
            )
    return findings


def summary(counts: Counter) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))


def as_json(findings: Findings) -> dict[str, Any]:
    return {"violations": findings.violations, "counts": dict(findings.counts)}
