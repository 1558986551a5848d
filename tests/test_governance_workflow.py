"""The governance write path: tightenings apply at once, loosenings become change requests
that a second governance owner approves (never the author), edits void approvals,
concurrent approvals apply exactly once, and the gate then decides under the new policy."""

import threading
from unittest import mock

import pytest
from django.db import connection

from audit.models import AuditEvent
from governance import actions as governance_actions
from governance.actions import GovernanceRefused
from governance.models import ChangeApproval, ChangeRequest, ShadowLabel
from rollout.models import AgentToken, PolicyVersion
from rollout.policy_diff import diff_policies
from tests import factories

PROMOTE = {"tier": "autonomous"}
DEMOTE = {"tier": "read_only"}


@pytest.fixture
def governor(reference_data):
    return factories.make_user("gwen", groups=("governance_owner",))


@pytest.fixture
def governor2(reference_data):
    return factories.make_user("gus", groups=("governance_owner",))


@pytest.fixture
def governor3(reference_data):
    return factories.make_user("gil", groups=("governance_owner",))


@pytest.fixture
def sent():
    with (
        mock.patch("governance.events.broadcast_policy_version") as versions,
        mock.patch("governance.events.broadcast_change_request") as requests,
    ):
        yield {"versions": versions, "requests": requests}


def verbs_for(agent):
    return list(
        AuditEvent.objects.filter(agent_slug=agent.slug)
        .order_by("id")
        .values_list("verb", flat=True)
    )


def refused(code, call, **kwargs):
    with pytest.raises(GovernanceRefused) as exc:
        call(**kwargs)
    assert exc.value.code == code, exc.value.detail
    return exc.value


# --- tightening applies at once ------------------------------------------------------------


def test_propose__demotion__applies_at_once_as_new_version_audited_and_broadcast(
    support_agent, governor, sent, django_capture_on_commit_callbacks
):
    # Given a supervised agent at policy version 1
    support_agent.refresh_from_db()
    assert support_agent.current_policy.number == 1
    # When its governor demotes it
    with django_capture_on_commit_callbacks(execute=True):
        result = governance_actions.propose_change(
            agent=support_agent, user=governor, changes=DEMOTE, reason="too many rejections"
        )
    # Then it applied at once as version 2, which is current
    support_agent.refresh_from_db()
    assert result.classification == "tightening" and result.applied
    assert support_agent.tier.name == "read_only"
    assert support_agent.current_policy.number == 2
    assert support_agent.current_policy.snapshot["tier"]["name"] == "read_only"
    assert not ChangeRequest.objects.exists()
    # audited in the change's transaction, broadcast on commit
    assert verbs_for(support_agent)[-2:] == ["policy.version_created", "governance.change_applied"]
    event = AuditEvent.objects.get(verb="governance.change_applied")
    assert event.actor == "gwen" and event.data["changes"] == ["demote supervised → read_only"]
    assert event.data["policy_version"] == 2
    sent["versions"].assert_called_once()
    assert sent["versions"].call_args.args[0].number == 2


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        (
            {"tools": {"get_order_status": {"rule": "forbidden"}}},
            lambda s: s["tools"]["get_order_status"]["rule"] == "forbidden",
        ),
        (
            {"tools": {"update_crm_note": {"rule": "requires_approval"}}},
            lambda s: s["tools"]["update_crm_note"]["rule"] == "requires_approval",
        ),
        ({"tools": {"wipe_database": None}}, lambda s: "wipe_database" not in s["tools"]),
        (
            {
                "tools": {
                    "create_refund_request": {
                        "argument_limits": [{"field": "amount", "op": "<=", "value": 500}]
                    }
                }
            },
            lambda s: s["tools"]["create_refund_request"]["argument_limits"][0]["value"] == 500,
        ),
        (
            {"tools": {"send_email": {"rate_limit_per_minute": 5}}},
            lambda s: s["tools"]["send_email"]["rate_limit_per_minute"] == 5,
        ),
        ({"rate_limit_per_minute": 60}, lambda s: s["agent"]["rate_limit_per_minute"] == 60),
        ({"active": False}, lambda s: s["agent"]["active"] is False),
    ],
    ids=[
        "forbid",
        "requires_approval",
        "remove",
        "tighten_limit",
        "lower_tool_rate",
        "lower_agent_rate",
        "deactivate",
    ],
)
def test_propose__each_tightening__applies_at_once(support_agent, governor, changes, check):
    result = governance_actions.propose_change(
        agent=support_agent, user=governor, changes=changes, reason="tighten"
    )
    assert result.applied, [c.text for c in result.changes]
    support_agent.refresh_from_db()
    assert check(support_agent.current_policy.snapshot)


