"""Bulk decisions: many low-risk actions of one tool with one confirmation, each through
the one write path (quorum, separation of duties, payload binding, audit) — never a high or
critical one, refused by the server whatever the page offered."""

from __future__ import annotations

import pytest

from approvals import actions
from approvals.actions import ActionRefused
from audit import verbs
from audit.models import AuditEvent
from tests import factories

HIGH = {"blast_radius": {"amount": {"value": 5000, "currency": "EUR"}}}


def low(agent, **body):
    return factories.submit(agent, "update_crm_note", {"note": "called back"}, **body)


def bulk_form(items, verdict="approve", comment=""):
    data = {"verdict": verdict, "comment": comment, "action": [str(a.pk) for a in items]}
    data.update({f"hash-{a.pk}": a.payload_hash for a in items})
    return data


def test_bulk__low_risk_one_tool__each_approved_through_the_write_path(reviewer, support_agent):
    items = [low(support_agent) for _ in range(3)]
    assert {a.risk for a in items} == {"low"}
    result = actions.bulk_decide(
        action_ids=[a.pk for a in items],
        user=reviewer,
        verdict="approve",
        seen_hashes={a.pk: a.payload_hash for a in items},
    )
    assert [a.pk for a in result.done] == [a.pk for a in items] and result.refused == []
    for action in items:
        action.refresh_from_db()
        assert action.status == "approved"
        assert [d.channel for d in action.decisions.all()] == ["bulk"]
    recorded = AuditEvent.objects.filter(verb=verbs.ACTION_APPROVAL_RECORDED, data__channel="bulk")
    assert recorded.count() == 3


def test_bulk__with_a_high_risk_action__refused_as_a_whole(reviewer, support_agent):
    items = [low(support_agent), factories.submit(support_agent, "update_crm_note", **HIGH)]
    assert items[1].risk == "high"
    with pytest.raises(ActionRefused) as refused:
        actions.bulk_decide(
            action_ids=[a.pk for a in items],
            user=reviewer,
            verdict="approve",
            seen_hashes={a.pk: a.payload_hash for a in items},
        )
    assert refused.value.code == "risk_too_high_for_bulk" and refused.value.status == 403
    assert {a.status for a in type(items[0]).objects.filter(pk__in=[a.pk for a in items])} == {
        "pending"
    }


def test_bulk__mixed_tools_or_missing_hash__refused(reviewer, support_agent):
    one, other = low(support_agent), factories.submit(support_agent, "send_email")
    with pytest.raises(ActionRefused) as refused:
        actions.bulk_decide(
            action_ids=[one.pk, other.pk],
            user=reviewer,
            verdict="reject",
            comment="no",
            seen_hashes={one.pk: one.payload_hash, other.pk: other.payload_hash},
        )
    assert refused.value.code in {"mixed_tools", "risk_too_high_for_bulk"}
    two = low(support_agent)
    with pytest.raises(ActionRefused) as refused:
        actions.bulk_decide(
            action_ids=[one.pk, two.pk],
            user=reviewer,
            verdict="approve",
            seen_hashes={one.pk: one.payload_hash},
        )
    assert refused.value.code == "payload_hash_required"


def test_bulk__each_action_keeps_its_own_rules(reviewer, support_agent):
    # Given one action requested on rita's behalf and one whose payload changed since seen
    own = low(support_agent, on_behalf_of="rita")
    fine = low(support_agent)
    stale = low(support_agent)
    result = actions.bulk_decide(
        action_ids=[own.pk, fine.pk, stale.pk],
        user=reviewer,
        verdict="approve",
        seen_hashes={own.pk: own.payload_hash, fine.pk: fine.payload_hash, stale.pk: "0" * 64},
    )
    # Then only the fine one is approved; the others say why
    assert [a.pk for a in result.done] == [fine.pk]
    reasons = dict(result.refused)
    assert "you cannot approve it" in reasons[own.pk]
    assert "arguments changed" in reasons[stale.pk]


def test_bulk__page__offers_low_risk_groups_and_one_confirmation_decides(
    client, reviewer, support_agent
):
    items = [low(support_agent) for _ in range(2)]
    high = factories.submit(support_agent, "update_crm_note", **HIGH)
    client.force_login(reviewer)
    html = client.get("/queue").content.decode()
    bulk = html.split('class="bulk"')[1].split("</details>")[0]
    assert "Decide 2 low-risk <code>update_crm_note</code> actions at once" in bulk
    assert f'value="{high.pk}"' not in bulk
    # When the reviewer confirms a rejection without a reason, nothing happens
    response = client.post("/actions/bulk", bulk_form(items, "reject"), follow=True)
    assert "needs a reason" in response.content.decode()
    # and with a reason, both are rejected
    response = client.post("/actions/bulk", bulk_form(items, "reject", "duplicate"), follow=True)
    assert f"Rejected 2: #{items[0].pk}, #{items[1].pk}." in response.content.decode()
    # A forged bulk request with the high one is refused by the server
    response = client.post("/actions/bulk", bulk_form([low(support_agent), high]))
    assert response.status_code == 403
    high.refresh_from_db()
    assert high.status == "pending"
