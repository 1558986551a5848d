"""Reverting to a policy version: the change back to the version's tier, tool rules, rate
limit and activity (never its access) is an ordinary proposed change — a reverted
loosening applies at once, a reverted tightening waits for another governance owner, a
mixed one may apply its tightening parts now — from the write path, the version page and
the API alike."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from governance import actions as governance_actions
from governance.access import live_access
from governance.actions import GovernanceRefused
from governance.models import ChangeRequest
from rollout import permissions as agent_perms
from rollout.policy_diff import piece_of_snapshot
from tests import factories

pytestmark = pytest.mark.django_db

GOVERNED = ("tier", "active", "rate_limit_per_minute", "tools")


@pytest.fixture
def gwen(reference_data):
    return factories.make_user("gwen", groups=("governance_owner",))


@pytest.fixture
def gus(reference_data):
    return factories.make_user("gus", groups=("governance_owner",))


def change(agent, author, approver, changes: dict, reason: str = "a change"):
    """Make ``changes`` current: at once if they tighten, else approved by ``approver``."""
    result = governance_actions.propose_change(
        agent=agent, user=author, changes=changes, reason=reason
    )
    if result.change_request is not None:
        governance_actions.approve_change_request(
            change_request_id=result.change_request.pk, user=approver
        )
    agent.refresh_from_db()
    return agent.current_policy


def current(agent):
    agent.refresh_from_db()
    return agent.current_policy


def governed(version) -> dict:
    piece = piece_of_snapshot(version.snapshot)
    return {key: piece[key] for key in GOVERNED}


def live(agent) -> dict:
    agent.refresh_from_db()
    return governed(agent.current_policy)


# --- the write path -------------------------------------------------------------------------


def test_revert_of_a_loosening__applies_at_once_as_the_old_version_audited(
    support_agent, gwen, gus
):
    # Given version 1, then a loosening approved as version 2: a new tool, a rule allowed
    # with standing approvals on, a higher rate limit
    first = current(support_agent)
    change(
        support_agent,
        gwen,
        gus,
        {
            "tools": {
                "post_tweet": {"effect": "write", "rule": "allowed"},
                "send_email": {"rule": "allowed", "standing": {"allowed": True}},
            },
            "rate_limit_per_minute": 1200,
        },
    )
    assert live(support_agent) != governed(first)
    # When gwen reverts to version 1
    result = governance_actions.revert_to_version(agent=support_agent, number=1, user=gwen)
    # Then it only tightens, so it applied at once as a new version equal to version 1
    assert result.classification == "tightening" and result.applied, result.changes
    assert result.policy_version.number == 3
    assert live(support_agent) == governed(first)
    assert "post_tweet" not in live(support_agent)["tools"]
    assert not ChangeRequest.objects.filter(status="open").exists()
    event = AuditEvent.objects.filter(verb="governance.change_applied").latest("id")
    assert event.actor == "gwen" and event.data["reason"] == "Revert to version 1"
    assert event.data["policy_version"] == 3
    assert any("post_tweet" in text for text in event.data["changes"])


def test_revert_of_a_tightening__is_a_change_request_for_another_owner(support_agent, gwen, gus):
    # Given a demotion applied at once (version 2)
    first = current(support_agent)
    change(support_agent, gwen, gus, {"tier": "read_only", "active": False})
    # When gwen reverts to version 1, with her own reason
    result = governance_actions.revert_to_version(
        agent=support_agent, number=1, user=gwen, reason="the demotion was a mistake"
    )
    # Then it loosens: a change request, and nothing changed yet
    assert result.classification == "loosening" and not result.applied
    request = result.change_request
    assert request.reason == "the demotion was a mistake"
    assert set(request.after) == {"tier", "active"}  # only what differs
    assert live(support_agent)["tier"]["name"] == "read_only"
    # gwen may not approve her own request; gus does, and version 1 is back
    with pytest.raises(GovernanceRefused) as exc:
        governance_actions.approve_change_request(change_request_id=request.pk, user=gwen)
    assert exc.value.code == "own_change_request"
    governance_actions.approve_change_request(change_request_id=request.pk, user=gus)
    assert live(support_agent) == governed(first)


@pytest.mark.parametrize("apply_tightening_now", [False, True])
def test_revert_of_a_mixed_change__opens_a_request__tightening_parts_now_when_chosen(
    support_agent, gwen, gus, apply_tightening_now
):
    # Given version 2 demoted the agent (tightening) and version 3 added a tool (loosening)
    first = current(support_agent)
    change(support_agent, gwen, gus, {"tier": "read_only"})
    change(
        support_agent, gwen, gus, {"tools": {"post_tweet": {"effect": "read", "rule": "allowed"}}}
    )
    # When gwen reverts to version 1: promote back (loosens) and drop post_tweet (tightens)
    preview = governance_actions.preview_revert(agent=support_agent, number=1)[2]
    assert preview.mixed
    assert [c.path for c in preview.tightening_changes] == ["tools.post_tweet"]
    result = governance_actions.revert_to_version(
        agent=support_agent, number=1, user=gwen, apply_tightening_now=apply_tightening_now
    )
    request = result.change_request
    assert request is not None and request.status == "open"
    if apply_tightening_now:
        # Then the removal applied at once as version 4; the request holds only the tier
        assert result.policy_version.number == 4
        assert [c.path for c in result.applied_changes] == ["tools.post_tweet"]
        assert "post_tweet" not in live(support_agent)["tools"]
        assert set(request.after) == {"tier"}
    else:
        # Then nothing applied: the request holds both parts
        assert result.policy_version is None
        assert "post_tweet" in live(support_agent)["tools"]
        assert set(request.after) == {"tier", "tools"}
    governance_actions.approve_change_request(change_request_id=request.pk, user=gus)
    assert live(support_agent) == governed(first)


def test_revert__never_restores_access__a_person_removed_since_stays_removed(
    support_agent, gwen, gus
):
    petra = factories.make_user("petra")
    # Given petra was granted review in version 2, which also allowed send_email
    change(
        support_agent,
        gwen,
        gus,
        {"access": {"review": {"user:petra": True}}, "tools": {"send_email": {"rule": "allowed"}}},
    )
    granted = support_agent.current_policy
    assert granted.snapshot["access"]["review"] == {"user:petra": True}
    # and later her right was removed and send_email went back to approval
    change(support_agent, gwen, gus, {"access": {"review": {"user:petra": None}}})
    change(support_agent, gwen, gus, {"tools": {"send_email": {"rule": "requires_approval"}}})
    # When the agent is reverted to version 2 (approved by a second owner)
    result = governance_actions.revert_to_version(
        agent=support_agent, number=granted.number, user=gwen
    )
    assert "access" not in result.change_request.after
    governance_actions.approve_change_request(change_request_id=result.change_request.pk, user=gus)
    # Then send_email is allowed again, but petra holds no right on the agent
    support_agent.refresh_from_db()
    assert live(support_agent)["tools"]["send_email"]["rule"] == "allowed"
    assert "user:petra" not in live_access(support_agent)["review"]
    petra = get_user_model().objects.get(pk=petra.pk)
    assert not agent_perms.can_review(petra, support_agent)


def test_revert__to_a_version_matching_the_live_policy__is_nothing_to_revert(
    support_agent, gwen, gus
):
    factories.make_user("petra")
    # Version 2 differs from version 1 only in access: nothing a revert carries back
    change(support_agent, gwen, gus, {"access": {"review": {"user:petra": True}}})
    events = AuditEvent.objects.count()
    for number in (1, 2):
        with pytest.raises(GovernanceRefused) as exc:
            governance_actions.revert_to_version(agent=support_agent, number=number, user=gwen)
        assert exc.value.code == "nothing_to_revert" and exc.value.status == 409
    assert AuditEvent.objects.count() == events
    assert not ChangeRequest.objects.filter(status="open").exists()
    assert "user:petra" in live_access(support_agent)["review"]  # access untouched


def test_revert__refuses_a_non_governor_and_a_missing_version(support_agent, gwen, reviewer):
    change(support_agent, gwen, gwen, {"tier": "read_only"})
    with pytest.raises(GovernanceRefused) as exc:
        governance_actions.revert_to_version(agent=support_agent, number=1, user=reviewer)
    assert exc.value.code == "not_governor"
    with pytest.raises(GovernanceRefused) as exc:
        governance_actions.revert_to_version(agent=support_agent, number=99, user=gwen)
    assert exc.value.code == "not_found"
    assert live(support_agent)["tier"]["name"] == "read_only"


# --- the page and the API -------------------------------------------------------------------


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_version_page__governor_previews_and_proposes__others_get_no_button(
    support_agent, gwen, gus, reviewer
):
    change(support_agent, gwen, gus, {"tier": "read_only"})
    page = f"/agents/{support_agent.slug}/versions/1"
    revert = f"{page}/revert"
    # A reviewer sees the version but no revert, and cannot post one
    assert "revert-form" not in client_for(reviewer).get(page).content.decode()
    first = support_agent.policy_versions.get(number=1)
    audit_page = reverse("audit-policy-version", args=[first.pk])
    assert f"{page}#revert" not in client_for(reviewer).get(audit_page).content.decode()
    assert f"{page}#revert" in client_for(gwen).get(audit_page).content.decode()
    assert client_for(reviewer).post(revert, {"reason": "x", "step": "preview"}).status_code == 403
    # The governor sees the form, its reason pre-filled
    gwen_client = client_for(gwen)
    html = gwen_client.get(page).content.decode()
    assert 'id="revert-form"' in html and 'value="Revert to version 1"' in html
    # The current version has nothing to revert
    current = gwen_client.get(f"/agents/{support_agent.slug}/versions/2").content.decode()
    assert 'data-testid="nothing-to-revert"' in current and "revert-form" not in current
    # Preview: the change and its direction, nothing written
    preview = gwen_client.post(revert, {"reason": "undo the demotion", "step": "preview"})
    body = preview.content.decode()
    assert preview.status_code == 200 and 'data-classification="loosening"' in body
    assert "promote read_only → supervised" in body
    assert 'value="undo the demotion"' in body
    assert not ChangeRequest.objects.exists()
    # Propose: a change request, the reason kept
    answer = gwen_client.post(revert, {"reason": "undo the demotion", "step": "propose"})
    request = ChangeRequest.objects.get()
    assert answer.status_code == 302 and answer["Location"] == f"/changes/{request.pk}"
    assert request.reason == "undo the demotion" and request.author == gwen


def test_api_revert__answers_like_propose__and_refuses_clearly(support_agent, gwen, gus, reviewer):
    change(support_agent, gwen, gus, {"tier": "read_only"})
    change(
        support_agent, gwen, gus, {"tools": {"post_tweet": {"effect": "read", "rule": "allowed"}}}
    )
    url = f"/api/v1/agents/{support_agent.slug}/versions/1/revert"
    # A reviewer is refused
    denied = client_for(reviewer).post(url, {}, content_type="application/json")
    assert denied.status_code == 403 and denied.json()["code"] == "not_governor"
    gwen_client = client_for(gwen)
    # Unknown fields and a missing version are clear errors that write nothing
    bad = gwen_client.post(url, {"tier": "autonomous"}, content_type="application/json")
    assert bad.status_code == 400 and "tier" in bad.json()["fields"]
    missing = gwen_client.post(
        f"/api/v1/agents/{support_agent.slug}/versions/99/revert",
        {},
        content_type="application/json",
    )
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    # The mixed revert with its tightening parts now
    answer = gwen_client.post(url, {"apply_tightening_now": True}, content_type="application/json")
    assert answer.status_code == 201, answer.content
    data = answer.json()
    assert data["classification"] == "loosening" and data["applied"] is False
    assert data["policy_version"] == 4
    assert [c["path"] for c in data["applied_changes"]] == ["tools.post_tweet"]
    assert data["change_request"]["reason"] == "Revert to version 1"
    # The version now current has nothing to revert
    current = gwen_client.post(
        f"/api/v1/agents/{support_agent.slug}/versions/4/revert",
        {},
        content_type="application/json",
    )
    assert current.status_code == 409 and current.json()["code"] == "nothing_to_revert"