# --- loosening opens a change request ------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        PROMOTE,
        {"tools": {"approve_refund": {"rule": "allowed"}}},
        {"tools": {"send_email": {"rule": "allowed"}}},
        {"tools": {"brand_new_tool": {"effect": "read", "rule": "allowed"}}},
        {"tools": {"create_refund_request": {"argument_limits": []}}},
        {"rate_limit_per_minute": 6000},
        {"tier": "read_only", "tools": {"approve_refund": {"rule": "allowed"}}},  # mixed
    ],
    ids=[
        "promote",
        "unforbid",
        "approval_to_allowed",
        "new_tool",
        "drop_limit",
        "raise_rate",
        "mixed",
    ],
)
def test_propose__each_loosening__opens_a_change_request_and_changes_nothing(
    support_agent, governor, sent, django_capture_on_commit_callbacks, changes
):
    with django_capture_on_commit_callbacks(execute=True):
        result = governance_actions.propose_change(
            agent=support_agent, user=governor, changes=changes, reason="more autonomy"
        )
    support_agent.refresh_from_db()
    assert result.classification == "loosening" and not result.applied
    cr = result.change_request
    assert cr.status == "open" and cr.author == governor and cr.revision == 1
    assert support_agent.current_policy.number == 1 and support_agent.tier.name == "supervised"
    assert verbs_for(support_agent)[-1] == "change_request.created"
    sent["requests"].assert_called_once_with(cr, "created")
    sent["versions"].assert_not_called()


def test_propose__nothing_changes__refused(support_agent, governor):
    refused(
        "no_change",
        governance_actions.propose_change,
        agent=support_agent,
        user=governor,
        changes={"tier": "supervised"},
        reason="x",
    )


def test_propose__unparseable_limit_or_unknown_tier__refused_with_fields(support_agent, governor):
    exc = refused(
        "invalid",
        governance_actions.propose_change,
        agent=support_agent,
        user=governor,
        changes={
            "tier": "godmode",
            "tools": {
                "send_email": {
                    "argument_limits": [{"field": "amount", "op": "<=", "value": "lots"}]
                }
            },
        },
        reason="x",
    )
    assert exc.status == 400
    assert exc.fields["tier"] == ["No tier 'godmode'."]
    assert exc.fields["tools.send_email.argument_limits"] == ["limit 1: <= needs a number"]


def test_propose__reason_required(support_agent, governor):
    refused(
        "reason_required",
        governance_actions.propose_change,
        agent=support_agent,
        user=governor,
        changes=DEMOTE,
        reason="  ",
    )


def test_propose__reviewer_or_governor_of_another_agent__refused(
    support_agent, other_agent, reviewer
):
    refused(
        "not_governor",
        governance_actions.propose_change,
        agent=support_agent,
        user=reviewer,
        changes=DEMOTE,
        reason="x",
    )
    owner_of_other = factories.make_user("olga", agent_perms={"rollout.govern_agent": other_agent})
    refused(
        "not_governor",
        governance_actions.propose_change,
        agent=support_agent,
        user=owner_of_other,
        changes=DEMOTE,
        reason="x",
    )
    governance_actions.propose_change(
        agent=other_agent, user=owner_of_other, changes=DEMOTE, reason="mine"
    )


