"""Regression cases: people keep a request from an action's trace or a kill switch's page
with the answer they expect; it is stored masked as the audit export masks it, replayed
against the agent's current policy (its page, ``manage.py policy_cases``) and against every
change request's proposal (its preview and its page list the cases it would flip)."""

from __future__ import annotations

import copy
import re

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from approvals.actions import submit_action
from audit import verbs
from audit.chain import Actor
from audit.models import AuditEvent
from governance import actions as governance_actions
from governance import cases
from governance.backtest import snapshot_with
from governance.models import RegressionCase
from incidents.actions import engage_kill_switch
from rollout.models import Tier
from rollout.snapshots import build_snapshot
from tests import factories

# send_email waits for a human today; this loosening lets it run on its own.
LET_EMAIL_RUN = {"tools": {"send_email": {"rule": "allowed", "base_risk": "low"}}}
SECRET_ARGUMENTS = {
    "to": "a@example.com",
    "api_key": "sk-live-123456",
    "card": {"card_number": "4111111111111111", "holder": "Ann"},
}


@pytest.fixture
def governor(reference_data):
    # The trace is for reviewers and auditors: a governor who audits too keeps from it.
    return factories.make_user("gwen", groups=("governance_owner", "auditor"))


@pytest.fixture
def mail_agent(reference_data):
    # Autonomous: low-risk writes run on their own, so a rule change alone lets mail run.
    return factories.make_agent("mail-agent", tier="autonomous")


@pytest.fixture
def second_governor(reference_data):
    return factories.make_user("gus", groups=("governance_owner",))


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def keep(client: Client, action, **fields):
    return client.post(
        f"/agents/{action.agent.slug}/cases/keep",
        {"action_id": action.pk, "next": f"/audit/actions/{action.pk}", **fields},
    )


def written() -> tuple[int, int]:
    return AuditEvent.objects.count(), RegressionCase.objects.count()


def test_keep_from_trace__stores_request_masked_as_the_export__audited(support_agent, governor):
    # Given an action whose arguments hold a secret-looking key and a configured card path
    action = factories.submit(support_agent, "send_email", SECRET_ARGUMENTS)
    client = logged_in(governor)
    trace = client.get(f"/audit/actions/{action.pk}").content.decode()
    assert f'action="/agents/{support_agent.slug}/cases/keep"' in trace
    # When the governor keeps it with the default expectation
    response = keep(client, action, expected="", note="mail must wait")
    # Then it is case #n, expecting what the gate did (wait for a human), stored masked
    case = RegressionCase.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/agents/{support_agent.slug}/cases#case-{case.pk}"
    assert case.expected == "pending" and case.note == "mail must wait"
    assert case.arguments == {
        "to": "a@example.com",
        "api_key": "[redacted]",
        "card": {"card_number": "[masked]", "holder": "Ann"},
    }
    assert "sk-live" not in str(case.__dict__) and "4111" not in str(case.__dict__)
    event = AuditEvent.objects.filter(verb=verbs.CASE_KEPT).get()
    assert event.target_id == str(case.pk) and event.actor == governor.username
    assert event.data["action"] == action.pk and event.data["expected"] == "pending"
    # And its page lists it with today's answer, as expected
    page = client.get(f"/agents/{support_agent.slug}/cases").content.decode()
    assert f'id="case-{case.pk}"' in page and 'data-differs="false"' in page
    assert "[masked]" in page and "4111" not in page
    # And the trace now says it is kept, instead of offering to keep it again
    trace = client.get(f"/audit/actions/{action.pk}").content.decode()
    assert f"regression case #{case.pk}" in trace
    assert f'action="/agents/{support_agent.slug}/cases/keep"' not in trace


def test_keep_from_trace__not_a_governor__refused_and_no_form(support_agent, auditor):
    action = factories.submit(support_agent, "send_email")
    client = logged_in(auditor)
    assert "cases/keep" not in client.get(f"/audit/actions/{action.pk}").content.decode()
    before = written()
    assert keep(client, action).status_code == 403
    assert written()[1] == before[1] == 0
    assert not AuditEvent.objects.filter(verb=verbs.CASE_KEPT).exists()


