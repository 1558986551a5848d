"""Issue 11, promises 1 and 2, on PostgreSQL with real threads and processes.

1. Exactly one outcome per action: approvals, rejections, edits, expiry, withdrawals, kill
   switches, gate calls and execution reports released at the same instant on the same
   actions, from threads of this process and of two worker processes
   (``benchmarks/races.py``; thousands of rounds by hand, a few hundred here), never give an
   action two final states, never count an approver twice, never accept the execution of a
   payload that was not approved (the pre-edit hash after an edit-approve is refused), and
   never fork the audit chain (it verifies; one event per transition) — checked by
   ``benchmarks/invariants.py``, the checker the scripts use.
2. Idempotent submission: hundreds of simultaneous submissions of one Idempotency-Key to
   two server processes create one action and get one identical answer; the changed body
   gets 409.
"""

import os

import pytest

from approvals.models import Action
from benchmarks import races
from benchmarks.invariants import check_actions, check_chain
from tests import factories
from tests import servers as server_processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.multiprocess]

ROUNDS = 200
# Which interleavings the rounds meet depends on the machine's timing (a second test worker
# busy beside them shifts it): the test races on, 50 rounds at a time, until each outcome
# below has been reached; one that no round reaches in this many is a finding.
MAX_ROUNDS = 600
EVERY_OUTCOME = (
    ("approve", "ok"),
    ("approve", "already_approved"),
    ("approve", "not_pending"),
    ("approve", "argument_limit"),
    ("approve", "payload_changed"),
    ("report", "ok"),
    ("report", "payload_mismatch"),
    ("report", "already_reported"),
    ("report", "revoked"),
    ("withdraw", "ok"),
    ("reject", "ok"),
    ("engage", "ok"),
)
REPLAYS = 200


def test_races__threads_and_processes_on_postgresql__one_outcome_each_nothing_double_counted(
    reference_data,
):
    # Given an agent and three reviewers, and six racers: two threads here and two worker
    # processes with two threads each, on the test database
    world = races.make_world()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": server_processes.test_database_url(),
    }
    # When every round releases six operations on the same action(s) at once
    with races.Racers(world, env, threads=2, processes=2, per_process=2) as racers:
        run = races.run_rounds(world, racers, ROUNDS, seed=11)
        seed = 11
        while run.rounds < MAX_ROUNDS and not all(run.outcomes[o] for o in EVERY_OUTCOME):
            seed += 1
            run.absorb(races.run_rounds(world, racers, 50, seed=seed))
    # Then nothing failed outside the rules (no deadlock, no integrity error), each approval
    # answered "ok" is one stored decision...
    assert run.errors == []
    # ...and every action's events replay to its one outcome, with no approver counted
    # twice, nothing executed but the approved payload, nothing acted on under a kill
    # switch, and an audit chain that verifies without a fork
    findings = check_actions(run.action_ids)
    findings.extend(check_chain())
    assert findings.violations == []
    # The races were real: every outcome was reached, by threads and by processes
    assert {"executed", "rejected", "cancelled", "revoked", "expired"} <= {
        name.removeprefix("status ") for name in findings.counts if name.startswith("status ")
    }
    for operation, outcome in EVERY_OUTCOME:
        assert run.outcomes[(operation, outcome)] > 0, (operation, outcome, run.outcomes)
    assert run.where[("thread", True)] > 0 and run.where[("process", True)] > 0
    assert findings.counts["actions stopped by kill switches"] > 0
    assert findings.counts["edited"] > 0


def test_idempotency__hundreds_of_simultaneous_replays_on_two_server_processes__one_action_one_answer(
    support_agent,
):
    # Given two server processes with the production settings (their connection pools, not
    # a connection per request) on the test database
    token = factories.make_token(support_agent)
    servers = server_processes.start_servers(2, {"DJANGO_SETTINGS_MODULE": "config.settings.base"})
    try:
        # When 200 clients send one Idempotency-Key at the same instant, one in ten with a
        # changed body
        storm = races.replay_storm([s.url for s in servers], token, support_agent.pk, REPLAYS)
        print("STORM", storm.seconds, storm.statuses)
    finally:
        for server in servers:
            server.stop()
    # Then one action holds the key, exactly one answer was 201, every request with the
    # creating body got that same answer and every other body 409 idempotency_conflict
    assert storm.problems == []
    assert Action.objects.filter(idempotency_key=storm.key).count() == 1
    assert storm.statuses[201] == 1
    assert storm.statuses[409] in (REPLAYS // 10, REPLAYS - REPLAYS // 10)
    assert sum(storm.statuses.values()) == REPLAYS


# --- the checker finds what it is there to find --------------------------------------------


def test_checker__a_second_outcome_a_silent_change_a_stale_execution_and_an_unswept_action(
    support_agent, reviewer
):
    from django.db import transaction

    from approvals import actions
    from approvals.models import Report
    from audit import verbs
    from audit.chain import Actor, append_event
    from rollout.models import KillSwitch

    # Given actions the write path left in order: the checker finds nothing
    approved = factories.submit(support_agent, "send_email")
    actions.approve(action_id=approved.pk, user=reviewer)
    silent = factories.submit(support_agent, "send_email")
    executed = factories.submit(support_agent, "get_order_status", {"order_id": "1"})
    unswept = factories.submit(support_agent, "send_email")
    assert check_actions().violations == []
    # When a second outcome is recorded, a status changes without its event, an execution
    # of another payload is stored, and a switch engages without stopping a pending action
    with transaction.atomic():
        append_event(
            verb=verbs.ACTION_REJECTED,
            actor=Actor.user(reviewer),
            target_type="action",
            target_id=approved.pk,
            agent_slug=support_agent.slug,
            data={"status": "rejected"},
        )
    Action.objects.filter(pk=silent.pk).update(status="cancelled")
    Report.objects.create(action=executed, kind="execution", outcome="ok", payload_hash="0" * 64)
    with transaction.atomic():
        switch = KillSwitch.objects.create(
            scope="agent", target=support_agent.slug, reason="t", engaged_by="test"
        )
        append_event(
            verb=verbs.KILL_SWITCH_ENGAGED,
            actor=Actor.system("test"),
            target_type="kill_switch",
            target_id=switch.pk,
            agent_slug=support_agent.slug,
        )
    # Then each is named
    found = "\n".join(check_actions().violations)
    assert f"action {approved.pk}" in found and "approved → rejected" in found
    assert f"action {silent.pk}" in found and "a transition without its audit event" in found
    assert f"action {executed.pk}: 1 execution reports, 0 executed/failed events" in found
    assert f"action {unswept.pk} was pending when it engaged and was not stopped" in found