# --- approving ----------------------------------------------------------------------------


def open_promotion(agent, author, **extra):
    return governance_actions.propose_change(
        agent=agent, user=author, changes=PROMOTE, reason="ready", **extra
    ).change_request


def test_approve__by_its_author__refused_even_for_a_superuser(support_agent, reference_data):
    root = factories.make_user("root", superuser=True)
    cr = open_promotion(support_agent, root)
    exc = refused(
        "own_change_request",
        governance_actions.approve_change_request,
        change_request_id=cr.pk,
        user=root,
    )
    assert exc.status == 403
    assert not ChangeApproval.objects.exists()


def test_approve__second_governor__applies_atomically_as_new_version(
    support_agent, governor, governor2, sent, django_capture_on_commit_callbacks
):
    cr = open_promotion(support_agent, governor)
    with django_capture_on_commit_callbacks(execute=True):
        cr = governance_actions.approve_change_request(
            change_request_id=cr.pk, user=governor2, revision=1, comment="numbers look good"
        )
    support_agent.refresh_from_db()
    assert cr.status == "applied" and cr.closed_by == governor2
    assert cr.applied_version == support_agent.current_policy
    assert support_agent.tier.name == "autonomous" and support_agent.current_policy.number == 2
    assert support_agent.current_policy.reason == f"change request #{cr.pk}: ready"
    assert verbs_for(support_agent)[-3:] == [
        "change_request.approval_recorded",
        "policy.version_created",
        "change_request.applied",
    ]
    applied = AuditEvent.objects.get(verb="change_request.applied")
    assert applied.data["author"] == "gwen" and applied.data["approvers"] == ["gus"]
    assert applied.data["changes"] == ["promote supervised → autonomous"]
    sent["requests"].assert_called_with(cr, "applied")
    assert sent["versions"].call_args.args[0].number == 2


def test_approve__governor_of_another_agent_or_reviewer__refused(
    support_agent, other_agent, governor, reviewer
):
    cr = open_promotion(support_agent, governor)
    owner_of_other = factories.make_user("olga", agent_perms={"rollout.govern_agent": other_agent})
    for user in (owner_of_other, reviewer):
        assert (
            refused(
                "not_governor",
                governance_actions.approve_change_request,
                change_request_id=cr.pk,
                user=user,
            ).status
            == 403
        )
    owner_of_this = factories.make_user("tess", agent_perms={"rollout.govern_agent": support_agent})
    assert (
        governance_actions.approve_change_request(
            change_request_id=cr.pk, user=owner_of_this
        ).status
        == "applied"
    )


def test_approve__closed_request__refused(support_agent, governor, governor2, governor3):
    cr = open_promotion(support_agent, governor)
    governance_actions.approve_change_request(change_request_id=cr.pk, user=governor2)
    refused(
        "not_open",
        governance_actions.approve_change_request,
        change_request_id=cr.pk,
        user=governor3,
    )
    assert PolicyVersion.objects.filter(agent=support_agent).count() == 2


