"""What helps a reviewer through the queue: search and order, who may still approve a card,
multi-line text shown as text, one line per kill switch instead of a crowd of stopped cards,
and lists that say what ended an action when no reviewer did."""

from __future__ import annotations

import re

import pytest

from approvals import actions
from approvals.rules import still_needed
from audit.chain import Actor
from incidents.actions import engage_kill_switch
from tests import factories

HIGH = {"blast_radius": {"amount": {"value": 5000, "currency": "EUR"}}}
CRITICAL = {"blast_radius": {"amount": {"value": 20000, "currency": "EUR"}}}


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def card_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'id="card-(\d+)"', html)]


def test_queue__search__matches_tool_summary_or_agent(as_user, reviewer, support_agent):
    refund = factories.submit(
        support_agent,
        "create_refund_request",
        {"order_id": "A1", "amount": 5},
        summary="Late parcel",
    )
    email = factories.submit(support_agent, "send_email", summary="Apologise to Dana")
    client = as_user(reviewer)
    assert card_ids(client.get("/queue?q=refund").content.decode()) == [refund.pk]
    assert card_ids(client.get("/queue?q=apologise+dana").content.decode()) == [email.pk]
    assert set(card_ids(client.get("/queue?q=support").content.decode())) == {refund.pk, email.pk}
    assert card_ids(client.get("/queue?q=nothing-like-this").content.decode()) == []


def test_queue__sort__risk_expiry_or_age(as_user, reviewer, support_agent):
    # Given an older low-risk action (longest expiry) and a newer high-risk one (shorter)
    old_low = factories.submit(support_agent, "send_email")
    new_high = factories.submit(support_agent, "send_email", **HIGH)
    client = as_user(reviewer)
    # Then risk (the default) and expiry put the high one first, age the old one
    assert card_ids(client.get("/queue").content.decode()) == [new_high.pk, old_low.pk]
    assert card_ids(client.get("/queue?sort=expiry").content.decode()) == [new_high.pk, old_low.pk]
    assert card_ids(client.get("/queue?sort=age").content.decode()) == [old_low.pk, new_high.pk]
    # and an unknown order is the default
    assert card_ids(client.get("/queue?sort=bogus").content.decode()) == [new_high.pk, old_low.pk]


def test_card__names_who_may_still_approve(
    as_user, reviewer, reviewer2, critical_reviewer, support_agent
):
    low = factories.submit(support_agent, "send_email")
    high = factories.submit(support_agent, "send_email", **HIGH)
    critical = factories.submit(support_agent, "send_email", **CRITICAL)
    actions.approve(action_id=critical.pk, user=reviewer2, seen_hash=critical.payload_hash)
    html = as_user(reviewer).get("/queue").content.decode()

    def card(action) -> str:
        return html.split(f'id="card-{action.pk}"')[1].split("</article>")[0]

    assert "needs 1 more: any reviewer" in card(low)
    assert "needs 2 more: distinct reviewers" in card(high)
    assert "needs 1 more: a critical approver" in card(critical)


def test_still_needed__same_rule_as_the_quorum(support_agent, reviewer, critical_reviewer):
    # A critical action approved by a critical approver first still needs one more person
    critical = factories.submit(support_agent, "send_email", **CRITICAL)
    actions.approve(action_id=critical.pk, user=critical_reviewer, seen_hash=critical.payload_hash)
    approvals = actions.current_approvals(critical)
    needed = still_needed(critical, approvals, lambda person: person == critical_reviewer)
    assert str(needed) == "needs 1 more: any reviewer"


def test_card__multi_line_text_argument__shown_as_text(as_user, reviewer, support_agent):
    body = "Dear Dana,\n\nYour refund is on its way.\n\nBest,\nSupport"
    action = factories.submit(support_agent, "send_email", {"to": "dana@example.com", "body": body})
    html = as_user(reviewer).get(f"/actions/{action.pk}").content.decode()
    assert '<div class="arg-text">Dear Dana,\n\nYour refund is on its way.' in html
    assert "\\n" not in html.split('class="card-section card-arguments"')[1].split("</section>")[0]


def test_queue__kill_switch__stopped_cards_collapse_into_one_line(as_user, reviewer, support_agent):
    stopped = [factories.submit(support_agent, "send_email") for _ in range(3)]
    engage_kill_switch(
        scope="agent", target=support_agent.slug, reason="runaway loop", actor=Actor.system("t")
    )
    shown = ",".join(str(action.pk) for action in stopped)
    html = as_user(reviewer).get(f"/queue?partial=1&shown={shown}").content.decode()
    assert "3 actions stopped by kill switch</strong>: runaway loop" in html
    assert card_ids(html) == []
    assert f'data-stopped-ids="{shown}"' in html


def test_decided__kill_switch_after_one_approval__says_what_stopped_it(
    as_user, reviewer, auditor, support_agent
):
    # Given a high action approved once (of two), then cancelled by a kill switch
    high = factories.submit(support_agent, "send_email", **HIGH)
    actions.approve(action_id=high.pk, user=reviewer, seen_hash=high.payload_hash)
    engage_kill_switch(
        scope="agent", target=support_agent.slug, reason="runaway", actor=Actor.system("t")
    )
    # Then /decided names the kill switch, not the reviewer, as what decided it
    html = as_user(auditor).get("/decided").content.decode()
    row = html.split(f"#{high.pk}</a>")[1].split("</tr>")[0]
    assert "kill switch: runaway" in row
    assert "after approve by rita" in row
    assert 'class="verdict verdict-approve"' not in row
