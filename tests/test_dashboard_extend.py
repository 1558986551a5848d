"""A reviewer gives a pending action more time: up to its tier's ``max_pending_seconds``
from submission (a governed tier field), audited, on the one write path; never beyond."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError

from approvals import actions
from approvals.actions import ActionRefused
from audit import verbs
from audit.models import AuditEvent
from rollout.models import Tier
from rollout.policy_diff import LOOSENING, changes_between
from tests import factories


@pytest.fixture
def pending(support_agent):
    return factories.submit(support_agent, "send_email", {"to": "a@example.com"})


def test_extend__within_the_maximum__moves_expiry_and_audits(
    reviewer, pending, django_capture_on_commit_callbacks
):
    before = pending.expires_at
    # When a reviewer adds an hour
    with django_capture_on_commit_callbacks() as callbacks:
        action = actions.extend_expiry(action_id=pending.pk, user=reviewer, seconds=3600)
    # Then the action waits an hour longer, still pending
    action.refresh_from_db()
    assert action.status == "pending"
    assert action.expires_at == before + timedelta(hours=1)
    # and the audit log says who, from when to when
    event = AuditEvent.objects.get(verb=verbs.ACTION_EXPIRY_EXTENDED)
    assert event.actor == "rita" and event.target_id == str(action.pk)
    assert event.data["seconds"] == 3600
    assert event.data["expires_at"]["before"] == before.isoformat()
    assert len(callbacks) == 1  # the dashboards hear of it once committed


def test_extend__beyond_the_maximum__refused_and_unchanged(reviewer, pending):
    tier = pending.agent.tier
    latest = pending.created_at + timedelta(seconds=tier.max_pending_seconds)
    too_much = int((latest - pending.expires_at).total_seconds()) + 1
    with pytest.raises(ActionRefused) as refused:
        actions.extend_expiry(action_id=pending.pk, user=reviewer, seconds=too_much)
    assert refused.value.code == "beyond_max_pending"
    assert "at most until" in refused.value.detail
    pending.refresh_from_db()
    assert pending.expires_at < latest
    assert not AuditEvent.objects.filter(verb=verbs.ACTION_EXPIRY_EXTENDED).exists()


def test_extend__tier_without_extension__refused(reviewer, pending):
    Tier.objects.filter(pk=pending.agent.tier_id).update(max_pending_seconds=0)
    with pytest.raises(ActionRefused) as refused:
        actions.extend_expiry(action_id=pending.pk, user=reviewer, seconds=900)
    assert refused.value.code == "extension_not_allowed"


def test_extend__not_a_reviewer__refused(auditor, pending):
    with pytest.raises(ActionRefused) as refused:
        actions.extend_expiry(action_id=pending.pk, user=auditor, seconds=900)
    assert refused.value.status == 403


def test_extend__page__offers_what_fits_and_extends(client, reviewer, pending):
    client.force_login(reviewer)
    html = client.get("/queue").content.decode()
    assert f'action="/actions/{pending.pk}/extend"' in html
    assert ">+1 h<" in html
    response = client.post(
        f"/actions/{pending.pk}/extend", {"seconds": "3600"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert "now waits until" in response.content.decode()
    # and an amount the card does not offer is refused as bad input
    response = client.post(f"/actions/{pending.pk}/extend", {"seconds": "99999999"})
    assert response.status_code == 422


def test_extend__near_the_maximum__card_offers_only_what_fits(client, reviewer, pending):
    # Given a tier whose maximum leaves 30 minutes beyond the current expiry
    slack = int((pending.expires_at - pending.created_at).total_seconds()) + 1800
    Tier.objects.filter(pk=pending.agent.tier_id).update(max_pending_seconds=slack)
    client.force_login(reviewer)
    html = client.get("/queue").content.decode()
    assert ">+15 min<" in html and ">+1 h<" not in html


def test_tier__max_pending_seconds__governed_like_the_other_tier_fields(reference_data):
    tier = Tier.objects.get(name="supervised")
    # part of every policy snapshot (a change makes a new version and shows in diffs)
    assert tier.as_policy()["max_pending_seconds"] == tier.max_pending_seconds > 0
    # never shorter than the longest pending timeout (0: no extension)
    tier.max_pending_seconds = 60
    with pytest.raises(ValidationError):
        tier.clean()
    tier.max_pending_seconds = 0
    tier.clean()


def test_tier__max_pending_seconds_changed__shows_in_the_policy_diff(reference_data):
    tier = Tier.objects.get(name="supervised").as_policy()
    longer = {**tier, "max_pending_seconds": tier["max_pending_seconds"] * 2}
    changes = changes_between({"tier": tier}, {"tier": longer})
    assert [(c.direction, c.text) for c in changes] == [(LOOSENING, "tier: pending timeouts")]