def test_edit__voids_approvals_bumps_revision_and_needs_fresh_approvals(
    support_agent, governor, governor2, governor3, sent, django_capture_on_commit_callbacks
):
    # Given a promotion that needs two approvals, approved once
    cr = open_promotion(support_agent, governor, required_approvals=2)
    cr = governance_actions.approve_change_request(change_request_id=cr.pk, user=governor2)
    assert cr.status == "open" and len(governance_actions.current_approvals(cr)) == 1
    # When its author edits it (a smaller promotion)
    with django_capture_on_commit_callbacks(execute=True):
        cr = governance_actions.edit_change_request(
            change_request_id=cr.pk,
            user=governor,
            changes={"tier": "autonomous", "rate_limit_per_minute": 900},
            reason="ready, and faster",
        )
    # Then the earlier approval no longer counts, the revision went up, it is audited
    assert cr.revision == 2 and cr.status == "open"
    assert governance_actions.current_approvals(cr) == []
    assert ChangeApproval.objects.get().voided
    edited = AuditEvent.objects.get(verb="change_request.edited")
    assert edited.data["approvals_voided"] == 1 and edited.data["revision"] == 2
    sent["requests"].assert_called_with(cr, "edited")
    # An approval of the old revision is refused; two fresh ones apply it
    refused(
        "revision_changed",
        governance_actions.approve_change_request,
        change_request_id=cr.pk,
        user=governor3,
        revision=1,
    )
    cr = governance_actions.approve_change_request(
        change_request_id=cr.pk, user=governor3, revision=2
    )
    assert cr.status == "open"
    cr = governance_actions.approve_change_request(
        change_request_id=cr.pk, user=governor2, revision=2
    )
    assert cr.status == "applied"
    support_agent.refresh_from_db()
    assert (support_agent.tier.name, support_agent.rate_limit_per_minute) == ("autonomous", 900)


def test_edit__only_the_author(support_agent, governor, governor2):
    cr = open_promotion(support_agent, governor)
    refused(
        "not_author",
        governance_actions.edit_change_request,
        change_request_id=cr.pk,
        user=governor2,
        changes=PROMOTE,
    )


def test_approve__stale_after_policy_changed_under_it__refused_until_edited(
    support_agent, governor, governor2
):
    # Given a promotion written against "supervised"
    cr = open_promotion(support_agent, governor)
    # When the agent is demoted in the meantime (a tightening applies at once)
    governance_actions.propose_change(
        agent=support_agent, user=governor2, changes=DEMOTE, reason="incident"
    )
    # Then approving the old diff is refused
    assert governance_actions.is_stale(cr)
    refused(
        "stale", governance_actions.approve_change_request, change_request_id=cr.pk, user=governor2
    )
    # and after its author re-bases it by editing, it can be approved
    cr = governance_actions.edit_change_request(
        change_request_id=cr.pk, user=governor, changes=PROMOTE
    )
    assert cr.before["tier"]["name"] == "read_only"
    assert (
        governance_actions.approve_change_request(
            change_request_id=cr.pk, user=governor2, revision=2
        ).status
        == "applied"
    )


