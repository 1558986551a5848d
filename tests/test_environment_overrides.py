"""Per-environment tool rules and tier: an agent's policy may differ in sandbox, staging and
production. A call is judged by the override of the environment its token is bound to (an
unbound token's declaration chooses nothing: the base policy), on every path (gate, edit, standing approvals, backtest, kept
cases, revert); governance changes overrides under the same four-eyes asymmetry, comparing
what each environment gets before and after."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client

from approvals import actions as approval_actions
from approvals import standing as approvals_standing
from approvals.actions import ActionRefused
from approvals.models import Action
from approvals.selectors import _standing_offer
from governance import actions as governance_actions
from governance import backtest as governance_backtest
from governance import cases as governance_cases
from governance.actions import GovernanceRefused
from rollout.models import EnvironmentOverride
from rollout.policy import GateRequest, assess_edit, effective_snapshot, evaluate
from rollout.policy_diff import (
    LOOSENING,
    TIGHTENING,
    changes_between,
    classify,
    piece_of_snapshot,
    touched_piece,
)
from tests import factories
from tests.test_policy_engine import rule, snapshot, tier_policy

# --- the pure engine ---------------------------------------------------------------------

BASE = snapshot(
    "autonomous",
    {
        "lookup": rule("read"),
        "refund": rule("write", "allowed"),
        "deploy": rule("write", "requires_approval"),
    },
)
ENGINE_POLICY = {
    **BASE,
    "environments": {
        "production": {
            "tier": tier_policy("supervised"),
            "tools": {"deploy": rule("write", "forbidden")},
        },
        "staging": {"tools": {"refund": rule("write", "requires_approval")}},
        "sandbox": {"tools": {"wipe": rule("write", "allowed")}},
    },
}


@pytest.mark.parametrize(
    ("tool", "token_environment", "declared", "outcome", "reason_code"),
    [
        # No override for the call's environment, or no environment at all: the base policy.
        ("refund", "", "", "allowed", "auto_approved"),
        ("refund", "", "dev", "allowed", "auto_approved"),
        ("deploy", "", "", "pending", "requires_approval"),
        ("wipe", "", "", "denied", "tool_unknown"),
        # Production's tier (supervised) replaces autonomous: writes wait for a person.
        ("refund", "production", "", "pending", "tier_requires_approval"),
        ("lookup", "production", "", "allowed", "allowed"),
        # A tool forbidden only in production.
        ("deploy", "production", "", "denied", "tool_forbidden"),
        ("deploy", "staging", "", "pending", "requires_approval"),
        # A tool that requires approval only in staging.
        ("refund", "staging", "", "pending", "requires_approval"),
        # A tool ruled only in sandbox.
        ("wipe", "sandbox", "", "allowed", "auto_approved"),
        ("wipe", "staging", "", "denied", "tool_unknown"),
        ("wipe", "production", "", "denied", "tool_unknown"),
        # Only a token vouches for an environment: an unbound token is judged by the base
        # policy whatever it declares (declaring "sandbox" must not buy sandbox's rules).
        ("deploy", "", "production", "pending", "requires_approval"),
        ("refund", "", "Staging", "allowed", "auto_approved"),
        ("wipe", "", "sandbox", "denied", "tool_unknown"),
        # A bound token is judged by its own, and a different declaration is refused first.
        ("refund", "staging", "production", "denied", "environment_mismatch"),
    ],
)
def test_engine__a_call_is_judged_by_its_environments_override(
    tool, token_environment, declared, outcome, reason_code
):
    radius = {"environment": declared} if declared else {}
    decision = evaluate(ENGINE_POLICY, GateRequest(tool, {}, radius, environment=token_environment))
    assert (decision.outcome, decision.reason_code) == (outcome, reason_code)


def test_effective_snapshot__lays_the_override_over_without_changing_the_snapshot():
    production = effective_snapshot(ENGINE_POLICY, "production")
    assert production["tier"]["name"] == "supervised"
    assert production["tools"]["deploy"]["rule"] == "forbidden"
    assert production["tools"]["refund"] == BASE["tools"]["refund"]
    assert ENGINE_POLICY["tier"]["name"] == "autonomous"  # untouched
    assert effective_snapshot(ENGINE_POLICY, "") is ENGINE_POLICY
    assert effective_snapshot(BASE, "production") is BASE


@pytest.mark.parametrize(
    ("tool", "environment", "declared", "outcome", "reason_code"),
    [
        ("deploy", "", "", "pending", "requires_approval"),
        ("deploy", "production", "", "denied", "tool_forbidden"),
        ("deploy", "", "production", "pending", "requires_approval"),
        ("wipe", "", "sandbox", "denied", "tool_unknown"),
        ("refund", "staging", "", "pending", "requires_approval"),
        ("refund", "production", "", "pending", "tier_requires_approval"),
        ("wipe", "sandbox", "", "pending", "edit_requires_approval"),
        ("wipe", "", "", "denied", "tool_unknown"),
    ],
)
def test_assess_edit__judges_an_edit_by_the_actions_environment(
    tool, environment, declared, outcome, reason_code
):
    radius = {"environment": declared} if declared else {}
    decision = assess_edit(ENGINE_POLICY, tool, {}, radius, environment)
    assert (decision.outcome, decision.reason_code) == (outcome, reason_code)


# --- classification ----------------------------------------------------------------------

CLASSIFY_BASE = {
    "tier": tier_policy("supervised"),
    "tools": {"refund": rule("write", "allowed"), "lookup": rule("read")},
    "environments": {"production": {"tools": {"lookup": rule("read", "forbidden")}}},
}


def _classified(change: dict) -> tuple[str, list[str]]:
    before = touched_piece(CLASSIFY_BASE, change)
    found = changes_between(before, change)
    return classify(found), [item.text for item in found]


@pytest.mark.parametrize(
    ("change", "expected", "text"),
    [
        # Stricter than what production gets now: tightening, applies at once.
        (
            {"environments": {"production": {"tools": {"refund": rule("write", "forbidden")}}}},
            TIGHTENING,
            "production: refund: rule allowed → forbidden",
        ),
        (
            {"environments": {"staging": {"tier": tier_policy("draft_only")}}},
            TIGHTENING,
            "staging: demote supervised → draft_only",
        ),
        # Looser than what the environment gets now: a change request.
        (
            {"environments": {"staging": {"tier": tier_policy("autonomous")}}},
            LOOSENING,
            "staging: promote supervised → autonomous",
        ),
        (
            {"environments": {"sandbox": {"tools": {"wipe": rule("write", "allowed")}}}},
            LOOSENING,
            "sandbox: add wipe (write, allowed, base risk low)",
        ),
        # Clearing a stricter override gives the environment the base rule back: loosening.
        (
            {"environments": {"production": {"tools": {"lookup": None}}}},
            LOOSENING,
            "production: lookup: rule forbidden → allowed",
        ),
    ],
)
def test_classification__an_override_is_judged_by_what_its_environment_gets(change, expected, text):
    classification, texts = _classified(change)
    assert classification == expected
    assert texts == [text]


def test_classification__an_override_equal_to_what_the_environment_gets_changes_nothing():
    change = {"environments": {"staging": {"tools": {"refund": rule("write", "allowed")}}}}
    assert _classified(change)[0] == "no_change"


def test_classification__mixed_override_change_splits_its_tightening_part():
    change = {
        "environments": {
            "production": {
                "tier": tier_policy("read_only"),
                "tools": {"lookup": None},
            }
        }
    }
    before = touched_piece(CLASSIFY_BASE, change)
    assert classify(changes_between(before, change)) == LOOSENING
    tightening, rest = governance_actions.split_tightening(before, change)
    assert tightening == {"environments": {"production": {"tier": tier_policy("read_only")}}}
    assert rest == {"environments": {"production": {"tools": {"lookup": None}}}}


# --- governance end to end ----------------------------------------------------------------


@pytest.fixture
def gwen(reference_data):
    return factories.make_user("gwen", groups=("governance_owner",))


@pytest.fixture
def gus(reference_data):
    return factories.make_user("gus", groups=("governance_owner",))


def _propose(agent, user, environments: dict, **extra):
    return governance_actions.propose_change(
        agent=agent, user=user, changes={"environments": environments}, reason="env", **extra
    )


def _submit(client: Client, token: str, tool: str, arguments: dict, **body):
    response = client.post(
        "/api/v1/actions",
        json.dumps({"tool": tool, "arguments": arguments, **body}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
    )
    assert response.status_code in (200, 201, 202), response.content
    return response.json()


@pytest.mark.django_db
def test_api__production_forbids_what_staging_allows__through_environment_bound_tokens(
    support_agent, gwen, gus
):
    # Given update_crm_note is allowed for the agent, forbidden in production by a
    # tightening that applies at once,
    result = _propose(
        support_agent, gwen, {"production": {"tools": {"update_crm_note": {"rule": "forbidden"}}}}
    )
    assert result.applied and result.classification == TIGHTENING
    assert [change.text for change in result.changes] == [
        "production: update_crm_note: rule allowed → forbidden"
    ]
    client = Client()
    production = factories.make_token(support_agent, environment="production")
    staging = factories.make_token(support_agent, environment="staging")
    # then a production token is refused and a staging token is not.
    note = {"note": "hi"}
    assert _submit(client, production, "update_crm_note", note)["reason_code"] == ("tool_forbidden")
    assert _submit(client, staging, "update_crm_note", note)["status"] == "pending"
    # A looser override (allow a write tool only in sandbox) waits for another owner.
    result = _propose(
        support_agent,
        gwen,
        {"sandbox": {"tools": {"sandbox_reset": {"effect": "write", "rule": "allowed"}}}},
    )
    assert result.change_request is not None and result.classification == LOOSENING
    sandbox = factories.make_token(support_agent, environment="sandbox")
    assert _submit(client, sandbox, "sandbox_reset", {})["reason_code"] == "tool_unknown"
    # (the request's stored change reads back as the same proposal: its edit form's JSON)
    stored = result.change_request.after
    again = governance_actions.proposal_as_input(stored)
    assert governance_actions.preview_change(agent=support_agent, changes=again).after == stored
    governance_actions.approve_change_request(change_request_id=result.change_request.pk, user=gus)
    assert _submit(client, sandbox, "sandbox_reset", {})["reason_code"] == "tier_requires_approval"
    assert _submit(client, staging, "sandbox_reset", {})["reason_code"] == "tool_unknown"
    # The policy version records the overrides, and the API shows them.
    support_agent.refresh_from_db()
    snapshot_now = support_agent.current_policy.snapshot
    assert set(snapshot_now["environments"]) == {"production", "sandbox"}


@pytest.mark.django_db
def test_reviewer_edit__is_held_to_the_production_override(support_agent, gwen, reviewer):
    # Given production limits send_email to the company's domain (a tightening),
    limit = [{"field": "to", "op": "matches", "value": r".*@example\.com"}]
    _propose(
        support_agent, gwen, {"production": {"tools": {"send_email": {"argument_limits": limit}}}}
    )
    production = factories.make_token(support_agent, environment="production")
    staging = factories.make_token(support_agent, environment="staging")
    client = Client()
    prod_mail = _submit(client, production, "send_email", {"to": "a@example.com"})
    stage_mail = _submit(client, staging, "send_email", {"to": "a@example.com"})
    # an edit sending the production mail elsewhere is refused; in staging it stands.
    with pytest.raises(ActionRefused) as refused:
        approval_actions.approve(
            action_id=prod_mail["id"], user=reviewer, arguments={"to": "x@elsewhere.org"}
        )
    assert refused.value.code == "argument_limit"
    approved = approval_actions.approve(
        action_id=stage_mail["id"], user=reviewer, arguments={"to": "x@elsewhere.org"}
    )
    assert approved.arguments == {"to": "x@elsewhere.org"}


@pytest.mark.django_db
def test_invalid_override__400_field_errors_and_nothing_written(support_agent, gwen):
    cases = [
        ({"moon": {"tier": "supervised"}}, "environments.moon"),
        ({"production": {"tier": "godmode"}}, "environments.production.tier"),
        (
            {"production": {"tools": {"send_email": {"rule": "sometimes"}}}},
            "environments.production.tools.send_email.rule",
        ),
        ({"production": {"colour": "red"}}, "environments.production.colour"),
        ({"production": {}}, "environments.production"),
    ]
    for environments, field in cases:
        with pytest.raises(GovernanceRefused) as refused:
            _propose(support_agent, gwen, environments)
        assert refused.value.code == "invalid" and field in refused.value.fields, field
    assert not EnvironmentOverride.objects.filter(agent=support_agent).exists()
    assert support_agent.policy_versions.count() == 1


@pytest.mark.django_db
def test_mixed_override_change__applies_its_tightening_part_now(support_agent, gwen):
    result = _propose(
        support_agent,
        gwen,
        {
            "production": {
                "tier": "read_only",
                "tools": {"sandbox_only": {"effect": "read", "rule": "allowed"}},
            }
        },
        apply_tightening_now=True,
    )
    assert result.change_request is not None and result.policy_version is not None
    assert [change.text for change in result.applied_changes] == [
        "production: demote supervised → read_only"
    ]
    override = EnvironmentOverride.objects.get(agent=support_agent, environment="production")
    assert (override.tier.name, override.tools) == ("read_only", {})


@pytest.mark.django_db
def test_clearing_a_stricter_override__is_a_loosening__and_revert_carries_overrides_back(
    support_agent, gwen, gus
):
    # Given production demoted to read_only (a tightening: version 2),
    applied = _propose(support_agent, gwen, {"production": {"tier": "read_only"}})
    assert applied.applied
    version_two = applied.policy_version
    # when the override is cleared it is a loosening for another owner,
    cleared = _propose(support_agent, gwen, {"production": {"tier": None}})
    assert cleared.classification == LOOSENING
    assert [change.text for change in cleared.changes] == [
        "production: promote read_only → supervised"
    ]
    governance_actions.approve_change_request(change_request_id=cleared.change_request.pk, user=gus)
    assert not EnvironmentOverride.objects.filter(agent=support_agent).exists()
    # and reverting to version 2 proposes the override back (a tightening: at once).
    assert governance_actions.revert_changes(support_agent, version_two) == {
        "environments": {"production": {"tier": "read_only"}}
    }
    governance_actions.revert_to_version(
        agent=support_agent, user=gwen, number=version_two.number, reason=""
    )
    support_agent.refresh_from_db()
    piece = piece_of_snapshot(support_agent.current_policy.snapshot)
    assert piece["environments"]["production"]["tier"]["name"] == "read_only"


@pytest.mark.django_db
def test_standing_bounds__backtest_and_kept_cases_follow_the_environment(
    support_agent, gwen, reviewer
):
    # Given send_email may carry standing approvals only in staging,
    standing = {"allowed": True, "max_minutes": 60, "max_uses": 5, "max_risk": "high"}
    result = _propose(
        support_agent,
        gwen,
        {"staging": {"tools": {"send_email": {"standing": standing}}}},
    )
    governance_actions.approve_change_request(
        change_request_id=result.change_request.pk,
        user=factories.make_user("gus", groups=("governance_owner",)),
    )
    staging_token = factories.make_token(support_agent, environment="staging")
    production_token = factories.make_token(support_agent, environment="production")
    client = Client()
    in_staging = _submit(client, staging_token, "send_email", {"to": "a@example.com"})
    in_production = _submit(client, production_token, "send_email", {"to": "a@example.com"})
    staged = Action.objects.get(pk=in_staging["id"])
    produced = Action.objects.get(pk=in_production["id"])
    assert _standing_offer(staged)["max_uses"] == 5
    assert _standing_offer(produced) is None
    # A standing approval given on the staging call answers the next staging-bound call,
    # never an unbound token's call that declares staging (only a token vouches for it).
    approval_actions.approve(
        action_id=staged.pk,
        user=reviewer,
        seen_hash=staged.payload_hash,
        standing_terms=approvals_standing.Terms(minutes=30, uses=3),
    )
    unbound_token = factories.make_token(support_agent)
    claims_staging = _submit(
        client,
        unbound_token,
        "send_email",
        {"to": "a@example.com"},
        blast_radius={"environment": "staging"},
    )
    assert (claims_staging["status"], claims_staging["reason_code"]) != (
        "approved",
        "standing_approval",
    )
    bound = _submit(client, staging_token, "send_email", {"to": "a@example.com"})
    assert (bound["status"], bound["reason_code"]) == ("approved", "standing_approval")
    # Only a staging-bound token of the agent reads it through the agent API.
    url = bound["links"]["standing_approval"]
    for token, status in ((staging_token, 200), (production_token, 404), (unbound_token, 404)):
        assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == status
    # The backtest and a kept case replay each call under its own environment's policy:
    # forbidding send_email in production changes the production call only.
    after = {"environments": {"production": {"tools": {"send_email": {"rule": "forbidden"}}}}}
    piece = governance_actions.preview_change(agent=support_agent, changes=after).after
    delta = governance_backtest.backtest_delta(support_agent, piece, days=1)
    assert [(row.action_id, row.proposed) for row in delta.examples] == [(produced.pk, "denied")]
    case = governance_cases.keep_case(
        action_id=produced.pk, user=gwen, expected="pending", note="prod email"
    )
    report = governance_cases.replay_change(support_agent, piece)
    assert [(row.case.pk, row.proposed) for row in report.changed] == [(case.pk, "denied")]


# --- pages -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_pages__governor_sets_and_clears_overrides_through_preview_and_propose(
    support_agent, gwen, gus
):
    client = Client()
    client.force_login(gwen)
    policy_page = f"/agents/{support_agent.slug}/policy"
    assert "None: every environment has the agent" in client.get(policy_page).content.decode()
    # Production's tier: the preview says what would change and writes nothing,
    tier_url = f"/agents/{support_agent.slug}/environments/tier"
    body = {"environment": "production", "tier": "read_only", "reason": "prod is fragile"}
    preview = client.post(tier_url, {**body, "step": "preview"})
    assert "production: demote supervised → read_only" in preview.content.decode()
    assert not EnvironmentOverride.objects.exists()
    # proposing applies it at once (a tightening) and the policy page lists it.
    assert client.post(tier_url, {**body, "step": "propose"}).status_code == 302
    page = client.get(policy_page).content.decode()
    assert 'data-testid="environment-tier">read_only<' in page
    # A tool ruled only in sandbox: the rule form with an environment, a change request.
    rule_url = f"/agents/{support_agent.slug}/environments/rule"
    assert client.get(rule_url).status_code == 200
    rule_body = {
        "environment": "sandbox",
        "tool": "reset_fixtures",
        "effect": "write",
        "rule": "allowed",
        "base_risk": "low",
        "reason": "sandbox only",
        "step": "propose",
    }
    response = client.post(rule_url, rule_body)
    assert response.status_code == 302 and response["Location"].startswith("/changes/")
    # The form starts from what a call there gets now.
    prefilled = client.get(rule_url, {"environment": "production", "tool": "send_email"})
    assert "Now in production: write, requires_approval" in prefilled.content.decode()
    # Overriding send_email in production marks its row in the agent's own rules.
    forbid = {**rule_body, "environment": "production", "tool": "send_email"}
    forbid.update(rule="forbidden", base_risk="medium", reason="no prod mail")
    assert client.post(rule_url, forbid)["Location"] == policy_page
    page = client.get(policy_page).content.decode()
    assert 'data-testid="overridden-in">differs in production<' in page
    # Clearing production's tier gives it the agent's own back: a loosening, a request.
    cleared = client.post(
        tier_url, {"environment": "production", "tier": "", "reason": "x", "step": "propose"}
    )
    assert cleared["Location"].startswith("/changes/")
    assert EnvironmentOverride.objects.get(environment="production").tier.name == "read_only"
    # A bad environment is a clear message on the policy page, nothing written.
    refused = client.post(tier_url, {**body, "environment": "moon"}, follow=True)
    assert "moon" in refused.content.decode()
    assert EnvironmentOverride.objects.count() == 1