def test_keep__bad_input__clear_refusal_nothing_written(support_agent, governor):
    action = factories.submit(support_agent, "send_email")
    # A bad expectation: a form error, nothing written
    with pytest.raises(cases.CaseRefused) as refused:
        cases.keep_case(action_id=action.pk, user=governor, expected="maybe")
    assert refused.value.status == 400 and "expected" in refused.value.fields
    client = logged_in(governor)
    response = keep(client, action, expected="maybe")
    assert response.status_code == 302 and response["Location"] == f"/audit/actions/{action.pk}"
    assert written()[1] == 0
    # A second case of the same action: refused as already kept
    cases.keep_case(action_id=action.pk, user=governor)
    with pytest.raises(cases.CaseRefused) as again:
        cases.keep_case(action_id=action.pk, user=governor, expected="denied")
    assert again.value.code == "already_kept"
    assert RegressionCase.objects.count() == 1


def test_keep_from_incident__incident_owner_keeps_what_the_switch_stopped(
    support_agent, incident_owner
):
    # Given a switch that cancelled a pending email, and an email sent after it was released
    stopped = factories.submit(support_agent, "send_email", {"to": "x@example.com"})
    switch = engage_kill_switch(
        scope="agent",
        target=support_agent.slug,
        reason="mail storm",
        actor=Actor.user(incident_owner),
    )
    stopped.refresh_from_db()
    assert stopped.status == "cancelled"
    client = logged_in(incident_owner)
    page = client.get(f"/incidents/{switch.pk}").content.decode()
    assert f'data-action-id="{stopped.pk}"' in page
    assert f'name="switch_id" value="{switch.pk}"' in page
    assert '<option value="denied" selected>' in page
    # When the incident owner keeps it from the switch's page (the default: denied)
    response = client.post(
        f"/agents/{support_agent.slug}/cases/keep",
        {"action_id": stopped.pk, "switch_id": switch.pk, "expected": "denied"},
    )
    # Then it is kept, from that switch, expecting it not to run
    case = RegressionCase.objects.get()
    assert response.status_code == 302
    assert case.source_switch_id == switch.pk and case.expected == "denied"
    assert case.kept_by == incident_owner
    # But without the switch (the trace's way) an incident owner may not keep a case
    other = factories.submit(support_agent, "get_order_status", {"order_id": "1"})
    assert keep(client, other).status_code == 403
    # Nor name a switch that did not stop the action
    with pytest.raises(cases.CaseRefused) as refused:
        cases.keep_case(action_id=other.pk, user=incident_owner, switch_id=switch.pk)
    assert refused.value.code == "not_stopped_by_switch" and "switch_id" in refused.value.fields
    assert RegressionCase.objects.count() == 1


def test_kept_case__flips_under_a_loosening__listed_on_its_preview_and_request(
    mail_agent, governor, second_governor
):
    # Given a kept case: people expect send_email to wait for a human
    action = factories.submit(mail_agent, "send_email")
    case = cases.keep_case(action_id=action.pk, user=governor, expected="pending")
    client = logged_in(governor)
    # When a governor previews a loosening that lets send_email run on its own
    preview = client.post(
        f"/agents/{mail_agent.slug}/rules/edit/send_email",
        {"effect": "write", "rule": "allowed", "base_risk": "low", "reason": "trust it",
         "step": "preview"},
    ).content.decode()  # fmt: skip
    # Then the preview lists the case it would flip, against expectation
    flips = preview[preview.index('data-testid="case-flips"') :]
    assert f'data-case-id="{case.pk}" data-differs="true"' in flips
    assert re.search(r"<td>waits for a human</td>\s*<td>runs without a human", flips)
    # And so does the change request it becomes
    request = governance_actions.propose_change(
        agent=mail_agent, user=second_governor, changes=LET_EMAIL_RUN, reason="trust it"
    ).change_request
    detail = client.get(f"/changes/{request.pk}").content.decode()
    assert f'data-case-id="{case.pk}" data-differs="true"' in detail
    report = cases.replay_change(mail_agent, request.after)
    assert [(r.case.pk, r.now, r.proposed, r.changed, r.differs) for r in report.rows] == [
        (case.pk, "pending", "allowed", True, True)
    ]


def test_change_that_flips_nothing__says_how_many_cases_were_checked(support_agent, governor):
    action = factories.submit(support_agent, "send_email")
    cases.keep_case(action_id=action.pk, user=governor)
    request = governance_actions.propose_change(
        agent=support_agent,
        user=governor,
        changes={"tools": {"lookup_faq": {"effect": "read", "rule": "allowed"}}},
        reason="a new read tool",
    ).change_request
    detail = logged_in(governor).get(f"/changes/{request.pk}").content.decode()
    assert (
        "s 1 kept case would be answered differently." in detail and "None of the agent" in detail
    )