def test_reject_and_withdraw(support_agent, governor, governor2):
    cr = open_promotion(support_agent, governor)
    refused(
        "comment_required",
        governance_actions.reject_change_request,
        change_request_id=cr.pk,
        user=governor2,
        comment="",
    )
    refused(
        "own_change_request",
        governance_actions.reject_change_request,
        change_request_id=cr.pk,
        user=governor,
        comment="no",
    )
    cr = governance_actions.reject_change_request(
        change_request_id=cr.pk, user=governor2, comment="not yet: rejection rate"
    )
    assert (cr.status, cr.close_comment, cr.closed_by) == (
        "rejected",
        "not yet: rejection rate",
        governor2,
    )
    refused(
        "not_open",
        governance_actions.approve_change_request,
        change_request_id=cr.pk,
        user=governor2,
    )

    other = open_promotion(support_agent, governor)
    refused(
        "not_author",
        governance_actions.withdraw_change_request,
        change_request_id=other.pk,
        user=governor2,
    )
    assert (
        governance_actions.withdraw_change_request(change_request_id=other.pk, user=governor).status
        == "withdrawn"
    )
    verbs = verbs_for(support_agent)
    assert "change_request.rejected" in verbs and "change_request.withdrawn" in verbs
    support_agent.refresh_from_db()
    assert support_agent.current_policy.number == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_approvals__real_threads__apply_exactly_once(
    support_agent, governor, governor2, governor3
):
    # Given a promotion, four governance owners approve it at the same moment, 5 times over
    approvers = [
        governor2,
        governor3,
        factories.make_user("gia", groups=("governance_owner",)),
        factories.make_user("geo", groups=("governance_owner",)),
    ]
    for round_ in range(5):
        versions_before = PolicyVersion.objects.filter(agent=support_agent).count()
        # alternate promote/demote so each round has something to apply
        target = "autonomous" if round_ % 2 == 0 else "draft_only"
        cr = governance_actions.propose_change(
            agent=support_agent,
            user=governor,
            changes={"tier": target, "rate_limit_per_minute": 601 + round_},
            reason=f"round {round_}",
        ).change_request
        barrier = threading.Barrier(len(approvers))
        outcomes = []

        def approve_as(user, cr=cr, barrier=barrier, outcomes=outcomes):
            try:
                barrier.wait()
                governance_actions.approve_change_request(change_request_id=cr.pk, user=user)
                outcomes.append("applied")
            except GovernanceRefused as exc:
                outcomes.append(exc.code)
            finally:
                connection.close()

        threads = [threading.Thread(target=approve_as, args=(user,)) for user in approvers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Then exactly one approval applied it: one new version, one audit event of it
        assert sorted(outcomes) == ["applied", "not_open", "not_open", "not_open"]
        cr.refresh_from_db()
        assert cr.status == "applied"
        assert ChangeApproval.objects.filter(change_request=cr).count() == 1
        assert PolicyVersion.objects.filter(agent=support_agent).count() == versions_before + 1
        assert (
            AuditEvent.objects.filter(verb="change_request.applied", target_id=str(cr.pk)).count()
            == 1
        )
        support_agent.refresh_from_db()
        assert support_agent.tier.name == target


# --- the gate follows the newest version ---------------------------------------------------


def test_promotion_approved__gate_decides_differently_and_records_the_new_version(
    support_agent, governor, governor2
):
    # Given a supervised agent: a low-risk write waits for a human
    before = factories.submit(support_agent, "update_crm_note", {"note": "hi"})
    assert (before.status, before.reason_code, before.policy_version.number) == (
        "pending",
        "tier_requires_approval",
        1,
    )
    # When a promotion to autonomous is proposed, the gate has not changed yet
    cr = open_promotion(support_agent, governor)
    assert factories.submit(support_agent, "update_crm_note", {"note": "still"}).status == "pending"
    # and once a second governor approves it
    governance_actions.approve_change_request(change_request_id=cr.pk, user=governor2)
    # Then the same call runs without a human, under version 2
    after = factories.submit(support_agent, "update_crm_note", {"note": "now"})
    assert (after.status, after.reason_code, after.policy_version.number) == (
        "allowed",
        "auto_approved",
        2,
    )
    # requires_approval tools are still never auto-approved
    assert factories.submit(support_agent, "send_email").status == "pending"
    # and the earlier action keeps the version it was decided under
    before.refresh_from_db()
    assert before.policy_version.number == 1


def test_forbid_tool__gate_denies_at_once(support_agent, governor):
    assert (
        factories.submit(support_agent, "get_order_status", {"order_id": "1"}).status == "allowed"
    )
    governance_actions.propose_change(
        agent=support_agent,
        user=governor,
        changes={"tools": {"get_order_status": {"rule": "forbidden"}}},
        reason="leak",
    )
    denied = factories.submit(support_agent, "get_order_status", {"order_id": "1"})
    assert (denied.status, denied.reason_code, denied.policy_version.number) == (
        "denied",
        "tool_forbidden",
        2,
    )


# --- versions, diffs, tokens, registration, shadow labels ----------------------------------


def test_policy_versions__immutable_history_and_diff_between_any_two(
    support_agent, governor, governor2
):
    governance_actions.propose_change(
        agent=support_agent, user=governor, changes={"tools": {"wipe_database": None}}, reason="v2"
    )
    cr = governance_actions.propose_change(
        agent=support_agent,
        user=governor,
        changes={
            "tier": "autonomous",
            "tools": {"search_kb": {"effect": "read", "rule": "allowed"}},
        },
        reason="v3",
    ).change_request
    governance_actions.approve_change_request(change_request_id=cr.pk, user=governor2)
    v1, v2, v3 = PolicyVersion.objects.filter(agent=support_agent).order_by("number")
    assert "wipe_database" in v1.snapshot["tools"]  # old versions stay as they were
    diff = diff_policies(v1.snapshot, v3.snapshot)
    assert (diff["tier"]["before"], diff["tier"]["after"]) == ("supervised", "autonomous")
    assert list(diff["tools"]["added"]) == ["search_kb"]
    assert list(diff["tools"]["removed"]) == ["wipe_database"]
    assert diff["classification"] == "loosening"
    assert (
        diff_policies(v3.snapshot, v2.snapshot)["classification"] == "tightening"
    )  # demote, drop search_kb
    assert diff_policies(v2.snapshot, v1.snapshot)["changes"] == [
        {
            "path": "tools.wipe_database",
            "direction": "loosening",
            "text": "add wipe_database (write, allowed, base risk critical)",
        }
    ]


def test_tokens__issue_shows_once_revoke_applies_at_once_each_a_version(
    support_agent, governor, reviewer
):
    token = governance_actions.issue_token(agent=support_agent, user=governor, name="ci")
    record = AgentToken.objects.get(agent=support_agent, name="ci")
    assert token.startswith("alk_") and record.token_hash != token
    refused(
        "not_governor",
        governance_actions.revoke_token,
        agent=support_agent,
        token_id=record.pk,
        user=reviewer,
    )
    governance_actions.revoke_token(agent=support_agent, token_id=record.pk, user=governor)
    record.refresh_from_db()
    assert record.revoked_at is not None
    support_agent.refresh_from_db()
    assert support_agent.current_policy.number == 3
    verbs = verbs_for(support_agent)
    assert "agent.token_issued" in verbs and "agent.token_revoked" in verbs


def test_register__global_governor_only__bottom_tier_no_tools(
    reference_data, governor, other_agent
):
    owner_of_other = factories.make_user("olga", agent_perms={"rollout.govern_agent": other_agent})
    refused(
        "not_governor",
        governance_actions.register,
        user=owner_of_other,
        slug="new-bot",
        name="New bot",
    )
    agent = governance_actions.register(user=governor, slug="new-bot", name="New bot")
    assert agent.tier.name == "shadow" and not agent.tool_rules.exists()
    assert agent.current_policy.number == 1 and agent.owner == governor
    refused("slug_taken", governance_actions.register, user=governor, slug="new-bot", name="Again")
    refused("invalid", governance_actions.register, user=governor, slug="Bad Slug", name="x")


def test_shadow_label__reviewers_label_shadow_actions_only(
    reference_data, reviewer, reviewer2, governor
):
    agent = factories.make_agent("shadow-bot", tier="shadow")
    shadowed = factories.submit(agent, "update_crm_note", {"note": "x"})
    assert shadowed.status == "shadowed"
    governance_actions.label_shadow_action(
        action_id=shadowed.pk, user=reviewer, label="would_approve"
    )
    governance_actions.label_shadow_action(
        action_id=shadowed.pk, user=reviewer, label="would_reject"
    )  # changed mind
    governance_actions.label_shadow_action(
        action_id=shadowed.pk, user=reviewer2, label="would_approve"
    )
    assert sorted(ShadowLabel.objects.values_list("label", flat=True)) == [
        "would_approve",
        "would_reject",
    ]
    refused(
        "not_reviewer",
        governance_actions.label_shadow_action,
        action_id=shadowed.pk,
        user=governor,
        label="would_approve",
    )
    read = factories.submit(agent, "get_order_status", {"order_id": "1"})
    refused(
        "not_shadowed",
        governance_actions.label_shadow_action,
        action_id=read.pk,
        user=reviewer,
        label="would_approve",
    )
    refused(
        "invalid",
        governance_actions.label_shadow_action,
        action_id=shadowed.pk,
        user=reviewer,
        label="maybe",
    )
    assert verbs_for(agent).count("action.shadow_labelled") == 3
