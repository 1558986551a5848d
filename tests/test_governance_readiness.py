"""Promotion readiness on a fixture history with known numbers, and the backtest's replay
of recorded actions through a proposed policy with a known answer."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from approvals.models import Action
from audit.chain import Actor
from governance.backtest import backtest, backtest_change
from governance.models import ShadowLabel
from governance.readiness import compute_readiness
from incidents.actions import engage_kill_switch
from rollout.models import Tier
from rollout.snapshots import build_snapshot
from tests import factories

CRITERIA = {
    "window_days": 14,
    "min_sample": 10,
    "max_rejection_rate": 0.2,
    "max_failure_rate": 0.15,
    "min_shadow_agreement": 0.5,
}


def record(agent, status, reason_code, *, tool="update_crm_note", risk="low", days_ago=1, n=1):
    """Actions as the gate and people left them, without going through the write path."""
    made = []
    for _ in range(n):
        action = Action.objects.create(
            agent=agent,
            tool=tool,
            arguments={},
            original_arguments={},
            status=status,
            reason_code=reason_code,
            risk=risk,
            payload_hash="0" * 64,
            idempotency_key=uuid.uuid4().hex,
            request_hash="0" * 64,
        )
        when = timezone.now() - timedelta(days=days_ago)
        Action.objects.filter(pk=action.pk).update(
            created_at=when, decided_at=when + timedelta(minutes=5)
        )
        made.append(action)
    return made


@pytest.fixture
def history(reference_data, reviewer, reviewer2):
    """A supervised agent's last 14 days:
    - 6 approved by people (4 executed, 1 failed, 1 not reported yet), 2 rejected
    - 3 allowed by the gate and executed, 1 still pending
    - 2 shadow actions labelled: would approve twice, would reject once
    - and, 20 days ago (outside the window), 5 rejections."""
    Tier.objects.filter(name="supervised").update(exit_criteria=CRITERIA)
    agent = factories.make_agent("history-bot", tier="supervised")
    record(agent, "executed", "tier_requires_approval", n=4)
    record(agent, "failed", "tier_requires_approval")
    record(agent, "approved", "requires_approval")
    record(agent, "rejected", "requires_approval", n=2)
    record(agent, "executed", "allowed", n=3)
    record(agent, "pending", "tier_requires_approval")
    first, second = record(agent, "shadowed", "tier_shadow", n=2)
    ShadowLabel.objects.create(action=first, reviewer=reviewer, label="would_approve")
    ShadowLabel.objects.create(action=first, reviewer=reviewer2, label="would_approve")
    ShadowLabel.objects.create(action=second, reviewer=reviewer, label="would_reject")
    record(agent, "rejected", "requires_approval", days_ago=20, n=5)
    return agent


def criteria(readiness):
    return {c.key: (c.measured, c.met) for c in readiness.criteria}


def test_readiness__known_numbers__checklist_and_why_not_ready(history):
    readiness = compute_readiness(history)
    assert (readiness.tier, readiness.next_tier, readiness.window_days) == (
        "supervised",
        "autonomous",
        14,
    )
    assert criteria(readiness) == {
        "min_sample": ("13", True),  # 6 + 2 + 3 + 2 settled; the pending one is not
        "max_rejection_rate": ("25.0%", False),  # 2 of 8 decided by people
        "max_failure_rate": ("12.5%", True),  # 1 of 8 reported executions
        "min_shadow_agreement": ("66.7%", True),  # 2 of 3 labels
        "no_critical_violations": ("0", True),
    }
    assert not readiness.ready
    assert readiness.reasons == ["rejection rate is 25.0%, needs ≤ 20.0%"]
    assert readiness.summary == "not ready because rejection rate is 25.0%, needs ≤ 20.0%"


def test_readiness__all_criteria_met__ready(history):
    record(history, "executed", "tier_requires_approval", n=2)  # 2 of 10 rejected: 20%
    readiness = compute_readiness(history)
    assert criteria(readiness)["max_rejection_rate"] == ("20.0%", True)
    assert readiness.ready and readiness.summary == "ready for autonomous"


@pytest.mark.parametrize(
    "violation",
    [
        lambda agent: record(agent, "denied", "tool_forbidden", tool="approve_refund"),
        lambda agent: record(agent, "rejected", "tier_requires_approval", risk="critical"),
        lambda agent: engage_kill_switch(
            scope="agent", target=agent.slug, reason="loop", actor=Actor.system("tests")
        ),
    ],
    ids=["forbidden_attempt", "critical_rejected", "kill_switch"],
)
def test_readiness__critical_violation__not_ready(history, violation):
    record(history, "executed", "tier_requires_approval", n=3)
    violation(history)
    readiness = compute_readiness(history)
    assert criteria(readiness)["no_critical_violations"] == ("1", False)
    assert not readiness.ready


def test_readiness__no_labels_when_agreement_required__not_met(reference_data):
    Tier.objects.filter(name="shadow").update(exit_criteria={**CRITERIA, "min_sample": 1})
    agent = factories.make_agent("fresh-bot", tier="shadow")
    record(agent, "shadowed", "tier_shadow", n=3)
    readiness = compute_readiness(agent)
    assert criteria(readiness)["min_shadow_agreement"] == ("n/a", False)
    assert criteria(readiness)["max_rejection_rate"] == ("n/a", True)  # nothing to reject yet


def test_readiness__top_of_the_ladder(reference_data):
    agent = factories.make_agent("top-bot", tier="autonomous")
    readiness = compute_readiness(agent)
    assert readiness.next_tier is None and not readiness.ready
    assert readiness.reasons == ["autonomous is the top of the ladder"]


# --- backtest ------------------------------------------------------------------------------

HIGH_AMOUNT = {"blast_radius": {"amount": {"value": 5000, "currency": "EUR"}}}


@pytest.fixture
def gate_history(support_agent):
    """Ten real gate calls of a supervised agent, plus one three weeks old."""
    calls = [
        *(("get_order_status", {"order_id": str(n)}, {}) for n in range(2)),  # allowed
        ("create_ticket_draft", {"title": "t"}, {}),  # allowed (draft)
        *(("update_crm_note", {"note": str(n)}, {}) for n in range(3)),  # pending (low write)
        ("update_crm_note", {"note": "big"}, HIGH_AMOUNT),  # pending (high write)
        *(("send_email", {"to": f"{n}@x"}, {}) for n in range(2)),  # pending (requires approval)
        ("approve_refund", {"order": "1"}, {}),  # denied (forbidden)
    ]
    for tool, arguments, extra in calls:
        factories.submit(support_agent, tool, arguments, **extra)
    old = factories.submit(support_agent, "update_crm_note", {"note": "old"})
    Action.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=21))
    return support_agent


def test_backtest__autonomous_tier__known_answer(gate_history):
    # When replaying the last 14 days as if the agent had been autonomous
    autonomous = Tier.objects.get(name="autonomous").as_policy()
    result = backtest_change(gate_history, {"tier": autonomous}, days=14)
    # Then 6 would have run without a human: 2 reads, 1 draft, 3 low-risk writes
    assert result.replayed == 10
    assert result.would_run_without_human == 6
    assert result.newly_without_human == 3
    assert result.by_outcome == {"allowed": 6, "pending": 3, "denied": 1}
    assert (
        sorted(row.tool for row in result.rows if row.newly_without_human)
        == ["update_crm_note"] * 3
    )
    assert all(row.recorded_outcome == "pending" for row in result.rows if row.newly_without_human)


def test_backtest__shadow_tier_and_a_rule_change__known_answers(gate_history):
    shadow = Tier.objects.get(name="shadow").as_policy()
    result = backtest_change(gate_history, {"tier": shadow}, days=14)
    assert (result.would_run_without_human, result.newly_without_human) == (2, 0)
    assert result.by_outcome == {"allowed": 2, "shadowed": 7, "denied": 1}
    # Allowing send_email changes nothing while the tier holds every write for a human
    snapshot = build_snapshot(gate_history)
    snapshot["tools"]["send_email"]["rule"] = "allowed"
    assert backtest(gate_history, snapshot, days=14).would_run_without_human == 3
    # The older action is replayed only in a longer window
    assert backtest(gate_history, snapshot, days=30).replayed == 11