def test_policy_cases_command__table_and_exit_code(mail_agent, governor, second_governor, capsys):
    email = factories.submit(mail_agent, "send_email")
    lookup = factories.submit(mail_agent, "get_order_status", {"order_id": "7"})
    cases.keep_case(action_id=email.pk, user=governor)  # pending, as expected
    cases.keep_case(action_id=lookup.pk, user=governor, expected="allowed")
    # Today every case is answered as expected: exit 0
    call_command("policy_cases", "--agent", mail_agent.slug)
    out = capsys.readouterr().out
    assert re.search(r"mail-agent\s+#\d+\s+send_email\s+pending\s+pending\s+ok", out)
    assert "2 cases checked, 0 not as expected." in out
    # Against a loosening that lets send_email run: the case is listed and the exit is 1
    request = governance_actions.propose_change(
        agent=mail_agent, user=second_governor, changes=LET_EMAIL_RUN, reason="trust it"
    ).change_request
    with pytest.raises(CommandError) as failed:
        call_command("policy_cases", "--change-request", str(request.pk))
    assert failed.value.returncode == 1
    out = capsys.readouterr().out
    assert re.search(r"send_email\s+pending\s+pending\s+allowed\s+yes\s+NOT AS EXPECTED", out)
    assert re.search(r"get_order_status\s+allowed\s+allowed\s+allowed\s+no\s+ok", out)
    assert "2 cases checked, 1 not as expected." in out
    # Bad arguments: exit 2
    with pytest.raises(CommandError) as bad:
        call_command("policy_cases", "--agent", "nobody")
    assert bad.value.returncode == 2


def test_retire__governor_retires_audited__others_refused(support_agent, governor, reviewer):
    action = factories.submit(support_agent, "send_email")
    case = cases.keep_case(action_id=action.pk, user=governor)
    url = f"/agents/{support_agent.slug}/cases/{case.pk}/retire"
    assert logged_in(reviewer).post(url).status_code in (403, 404)
    assert RegressionCase.objects.filter(pk=case.pk).exists()
    response = logged_in(governor).post(url)
    assert response.status_code == 302
    assert not RegressionCase.objects.filter(pk=case.pk).exists()
    event = AuditEvent.objects.filter(verb=verbs.CASE_RETIRED).get()
    assert event.target_id == str(case.pk) and event.data["action"] == action.pk


def test_replay_cases__pure__shadowed_counts_as_not_run(support_agent, governor):
    action = factories.submit(support_agent, "send_email")
    case = cases.keep_case(action_id=action.pk, user=governor, expected="denied")
    snapshot = build_snapshot(support_agent)
    shadow = {"tier": Tier.objects.get(name="shadow").as_policy()}
    # When replayed under a shadow tier (recorded, never executed)
    report = cases.replay_cases([case], snapshot, snapshot_with(snapshot, shadow))
    # Then today it waits for a human (not as expected); in shadow it does not run (as expected)
    row = report.rows[0]
    assert (row.now, row.proposed, row.changed, row.differs) == ("pending", "denied", True, False)
    assert report.changed == [row] and report.differing == []


def test_replay_cases__weighs_the_stated_confidence_in_the_tokens_environment(
    support_agent, governor
):
    # Given a staging call that stated confidence 0.5, kept expecting it to wait for a human
    action = submit_action(
        agent=support_agent,
        idempotency_key="conf-1",
        body={
            "tool": "get_order_status",
            "arguments": {"order_id": "A-1"},
            "rationale": {"confidence": 0.5},
        },
        environment="staging",
    ).action
    case = cases.keep_case(action_id=action.pk, user=governor, expected="pending")
    assert case.environment == "staging"
    assert case.blast_radius["environment"] == "staging"
    snapshot = build_snapshot(support_agent)
    guarded = copy.deepcopy(snapshot)
    guarded["tools"]["get_order_status"]["min_confidence"] = 0.8
    # When replayed under a minimum confidence above what it stated, and without one
    report = cases.replay_cases([case], guarded, snapshot)
    # Then the minimum holds it for a person (as expected); dropping it lets it run
    row = report.rows[0]
    assert (row.now, row.now_reason) == ("pending", "low_confidence")
    assert (row.proposed, row.differs) == ("allowed", True)
