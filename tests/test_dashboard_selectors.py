"""The dashboard's read side: batched card offers agree with the write path's own
``decision_refusal`` for every person and situation, and small formatting helpers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals import actions, selectors
from approvals.models import Action, Decision
from approvals.templatetags.dashboard import page_url, time_left
from tests import factories

HIGH = {"blast_radius": {"amount": {"value": 5000, "currency": "EUR"}}}
CRITICAL = {"blast_radius": {"amount": {"value": 20000, "currency": "EUR"}}}


@pytest.fixture
def people(reviewer, reviewer2, critical_reviewer, auditor, incident_owner, support_agent):
    return [
        reviewer,
        reviewer2,
        critical_reviewer,
        auditor,
        incident_owner,
        factories.make_user("ann", agent_perms={"rollout.review_agent": support_agent}),
        factories.make_user(
            "carl",
            agent_perms={
                "rollout.review_agent": support_agent,
                "rollout.critical_approve_agent": support_agent,
            },
        ),
        factories.make_user("root", superuser=True),
    ]


@pytest.fixture
def situations(support_agent, other_agent, reviewer, reviewer2, critical_reviewer):
    """One action per situation the offers depend on."""
    submit = factories.submit
    made = {
        "pending": submit(support_agent, "send_email"),
        "other_agent": submit(other_agent, "send_email"),
        "on_behalf_of_rita": submit(support_agent, "send_email", on_behalf_of="rita"),
        "high_approved_by_rita": submit(support_agent, "send_email", **HIGH),
        "critical_untouched": submit(support_agent, "send_email", **CRITICAL),
        "critical_approved_by_rob": submit(support_agent, "send_email", **CRITICAL),
        "critical_approved_by_cora": submit(support_agent, "send_email", **CRITICAL),
        "expired": submit(support_agent, "send_email"),
        "rejected": submit(support_agent, "send_email"),
        "edited_after_rita": submit(support_agent, "send_email", **HIGH),
    }
    actions.approve(action_id=made["high_approved_by_rita"].pk, user=reviewer)
    actions.approve(action_id=made["critical_approved_by_rob"].pk, user=reviewer2)
    actions.approve(action_id=made["critical_approved_by_cora"].pk, user=critical_reviewer)
    actions.reject(action_id=made["rejected"].pk, user=reviewer2, comment="no")
    actions.approve(action_id=made["edited_after_rita"].pk, user=reviewer)
    actions.approve(
        action_id=made["edited_after_rita"].pk, user=reviewer2, arguments={"to": "c@example.com"}
    )
    Action.objects.filter(pk=made["expired"].pk).update(
        expires_at=timezone.now() - timedelta(seconds=5)
    )
    return made


def test_build_cards__offers__agree_with_decision_refusal(db, people, situations):
    ids = [action.pk for action in situations.values()]
    for person in people:
        # Given a page of actions loaded as the queue loads them
        page = list(selectors.with_card_data(Action.objects.filter(pk__in=ids)))
        # When the batch builds the cards
        cards = {card.pk: card for card in selectors.build_cards(page, person)}
        for name, action in situations.items():
            fresh = Action.objects.select_related("agent").get(pk=action.pk)
            # Then each offer is exactly what the write path would allow
            approve = actions.decision_refusal(fresh, person, Decision.Verdict.APPROVE)
            reject = actions.decision_refusal(fresh, person, Decision.Verdict.REJECT)
            offers = cards[action.pk].offers
            context = (person.username, name)
            assert offers.approve == (approve is None), (*context, approve)
            assert offers.reject == (reject is None), (*context, reject)
            if approve and reject is None:
                assert offers.approve_refusal == approve.detail, context
            # and the single-card path says the same
            assert selectors.build_card(fresh, person).offers == offers, context


def test_build_cards__current_approvals__ignore_voided_ones(db, situations, reviewer):
    page = selectors.with_card_data(Action.objects.filter(pk=situations["edited_after_rita"].pk))
    (card,) = selectors.build_cards(page, reviewer)
    assert card.approvers == ["rob"]
    assert card.is_edited and [line.sign for line in card.diff if line.sign != " "] == ["-", "+"]


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://shop.example.com/a?b=c", "shop.example.com"),
        ("javascript:alert(1)", "no host (javascript)"),
        ("//evil.example/x", "evil.example"),
        ("/relative", "no host (relative)"),
        ("http://[::1", "unparseable URL"),
    ],
)
def test_evidence_item__url_host(url, host):
    assert selectors.EvidenceItem.from_agent({"url": url}).url_host == host


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "no expiry"),
        (0, "expired"),
        (42, "42 s"),
        (600, "10 min"),
        (5400, "1 h 30 min"),
        (90000, "1 d 1 h"),
    ],
)
def test_time_left(seconds, text):
    assert time_left(seconds) == text


def test_page_url__keeps_filters():
    assert page_url("/?agent=a&risk=high&page=3", 4) == "/?agent=a&page=4&risk=high"
    assert page_url("/decided", 2) == "/decided?page=2"
