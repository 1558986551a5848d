"""No one where they don't belong: a generated authorization matrix.

Every URL of the URLconf (walked with ``get_resolver``, namespaces included) and every
operation of the OpenAPI schema (drf-spectacular's ``SchemaGenerator``) must have a row in
``MATRIX`` below; a new URL or API operation without one fails
``test_every_url_has_an_expectation`` / ``test_every_schema_operation_is_in_the_matrix``.

Each row is asked of every role; ``test_matrix`` makes the requests (Django's test client,
no server) and compares. The world (``tests/authz_support.py``) has two agents: the *own*
agent ``alpha-agent`` — the agent token and every ``…_a`` role belong to it — and the
*other* agent ``bravo-agent``. A cell ``A/B`` is the answer for the own agent's object and
for the other agent's; a single value holds for both. Roles holding a right for all agents
(and anonymous, disabled, personal tokens) are asked about the own agent's objects.

Roles (``rollout/permissions.py``, DESIGN.md "People and machines"):
  anonymous   no credential
  agent       alpha-agent's bearer token
  reviewer    group ``reviewer`` (every agent)      reviewer_a   review right on alpha only
  critical    reviewer + critical approval
  governor    group ``governance_owner``            governor_a   govern right on alpha only;
                                                                 wrote alpha's change request
  incident    group ``incident_owner``              incident_a   kill right on alpha only
  auditor     group ``auditor``                     auditor_a    audit right on alpha only
  disabled    held every role and superuser, logged in, then disabled
  superuser   Django superuser (bound by separation of duties: never approves what they wrote)
  pat_all     personal token with every scope, of a person holding all four roles
  pat_decide  the same person's token with scope ``decide`` only
  pat_audit   the same person's token with scope ``read_audit`` only

Cells: a status code, ``login`` (a redirect to the login page) or ``302`` (any other
redirect: a form that did its work). Beyond the status, every request is checked for:
a refusal (401/403/404/login) writes nothing (no audit event, no queued drill) but its
own trace: exactly one ``access.refused`` event for a 403 to someone signed in, none for
401/login, at most one for a 404 (another agent's object: ``audit.refusals``), none for
an answer that is not a refusal; a
response to an alpha-only credential never contains the other agent's slug or text; and
no response shows an action's text to someone who may not read actions, nor a change
request's to someone who may not read governance (``NOT_SHOWN``), nor any credential
(bearer tokens and webhook secrets are shown once, when issued).

Also proved here: the table itself keeps the promises (agent tokens reach only their own
agent's gate endpoints, other agents' objects are 404, anonymous is 401 on the API and
sent to the login page, a disabled account is anonymous, personal tokens open no page);
unsafe methods need a CSRF token; and writable endpoints refuse (API: 400 ``invalid``) or
ignore (forms) server-owned fields, the database keeping the server's values."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.crypto import get_random_string
from drf_spectacular.generators import SchemaGenerator

from accounts.models import DesktopNotificationChoice, HomeChoice, PersonalToken
from approvals.models import Action
from audit import verbs
from audit.canonical import payload_hash
from audit.models import AuditEvent, VerificationJob
from governance.models import ChangeRequest, RegressionCase, ShadowLabel
from rollout.models import Agent, AgentToken, EnvironmentOverride, KillSwitch
from slack_approvals.models import SlackAccount
from tests import authz_support as az
from tests.authz_support import OPS, OTHER, OWN, Op, World

ROLES = (
    "anonymous",
    "agent",
    "reviewer",
    "reviewer_a",
    "critical",
    "governor",
    "governor_a",
    "incident",
    "incident_a",
    "auditor",
    "auditor_a",
    "disabled",
    "superuser",
    "pat_all",
    "pat_decide",
    "pat_audit",
)
# Credentials that hold a right on the own agent only: asked about both agents' objects.
PER_AGENT_ROLES = frozenset({"agent", "reviewer_a", "governor_a", "incident_a", "auditor_a"})
SESSION_ROLES = tuple(r for r in ROLES if r not in {"anonymous", "agent"} and "pat" not in r)
# The agent's own API: the only endpoints an agent token may reach.
GATE = frozenset(
    {
        "api-action-submit",
        "api-action-detail",
        "api-action-execution",
        "api-action-withdraw",
        "api-action-heartbeat",
        "api-standing-detail",
        "api-action-rollback",
    }
)

# The policy. Columns are ROLES in order; "own/other" where they differ.
MATRIX = """
name                             method anonymous agent   reviewer reviewer_a critical governor governor_a incident incident_a auditor auditor_a disabled superuser pat_all pat_decide pat_audit
# --- infrastructure and login (public by design; /metrics is for the scraper or staff)
healthz                          GET    200       200     200      200        200      200      200        200      200        200     200       200      200       200     200        200
readyz                           GET    200       200     200      200        200      200      200        200      200        200     200       200      200       200     200        200
grants:key-set                   GET    200       200     200      200        200      200      200        200      200        200     200       200      200       200     200        200
metrics                          GET    403       403     403      403        403      403      403        403      403        403     403       403      200       403     403        403
api-schema                       GET    200       200     200      200        200      200      200        200      200        200     200       200      200       200     200        200
api-docs                         GET    200       200     200      200        200      200      200        200      200        200     200       200      200       200     200        200
login                            GET    200       200     200      200        200      200      200        200      200        200     200       200      200       200     200        200
admin-login-redirect             GET    login     login   login    login      login    login    login      login    login      login   login     login    login     login   login      login
admin:index                      GET    login     login   login    login      login    login    login      login    login      login   login     login    200       login   login      login
login-verify                     GET    login     login   login    login      login    login    login      login    login      login   login     login    login     login   login      login
login-verify                     POST   login     login   login    login      login    login    login      login    login      login   login     login    login     login   login      login
login-enrol                      GET    login     login   login    login      login    login    login      login    login      login   login     login    login     login   login      login
login-enrol                      POST   login     login   login    login      login    login    login      login    login      login   login     login    login     login   login      login
logout                           POST   login     login   login    login      login    login    login      login    login      login   login     login    login     login   login      login
# --- a person's own account; People is for superusers and auth.change_user
two-factor                       GET    login     login   200      200        200      200      200        200      200        200     200       login    200       login   login      login
two-factor                       POST   login     login   200      200        200      200      200        200      200        200     200       login    200       login   login      login
step-up                          GET    login     login   200      200        200      200      200        200      200        200     200       login    200       login   login      login
step-up                          POST   login     login   302      302        302      302      302        302      302        302     302       login    302       login   login      login
profile                          GET    login     login   200      200        200      200      200        200      200        200     200       login    200       login   login      login
personal-token-create            POST   login     login   200      200        200      200      200        200      200        200     200       login    200       login   login      login
personal-token-revoke            POST   login     login   404      302/404    404      404      404        404      404        404     404       login    404       login   login      login
people                           GET    login     login   403      403        403      403      403        403      403        403     403       login    200       login   login      login
person-disable                   POST   login     login   403      403        403      403      403        403      403        403     403       login    302       login   login      login
person-enable                    POST   login     login   403      403        403      403      403        403      403        403     403       login    302       login   login      login
# --- Slack: its requests carry Slack's signature (401 without, whoever sends them); a person
#     links a Slack identity (a signed link, the password again), unlinks it and sets a threshold
slack-interactivity              POST   401       401     401      401        401      401      401        401      401        401     401       401      401       401     401        401
slack-command                    POST   401       401     401      401        401      401      401        401      401        401     401       401      401       401     401        401
slack-link                       POST   login     login   302      302        302      302      302        302      302        302     302       login    302       login   login      login
slack-unlink                     POST   login     login   302      302        302      302      302        302      302        302     302       login    302       login   login      login
slack-threshold                  POST   login     login   302      302        302      302      302        302      302        302     302       login    302       login   login      login
# --- the dashboard: actions are seen by their reviewers and auditors, decided by reviewers
home                             GET    login     login   200      200        200      302      302        302      302        302     302       login    302       login   login      login
home-choose                      POST   login     login   302      302        302      302      302        302      302        302     302       login    302       login   login      login
desktop-notifications-choose     POST   login     login   302      302        302      302      302        302      302        302     302       login    302       login   login      login
queue                            GET    login     login   200      200        200      200      200        200      200        200     200       login    200       login   login      login
decided                          GET    login     login   200      200        200      200      200        200      200        200     200       login    200       login   login      login
action-detail                    GET    login     login   200      200/404    200      404      404        404      404        200     200/404   login    200       login   login      login
action-approve                   POST   login     login   302      302/404    302      404      404        404      404        403     403/404   login    302       login   login      login
# an email's Approve link, issued to the reviewer: nobody else's session may use it (superuser too)
email-decision                   GET    login     login   200      403        403      403      403        403      403        403     403       login    403       login   login      login
email-decision                   POST   login     login   302      403        403      403      403        403      403        403     403       login    403       login   login      login
action-edit-approve              POST   login     login   302      302/404    302      404      404        404      404        403     403/404   login    302       login   login      login
action-reject                    POST   login     login   302      302/404    302      404      404        404      404        403     403/404   login    302       login   login      login
actions-bulk                     POST   login     login   302      302        302      404      404        404      404        404     404       login    302       login   login      login
action-extend                    POST   login     login   302      302/404    302      404      404        404      404        403     403/404   login    302       login   login      login
action-rollback                  POST   login     login   302      302/404    302      404      404        404      404        403     403/404   login    302       login   login      login
standing-revoke                  POST   login     login   302      302/404    302      404      404        404      404        404     404       login    302       login   login      login
# --- governance pages: any role on an agent shows it; governors change it; change requests are
#     read by governors and auditors, approved by a governor who did not write them
rollout:agent-list               GET    login     login   200      200        200      200      200        200      200        200     200       login    200       login   login      login
rollout:agent-register           GET    login     login   403      403        403      200      403        403      403        403     403       login    200       login   login      login
rollout:agent-register           POST   login     login   403      403        403      302      403        403      403        403     403       login    302       login   login      login
rollout:agent-detail             GET    login     login   200      200/404    200      200      200/404    200      200/404    200     200/404   login    200       login   login      login
rollout:agent-policy             GET    login     login   200      200/404    200      200      200/404    200      200/404    200     200/404   login    200       login   login      login
rollout:agent-access             GET    login     login   200      200/404    200      200      200/404    200      200/404    200     200/404   login    200       login   login      login
rollout:token-issue              GET    login     login   200      200/404    200      200      200/404    200      200/404    200     200/404   login    200       login   login      login
rollout:agent-metrics            GET    login     login   200      200/404    200      200      200/404    200      200/404    200     200/404   login    200       login   login      login
rollout:agent-history            GET    login     login   200      200/404    200      200      200/404    200      200/404    200     200/404   login    200       login   login      login
rollout:agent-tier               POST   login     login   403      403/404    403      302      302/404    403      403/404    403     403/404   login    302       login   login      login
rollout:agent-settings           POST   login     login   403      403/404    403      302      302/404    403      403/404    403     403/404   login    302       login   login      login
rollout:rule-add                 GET    login     login   403      403/404    403      200      200/404    403      403/404    403     403/404   login    200       login   login      login
rollout:rule-add                 POST   login     login   403      403/404    403      302      302/404    403      403/404    403     403/404   login    302       login   login      login
rollout:rule-edit                GET    login     login   403      403/404    403      200      200/404    403      403/404    403     403/404   login    200       login   login      login
rollout:rule-edit                POST   login     login   403      403/404    403      302      302/404    403      403/404    403     403/404   login    302       login   login      login
rollout:rule-remove              POST   login     login   403      403/404    403      302      302/404    403      403/404    403     403/404   login    302       login   login      login
rollout:environment-tier         POST   login     login   403      403/404    403      302      302/404    403      403/404    403     403/404   login    302       login   login      login
rollout:environment-rule         GET    login     login   403      403/404    403      200      200/404    403      403/404    403     403/404   login    200       login   login      login
rollout:environment-rule         POST   login     login   403      403/404    403      302      302/404    403      403/404    403     403/404   login    302       login   login      login
rollout:environment-rule-clear   POST   login     login   403      403/404    403      302      302/404    403      403/404    403     403/404   login    302       login   login      login
rollout:token-issue              POST   login     login   403      403/404    403      200      200/404    403      403/404    403     403/404   login    200       login   login      login
rollout:webhook-secret-rotate    POST   login     login   403      403/404    403      200      200/404    403      403/404    403     403/404   login    200       login   login      login
rollout:token-revoke             POST   login     login   403      403/404    403      302      302/404    403      403/404    403     403/404   login    302       login   login      login
rollout:agent-access             POST   login     login   403      403/404    403      200      200/404    403      403/404    403     403/404   login    200       login   login      login
rollout:version-detail           GET    login     login   200      200/404    200      200      200/404    200      200/404    200     200/404   login    200       login   login      login
rollout:version-revert           POST   login     login   403      403/404    403      302      302/404    403      403/404    403     403/404   login    302       login   login      login
rollout:shadow-actions           GET    login     login   200      200/404    200      200      200/404    200      200/404    200     200/404   login    200       login   login      login
rollout:shadow-label             POST   login     login   302      302/404    302      403      403/404    403      403/404    403     403/404   login    302       login   login      login
rollout:agent-cases              GET    login     login   403      403/404    403      200      200/404    200      200/404    200     200/404   login    200       login   login      login
rollout:case-keep                POST   login     login   403      403/404    403      302      302/404    403      403/404    403     403/404   login    302       login   login      login
rollout:case-retire              POST   login     login   403      403/404    403      302      302/404    403      403/404    403     403/404   login    302       login   login      login
rollout:change-list              GET    login     login   200      200        200      200      200        200      200        200     200       login    200       login   login      login
rollout:change-detail            GET    login     login   404      404        404      200      200/404    404      404        200     200/404   login    200       login   login      login
rollout:change-approve           POST   login     login   404      404        404      302      403/404    404      404        403     403/404   login    302       login   login      login
rollout:change-reject            POST   login     login   404      404        404      302      403/404    404      404        403     403/404   login    302       login   login      login
rollout:change-withdraw          POST   login     login   404      404        404      403      302/404    404      404        403     403/404   login    403       login   login      login
rollout:change-edit              GET    login     login   404      404        404      403      200/404    404      404        403     403/404   login    403       login   login      login
rollout:change-edit              POST   login     login   404      404        404      403      302/404    404      404        403     403/404   login    403       login   login      login
# --- audit pages: the log for auditors (scoped ones see their agents); a trace follows its action
audit-search                     GET    login     login   403      403        403      403      403        403      403        200     200       login    200       login   login      login
audit-export                     GET    login     login   403      403        403      403      403        403      403        200     200       login    200       login   login      login
audit-verification               GET    login     login   403      403        403      403      403        403      403        302     403       login    302       login   login      login
audit-verification               POST   login     login   403      403        403      403      403        403      403        302     403       login    302       login   login      login
audit-action                     GET    login     login   200      200/404    200      404      404        404      404        200     200/404   login    200       login   login      login
audit-policy-version             GET    login     login   200      200/404    200      200      200/404    200      200/404    200     200/404   login    200       login   login      login
# --- incidents: read by whoever may stop some agent and by global auditors; a switch or drill
#     needs the kill right on its agent (global and tool switches: on every agent)
incidents                        GET    login     login   403      403        403      403      403        200      200        200     403       login    200       login   login      login
incident-engage                  POST   login     login   403      403        403      403      403        302      302/403    403     403       login    302       login   login      login
incident-release                 POST   login     login   404      404        404      404      404        302      302/403    403     404       login    302       login   login      login
incident-detail                  GET    login     login   403      403        403      403      403        200      200/404    200     403       login    200       login   login      login
incident-drill                   POST   login     login   403      403/404    403      403      403/404    302      302/404    403     403/404   login    302       login   login      login
# --- the agent API: an agent token reaches its own actions only; people decide
api-action-submit                GET    401       403     200      200        200      200      200        200      200        200     200       401      200       200     200        200
api-action-submit                POST   401       201     403      403        403      403      403        403      403        403     403       401      403       403     403        403
api-action-detail                GET    401       200/404 200      200/404    200      404      404        404      404        200     200/404   401      200       200     200        200
api-action-execution             POST   401       200/404 403      403        403      403      403        403      403        403     403       401      403       403     403        403
api-action-withdraw              POST   401       200/404 403      403        403      403      403        403      403        403     403       401      403       403     403        403
api-action-heartbeat             POST   401       200/404 403      403        403      403      403        403      403        403     403       401      403       403     403        403
api-grant-verify                 POST   401       401       401       401       401       401       401       401       401       401       401       401       401       401       401       401
api-grant-revocations            GET    401       401       401       401       401       401       401       401       401       401       401       401       401       401       401       401
api-action-rollback              POST   401       200/404 403      403        403      403      403        403      403        403     403       401      403       403     403        403
api-action-decisions             POST   401       403     201      201/404    201      404      404        404      404        403     403/404   401      201       201     201        403
api-standing-list                GET    401       403     200      200        200      200      200        200      200        200     200       401      200       200     200        200
api-standing-detail              GET    401       200/404 200      200/404    200      404      404        404      404        200     200/404   401      200       200     200        200
api-standing-revoke              POST   401       403     200      200/404    200      404      404        404      404        404     404       401      200       200     200        403
api-kill-switches                GET    401       403     403      403        403      403      403        200      200        200     403       401      200       200     403        200
api-kill-switches                POST   401       403     403      403        403      403      403        201      201/403    403     403       401      201       201     403        403
api-kill-switch-release          POST   401       403     404      404        404      404      404        200      200/403    403     404       401      200       200     403        403
# --- the governance API
rollout:api-agents               GET    401       403     200      200        200      200      200        200      200        200     200       401      200       200     200        200
rollout:api-agents               POST   401       403     403      403        403      201      403        403      403        403     403       401      201       201     403        403
rollout:api-agent                GET    401       403     200      200/404    200      200      200/404    200      200/404    200     200/404   401      200       200     200        200
rollout:api-agent-changes        GET    401       403     403      403/404    403      200      200/404    403      403/404    200     200/404   401      200       200     403        200
rollout:api-agent-changes        POST   401       403     403      403/404    403      201      201/404    403      403/404    403     403/404   401      201       201     403        403
rollout:api-agent-versions       GET    401       403     200      200/404    200      200      200/404    200      200/404    200     200/404   401      200       200     200        200
rollout:api-agent-version        GET    401       403     200      200/404    200      200      200/404    200      200/404    200     200/404   401      200       200     200        200
rollout:api-agent-version-revert POST   401       403     403      403/404    403      201      201/404    403      403/404    403     403/404   401      201       201     403        403
rollout:api-agent-diff           GET    401       403     200      200/404    200      200      200/404    200      200/404    200     200/404   401      200       200     200        200
rollout:api-agent-readiness      GET    401       403     200      200/404    200      200      200/404    200      200/404    200     200/404   401      200       200     200        200
rollout:api-agent-backtest       POST   401       403     200      200/404    200      200      200/404    200      200/404    200     200/404   401      200       200     200        200
rollout:api-agent-tokens         GET    401       403     200      200/404    200      200      200/404    200      200/404    200     200/404   401      200       200     200        200
rollout:api-agent-tokens         POST   401       403     403      403/404    403      201      201/404    403      403/404    403     403/404   401      201       201     403        403
rollout:api-agent-token-revoke   POST   401       403     403      403/404    403      200      200/404    403      403/404    403     403/404   401      200       200     403        403
rollout:api-agent-webhook-secret POST   401       403     403      403/404    403      200      200/404    403      403/404    403     403/404   401      200       200     403        403
rollout:api-agent-shadow-labels  POST   401       403     201      201/404    201      403      403/404    403      403/404    403     403/404   401      201       201     201        403
rollout:api-changes              GET    401       403     200      200        200      200      200        200      200        200     200       401      200       200     200        200
rollout:api-change               GET    401       403     404      404        404      200      200/404    404      404        200     200/404   401      200       200     404        200
rollout:api-change               PATCH  401       403     404      404        404      403      200/404    404      404        403     403/404   401      403       403     403        403
rollout:api-change-approve       POST   401       403     404      404        404      200      403/404    404      404        403     403/404   401      200       200     403        403
rollout:api-change-reject        POST   401       403     404      404        404      200      403/404    404      404        403     403/404   401      200       200     403        403
rollout:api-change-withdraw      POST   401       403     404      404        404      403      200/404    404      404        403     403/404   401      403       403     403        403
# --- the audit API
api-audit-events                 GET    401       403     403      403        403      403      403        403      403        200     200       401      200       200     403        200
api-audit-event                  GET    401       403     403      403        403      403      403        403      403        200     200/404   401      200       200     403        200
api-audit-export                 GET    401       403     403      403        403      403      403        403      403        200     200       401      200       200     403        200
api-audit-status                 GET    401       403     403      403        403      403      403        403      403        200     403       401      200       200     403        200
api-audit-verbs                  GET    401       403     403      403        403      403      403        403      403        200     200       401      200       200     403        200
api-audit-trace                  GET    401       403     200      200/404    200      404      404        404      404        200     200/404   401      200       200     200        200
api-audit-replay                 GET    401       403     200      200/404    200      404      404        404      404        200     200/404   401      200       200     200        200
"""

DENIED = frozenset({"401", "403", "404", "login"})
# Beyond the other agent's data (never shown to a per-agent role), what each role must
# never be shown anywhere: the own agent's action to those who may not read actions, its
# change request to those who may not read its governance.
NOT_SHOWN = {
    "governor": (az.ACTION_TEXT,),
    "governor_a": (az.ACTION_TEXT,),
    "incident": (az.ACTION_TEXT, az.CHANGE_TEXT),
    "incident_a": (az.ACTION_TEXT, az.CHANGE_TEXT),
    "reviewer": (az.CHANGE_TEXT,),
    "reviewer_a": (az.CHANGE_TEXT,),
    "critical": (az.CHANGE_TEXT,),
    "pat_decide": (az.CHANGE_TEXT,),
    "agent": (az.CHANGE_TEXT,),
}


def _success(cell: str) -> bool:
    return cell not in DENIED and not cell.startswith(("4", "5"))


def parse_matrix(text: str) -> dict[tuple[str, str], dict[str, tuple[str, str]]]:
    """``{(url name, method): {role: (own, other)}}`` from the table."""
    rows = [line.split() for line in text.splitlines() if line.strip() and line[0] != "#"]
    header, body = rows[0], rows[1:]
    assert tuple(header[2:]) == ROLES, f"MATRIX columns must be {ROLES}"
    table: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
    for cells in body:
        name, method, *values = cells
        assert len(values) == len(ROLES), f"{name} {method}: {len(values)} cells"
        assert (name, method) not in table, f"{name} {method} twice in MATRIX"
        row = {}
        for role, value in zip(ROLES, values, strict=True):
            own, _, other = value.partition("/")
            row[role] = (own, other or own)
        table[(name, method)] = row
    return table


EXPECTED = parse_matrix(MATRIX)
OPS_BY_KEY = {op.key: op for op in OPS}


def targets(op: Op, role: str) -> tuple[str, ...]:
    return (OWN, OTHER) if op.targeted and role in PER_AGENT_ROLES else (OWN,)


# --- the world, once per module ----------------------------------------------------------------


@pytest.fixture(scope="module")
def world(django_db_setup: None, django_db_blocker: Any) -> Iterator[World]:
    """Built once inside a transaction that is rolled back when the module ends; each test
    (``db``) and each request (``rolled_back``) runs in a savepoint inside it."""
    with django_db_blocker.unblock():
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            yield az.build_world()
        finally:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _slack_on(settings: Any) -> None:
    """Slack's endpoints answer (rather than 503 slack_not_configured): its Web API at a
    loopback port nothing listens on — no request here owes Slack anything (no pending
    action is created while someone is linked, and nothing commits)."""
    settings.SLACK_BOT_TOKEN = "xoxb-matrix"
    settings.SLACK_SIGNING_SECRET = "matrix-signing-secret"
    settings.SLACK_API_URL = "http://127.0.0.1:9/api/"


@pytest.fixture
def drills(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Drills started from the page, as queued for a worker (the drill itself — a probe
    through the gate in another process — is proved in tests/test_kill_switch.py)."""
    from incidents import tasks

    queued: list[tuple] = []
    monkeypatch.setattr(tasks.run_drill_task, "delay", lambda *args: queued.append(args))
    return queued


@contextmanager
def rolled_back() -> Iterator[None]:
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


# Written whatever the answer: a personal token's use (on every request, allowed or not)
# and a refused attempt's trace (counted on its own by ``refusal_traces``).
NOT_CHANGES = (verbs.PERSONAL_TOKEN_USED, verbs.ACCESS_REFUSED)


def writes(drills: list) -> tuple[int, int]:
    """What a request left behind: audit events of changes (every change writes one) and
    queued drills."""
    events = AuditEvent.objects.exclude(verb__in=NOT_CHANGES).count()
    return events, len(drills)


def refusal_traces() -> int:
    return AuditEvent.objects.filter(verb=verbs.ACCESS_REFUSED).count()


TOKEN_ROLES = frozenset({"agent", "pat_all", "pat_decide", "pat_audit"})


def expected_traces(got: str, role: str, kind: str) -> range:
    """How many ``access.refused`` events an answer writes (``audit.refusals``): none
    without someone signed in (a bearer token outside the API is no one)."""
    if got in ("401", "login") or role in ("anonymous", "disabled"):
        return range(0, 1)
    if role in TOKEN_ROLES and kind != "api":
        return range(0, 1)
    if got == "403":
        return range(1, 2)
    if got == "404":
        return range(0, 2)  # one when it is another agent's object
    return range(0, 1)


# --- the table covers every URL, schema operation and view method -------------------------------

# Django's admin is not Airlock's code: its pages check ``is_staff`` and model permissions
# themselves, and Airlock's ModelAdmins are read-only (rollout/admin.py). Its index stands for
# all of them in the matrix (only staff get past the login); the rest are skipped.
ADMIN_KEPT = frozenset({"admin:index", "admin-login-redirect"})


@functools.cache
def matrix_routes() -> dict[str, az.Route]:
    routes = {}
    for route in az.discover_routes():
        if route.path.startswith("admin/") and route.name not in ADMIN_KEPT:
            continue
        routes[route.name] = route
    return routes


def test_every_url_has_an_expectation() -> None:
    routes = matrix_routes()
    unnamed = sorted(route.path for name, route in routes.items() if not name)
    assert not unnamed, (
        f"Name these URL patterns so the authorization matrix can key them: {unnamed}"
    )
    in_matrix = {name for name, _ in EXPECTED}
    missing = sorted(set(routes) - in_matrix)
    assert not missing, (
        "New URL(s) without an authorization expectation:\n"
        + "\n".join(f"  {name}  (/{routes[name].path}, {routes[name].view})" for name in missing)
        + "\nAdd a row per method to MATRIX in tests/test_authz_matrix.py (who may do what, "
        "own and other agent) and say how to call it in OPS in tests/authz_support.py."
    )
    stale = sorted(in_matrix - set(routes))
    assert not stale, f"MATRIX rows for URL names that no longer exist: {stale}"


def test_matrix_rows_and_ops_match() -> None:
    assert set(EXPECTED) == set(OPS_BY_KEY), (
        f"rows without an Op: {sorted(set(EXPECTED) - set(OPS_BY_KEY))}; "
        f"Ops without a row: {sorted(set(OPS_BY_KEY) - set(EXPECTED))}"
    )
    for key, row in EXPECTED.items():
        op = OPS_BY_KEY[key]
        for role, (own, other) in row.items():
            if own != other:
                assert op.targeted and role in PER_AGENT_ROLES, (
                    f"{key} {role}: own/other cells only for per-agent roles on object endpoints"
                )


@functools.cache
def _schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def _openapi_path(route: str) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def test_every_schema_operation_is_in_the_matrix() -> None:
    by_path = {_openapi_path(route.path): name for name, route in matrix_routes().items()}
    for path, operations in _schema()["paths"].items():
        assert path in by_path, f"{path} is in the OpenAPI schema but not in the URLconf walk"
        for method in operations:
            key = (by_path[path], method.upper())
            assert key in EXPECTED, (
                f"{method.upper()} {path} ({key[0]}) is in the OpenAPI schema without a "
                "MATRIX row in tests/test_authz_matrix.py: add one."
            )


def test_every_api_route_is_documented_with_the_methods_its_view_answers() -> None:
    """The DRF views' own methods = the schema's = the matrix's, so no API method escapes."""
    schema = _schema()["paths"]
    for name, route in matrix_routes().items():
        view_class = getattr(route.callback, "cls", None)
        if view_class is None:
            continue
        answered = {m.upper() for m in view_class().allowed_methods} - {"OPTIONS", "HEAD"}
        in_matrix = {method for n, method in EXPECTED if n == name}
        assert answered == in_matrix, f"{name}: the view answers {answered}, MATRIX has {in_matrix}"
        if route.path.startswith("api/v1/"):
            documented = {m.upper() for m in schema.get(_openapi_path(route.path), {})}
            assert documented == answered, f"{name}: schema {documented}, view {answered}"


# --- the table keeps the promises ---------------------------------------------------------------


def test_policy__agent_token_reaches_only_its_own_gate_endpoints() -> None:
    for (name, method), row in EXPECTED.items():
        own, other = row["agent"]
        kind = OPS_BY_KEY[(name, method)].kind
        if kind == "public":
            continue
        if name in GATE:
            if OPS_BY_KEY[(name, method)].targeted:
                assert other == "404", f"{name}: another agent's action must be 404 to a token"
        else:
            assert not _success(own), f"{method} {name}: an agent token must be refused"


def test_policy__other_agents_objects_are_404() -> None:
    """On an object endpoint, a per-agent credential gets 404 for the other agent's object
    — unless it is refused the endpoint whatever the object (the same answer for both)."""
    # Kill switches are listed to whoever may see incidents (rollout.permissions
    # .can_see_incidents), the other agent's too: a switch one may see but not release is 403.
    visible_elsewhere = {
        ("incident-release", "incident_a"),
        ("api-kill-switch-release", "incident_a"),
    }
    for (name, method), row in EXPECTED.items():
        op = OPS_BY_KEY[(name, method)]
        if not (op.targeted and op.kwargs):
            continue
        for role in PER_AGENT_ROLES:
            own, other = row[role]
            if (name, role) in visible_elsewhere:
                assert other == "403"
            elif own != other or _success(own):
                assert other == "404", f"{method} {name}: {role} on the other agent's object"


def test_policy__anonymous_and_disabled_get_nothing() -> None:
    for (name, method), row in EXPECTED.items():
        kind = OPS_BY_KEY[(name, method)].kind
        anonymous = row["anonymous"][0]
        assert row["disabled"] == row["anonymous"], f"{name}: a disabled account is anonymous"
        if kind == "api":
            assert anonymous == "401", f"{method} {name}"
        elif kind == "page":
            assert anonymous == "login", f"{method} {name}"
        elif kind == "machine":
            assert anonymous == "403", f"{method} {name}"
        elif kind == "signed":  # Slack's signature or nothing: no session or token opens it
            assert set(row.values()) == {("401", "401")}, f"{method} {name}"


def test_policy__tokens_open_no_page() -> None:
    for (name, method), row in EXPECTED.items():
        if OPS_BY_KEY[(name, method)].kind == "page":
            for role in ("agent", "pat_all", "pat_decide", "pat_audit"):
                assert row[role][0] == "login", f"{method} {name}: {role}"


# --- the requests ------------------------------------------------------------------------------


def _names_other(op: Op, target: str) -> bool:
    return op.targeted and target == OTHER


@pytest.mark.parametrize("op", OPS, ids=lambda op: f"{op.method}-{op.name}")
def test_matrix(op: Op, world: World, db: None, drills: list) -> None:
    _check_row(op, world, drills)


# The API's edit path: a decision carrying edited arguments answers every role exactly as a
# plain decision does (the edit is re-assessed inside the same write path).
API_EDIT = dataclasses.replace(
    OPS_BY_KEY[("api-action-decisions", "POST")],
    body=lambda side, world: {
        "verdict": "approve",
        "comment": "edited",
        "arguments": {"to": "b@example.com"},
    },
)


def test_matrix__api_edit_path(world: World, db: None, drills: list) -> None:
    _check_row(API_EDIT, world, drills)


def _check_row(op: Op, world: World, drills: list) -> None:
    # Given the world (and what this endpoint acts on)
    if op.prepare:
        op.prepare(world)
    expected = EXPECTED[op.key]
    secrets = world.secrets()
    # Each request is rolled back, so this is what there is before every one of them.
    events_before = writes([])[0]
    wrong = []
    for role in ROLES:
        for target in targets(op, role):
            want = expected[role][0 if target == OWN else 1]
            with rolled_back():
                drills_before = len(drills)
                traces_before = refusal_traces()
                # When the role calls the endpoint
                response = az.perform(world, op, world.client(role), world.side(target))
                got = az.outcome(response)
                # Then it gets the expected answer, a refusal changes nothing, and an
                # alpha-only credential never reads the other agent's data
                if got != want:
                    wrong.append(f"{role} ({target}): expected {want}, got {got}")
                elif got in DENIED and (
                    len(drills) != drills_before or writes([])[0] != events_before
                ):
                    wrong.append(f"{role} ({target}): refused with {got} but wrote something")
                elif (traces := refusal_traces() - traces_before) not in expected_traces(
                    got, role, op.kind
                ):
                    wrong.append(f"{role} ({target}): {got} left {traces} access.refused events")
                else:
                    hidden = NOT_SHOWN.get(role, ()) + secrets
                    if role in PER_AGENT_ROLES and not _names_other(op, target):
                        hidden += az.OTHER_MARKERS
                    text = az.body_text(response)
                    leaked = [marker for marker in hidden if marker in text]
                    if leaked:
                        shown = [m if m not in secrets else f"{m[:8]}…" for m in leaked]
                        wrong.append(f"{role} ({target}): the response shows {shown}")
    assert not wrong, f"{op.method} {op.url(world.own)}:\n  " + "\n  ".join(wrong)


# --- CSRF ----------------------------------------------------------------------------------------

LOGIN_POST = Op(
    "login",
    "POST",
    "public",
    body=lambda side, world: {"username": "mx-victim", "password": "pw-for-tests"},
)


def _csrf_cases() -> list[tuple[Op, str]]:
    """Every unsafe request a browser could be tricked into, with a role it works for:
    a session role allowed by the matrix (anonymous for the login steps)."""
    cases = [(LOGIN_POST, "anonymous")]
    for op in OPS:
        if op.method in ("GET", "HEAD", "OPTIONS"):
            continue
        if op.kind == "public":
            cases.append((op, "anonymous"))
            continue
        role = next((r for r in SESSION_ROLES if _success(EXPECTED[op.key][r][0])), None)
        if role is not None:
            cases.append((op, role))
    return cases


CSRF_CASES = _csrf_cases()


def test_csrf_cases_cover_every_session_write() -> None:
    covered = {op.key for op, _ in CSRF_CASES}
    for op in OPS:
        if op.kind == "page" and op.method != "GET":
            assert op.key in covered, f"{op.key}: no session role may call it?"


@pytest.mark.parametrize(
    ("op", "role"), CSRF_CASES, ids=lambda v: f"{v.method}-{v.name}" if isinstance(v, Op) else v
)
def test_unsafe_method__without_csrf_token__refused_and_nothing_written(
    op: Op, role: str, world: World, db: None, drills: list
) -> None:
    if op.prepare:
        op.prepare(world)
    with rolled_back():
        # Given a session (or a login form) in a browser that enforces CSRF
        client = world.client(role, enforce_csrf_checks=True)
        before = writes(drills)
        # When the request comes without the CSRF token (as from another site)
        response = az.perform(world, op, client, world.own)
        # Then it is refused for that reason, and nothing happened
        assert response.status_code == 403, az.body_text(response)[:300]
        assert "CSRF" in az.body_text(response)
        assert writes(drills) == before
    with rolled_back():
        # And with the token (as the page's own form sends it) the same request works
        client = world.client(role, enforce_csrf_checks=True)
        secret = get_random_string(32)
        client.cookies["csrftoken"] = secret
        response = az.perform(world, op, client, world.own, headers={"X-CSRFToken": secret})
        want = "302" if op is LOGIN_POST else EXPECTED[op.key][role][0]
        assert az.outcome(response) == want


# --- mass assignment ----------------------------------------------------------------------------

# Fields the server owns, with the values an attacker would like them to have.
SERVER_OWNED = {
    "id": 999999,
    "status": "approved",
    "decided_by": "mx-victim",
    "payload_hash": "0" * 64,
    "risk": "low",
    "agent": az.OTHER_SLUG,
    "agent_id": 0,  # the other agent's id (set per test)
    "created_at": "2000-01-01T00:00:00Z",
    "approvals": 5,
    "required_approvals": 0,
    "reviewer": "mx-victim",
    "author": "mx-victim",
    "user": "mx-victim",
    "owner": "mx-victim",
    "created_by": "mx-victim",
    "engaged_by": "mx-victim",
    "released_by": "mx-victim",
    "revoked_by": "mx-victim",
    "closed_by": "mx-victim",
    "classification": "tightening",
    "applied_version": 1,
    "policy_version": 1,
    "revision": 99,
    "tier": "autonomous",
    "is_drill": True,
    "is_superuser": True,
    "is_staff": True,
    "token_hash": "0" * 64,
    "webhook_secret": "whsec_attacker",
}
# Unsafe requests that store nothing a client could name: the login steps and logout, a
# second-factor code that is checked (never stored from the form), the step-up confirmation.
NO_STORED_FIELDS = frozenset(
    {
        ("logout", "POST"),
        ("login-verify", "POST"),
        ("login-enrol", "POST"),
        ("two-factor", "POST"),
        ("step-up", "POST"),
        # A tool service's question about a grant: no role of the matrix may ask (service
        # tokens only); tests/test_grants_online.py shows unknown fields refused by name.
        ("api-grant-verify", "POST"),
    }
)


def _acting_role(op: Op) -> str:
    """The first role the matrix lets do this (a person with a session where possible)."""
    row = EXPECTED[op.key]
    for role in (*SESSION_ROLES, "agent", "pat_all"):
        if _success(row[role][0]):
            return role
    raise AssertionError(f"{op.key}: nobody may do this")


def _who(world: World, role: str) -> Any:
    return world.users["pat_owner" if role.startswith("pat") else role]


def _actor(world: World, role: str) -> str:
    """How a row names the person who wrote it (``audit.chain.Actor``)."""
    return f"user:{_who(world, role).get_username()}"


def _request_fields(schema: dict, path: str, method: str) -> set[str] | None:
    """The fields of an operation's JSON request body; None when it takes no body."""
    operation = schema["paths"][path][method.lower()]
    body = operation.get("requestBody")
    if body is None:
        return None
    ref = body["content"]["application/json"]["schema"]["$ref"]
    component = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return set(component.get("properties", {}))


def _action(pk: int) -> Action:
    return Action.objects.get(pk=pk)


def _victim(world: World) -> Any:
    return world.users["victim"]


# Each form (and each API endpoint without a request body) ignores the server-owned fields;
# after the request these checks read the stored rows. (role: the one from _acting_role.)
Check = Callable[[World, str], None]


def _approved_by(world: World, role: str, *, arguments: dict, channel: str = "page") -> None:
    action = _action(world.own.pending)
    assert action.status == "approved" and action.risk == "medium"
    assert action.agent_id == world.own.agent.pk
    assert action.arguments == arguments
    assert action.payload_hash == payload_hash(arguments)
    assert [(d.reviewer_id, d.verdict, d.channel) for d in action.decisions.all()] == [
        (_who(world, role).pk, "approve", channel)
    ]
    assert not _action(world.other.pending).decisions.exists()


def _rejected_by(world: World, role: str) -> None:
    action = _action(world.own.pending)
    assert action.status == "rejected" and action.risk == "medium"
    assert [(d.reviewer_id, d.verdict) for d in action.decisions.all()] == [
        (_who(world, role).pk, "reject")
    ]


def _bulk_approved_by(world: World, role: str) -> None:
    action = _action(world.own.pending)
    assert action.status == "approved" and action.risk == "low"
    assert [(d.reviewer_id, d.channel) for d in action.decisions.all()] == [
        (_who(world, role).pk, "bulk")
    ]
    assert _action(world.other.pending).status == "pending"


def _extended_by(world: World, role: str) -> None:
    action = _action(world.own.pending)
    assert action.status == "pending" and action.risk == "medium"
    event = AuditEvent.objects.get(verb=verbs.ACTION_EXPIRY_EXTENDED, target_id=str(action.pk))
    assert event.data["seconds"] == 900 and event.actor == _who(world, role).get_username()


def _verification_started(world: World, role: str) -> None:
    job = VerificationJob.objects.get()
    assert job.requested_by == _who(world, role).get_username() and job.error == ""
    assert job.requested_by != "mx-victim"


def _rollback_requested(world: World, role: str) -> None:
    assert _action(world.own.executed).status == "rollback_requested"
    assert _action(world.other.executed).status == "executed"


def _open_request_by(world: World, role: str) -> None:
    """A loosening became an open change request by the requester; nothing applied."""
    agent = Agent.objects.get(pk=world.own.agent.pk)
    assert agent.tier.name == "shadow" and agent.current_policy_id == world.own.version_pk
    newest = ChangeRequest.objects.filter(agent=agent).latest("pk")
    assert newest.pk != world.own.change_request
    assert newest.status == "open" and newest.author_id == _who(world, role).pk
    assert newest.required_approvals == 1


def _tightened_by(world: World, role: str) -> None:
    """A tightening applied at once as a version by the requester; the tier kept."""
    agent = Agent.objects.get(pk=world.own.agent.pk)
    assert agent.tier.name == "shadow"
    assert agent.current_policy_id != world.own.version_pk
    assert agent.current_policy.created_by == _actor(world, role)


def _nothing_for_other(world: World) -> None:
    other = Agent.objects.get(pk=world.other.agent.pk)
    assert other.current_policy_id == world.other.version_pk
    assert ChangeRequest.objects.filter(agent=other).count() == 1


def _registered(world: World, role: str) -> None:
    agent = Agent.objects.get(slug="charlie-agent")
    assert agent.tier.name == "shadow" and not agent.tool_rules.exists()
    assert agent.owner_id == _who(world, role).pk


def _token_issued(world: World, role: str) -> None:
    token = AgentToken.objects.filter(agent=world.own.agent, name="ci").get()
    assert token.created_by == _actor(world, role) and token.revoked_at is None
    assert token.token_hash != SERVER_OWNED["token_hash"]


def _secret_rotated(world: World, role: str) -> None:
    agent = Agent.objects.get(pk=world.own.agent.pk)
    assert agent.webhook_secret and agent.webhook_secret != SERVER_OWNED["webhook_secret"]


def _token_revoked(world: World, role: str) -> None:
    token = AgentToken.objects.get(pk=world.own.spare_token)
    assert token.revoked_at is not None
    assert AgentToken.objects.get(pk=world.other.spare_token).revoked_at is None


def _labelled(world: World, role: str) -> None:
    label = ShadowLabel.objects.get(action_id=world.own.shadowed)
    assert label.reviewer_id == _who(world, role).pk
    assert not ShadowLabel.objects.filter(action_id=world.other.shadowed).exists()


def _case_kept(world: World, role: str) -> None:
    case = RegressionCase.objects.get(source_action_id=world.own.pending)
    assert case.agent_id == world.own.agent.pk and case.kept_by_id == _who(world, role).pk
    assert case.expected == "denied"
    assert not RegressionCase.objects.filter(source_action_id=world.other.pending).exists()


def _case_retired(world: World, role: str) -> None:
    assert not RegressionCase.objects.filter(pk=world.own.case).exists()
    assert RegressionCase.objects.filter(pk=world.other.case).exists()


def _change(world: World) -> ChangeRequest:
    return ChangeRequest.objects.get(pk=world.own.change_request)


def _change_approved(world: World, role: str) -> None:
    change = _change(world)
    assert change.status == "applied" and change.author_id == world.users["governor_a"].pk
    assert [a.approver_id for a in change.approvals.all()] == [_who(world, role).pk]


def _change_closed(status: str) -> Check:
    def check(world: World, role: str) -> None:
        change = _change(world)
        assert change.status == status and change.closed_by_id == _who(world, role).pk
        assert change.author_id == world.users["governor_a"].pk

    return check


def _change_edited(world: World, role: str) -> None:
    change = _change(world)
    assert change.status == "open" and change.author_id == _who(world, role).pk
    assert change.revision == world.own.change_revision + 1
    assert change.required_approvals == 1 and not change.approvals.exists()


def _switch_engaged(world: World, role: str) -> None:
    switch = KillSwitch.objects.filter(target=world.own.slug, reason="matrix").latest("pk")
    assert switch.engaged_by == _actor(world, role)
    assert not switch.is_drill and switch.released_at is None
    assert not KillSwitch.objects.filter(target=world.other.slug).exists()


def _switch_released(world: World, role: str) -> None:
    switch = KillSwitch.objects.get(pk=world.own.switch)
    assert switch.released_by == _actor(world, role)
    assert KillSwitch.objects.get(pk=world.other.switch).released_at is None


def _personal_token_created(world: World, role: str) -> None:
    token = PersonalToken.objects.filter(name="cli").get()
    assert token.user_id == _who(world, role).pk and token.scopes == ["decide"]
    assert token.token_hash != SERVER_OWNED["token_hash"]


def _personal_token_revoked(world: World, role: str) -> None:
    token = PersonalToken.objects.get(pk=world.own.personal_token)
    assert token.revoked_at is not None
    assert token.revoked_by == _who(world, role).get_username()
    assert PersonalToken.objects.get(pk=world.other.personal_token).revoked_at is None


def _no_home_for_others(world: World, role: str) -> None:
    assert not HomeChoice.objects.exclude(user=_who(world, role)).exists()


def _no_notify_choice_for_others(world: World, role: str) -> None:
    assert not DesktopNotificationChoice.objects.exclude(user=_who(world, role)).exists()


def _account(username: str, *, active: bool) -> Check:
    def check(world: World, role: str) -> None:
        person = get_user_model().objects.get(username=username)
        assert person.is_active is active
        assert not person.is_superuser and not person.is_staff

    return check


def _withdrawn(world: World, role: str) -> None:
    action = _action(world.own.pending)
    assert action.status == "cancelled" and action.risk == "medium"
    assert action.payload_hash == payload_hash(action.arguments)
    assert _action(world.other.pending).status == "pending"


def _standing_revoked(world: World, role: str) -> None:
    from approvals.models import StandingApproval

    own = StandingApproval.objects.get(pk=world.own.standing)
    assert (own.end_reason, own.ended_by) == ("revoked", _actor(world, role))
    assert StandingApproval.objects.get(pk=world.other.standing).ended_at is None


def _drill_queued(drills: list) -> Check:
    def check(world: World, role: str) -> None:
        assert drills == [(world.own.agent.pk, _who(world, role).get_username())]

    return check


def _preview_only(world: World, role: str) -> None:
    """The access form without ``confirm`` only previews: nothing was proposed."""
    assert ChangeRequest.objects.filter(agent=world.own.agent).count() == 1
    assert Agent.objects.get(pk=world.own.agent.pk).current_policy_id == world.own.version_pk


def _nothing_to_clear(world: World, role: str) -> None:
    """Clearing an override the agent does not have changes nothing: refused, no version."""
    assert ChangeRequest.objects.filter(agent=world.own.agent).count() == 1
    assert Agent.objects.get(pk=world.own.agent.pk).current_policy_id == world.own.version_pk
    assert not EnvironmentOverride.objects.filter(agent=world.own.agent).exists()


def _slack_linked(world: World, role: str) -> None:
    account = SlackAccount.objects.get()
    assert account.user_id == _who(world, role).pk and account.min_risk == "low"
    assert (account.team_id, account.slack_user_id) == (az.SLACK_TEAM, az.SLACK_USER)


def _no_slack_account_of_others(world: World, role: str) -> None:
    assert not SlackAccount.objects.exclude(user=_who(world, role)).exists()


def _slack_threshold_set(world: World, role: str) -> None:
    account = SlackAccount.objects.get()
    assert account.user_id == _who(world, role).pk and account.min_risk == "medium"
    assert not account.slack_user_id


def _checks(drills: list) -> dict[tuple[str, str], tuple[dict, Check]]:
    """(extra overrides of SERVER_OWNED, check) per write that ignores unknown fields."""
    return {
        ("action-approve", "POST"): (
            {"status": "rejected"},
            lambda w, r: _approved_by(w, r, arguments={"to": "a@example.com"}),
        ),
        ("action-edit-approve", "POST"): (
            {"status": "rejected"},
            lambda w, r: _approved_by(w, r, arguments={"to": "b@example.com"}),
        ),
        ("email-decision", "POST"): (
            {"status": "rejected", "verdict": "reject"},
            lambda w, r: _approved_by(w, r, arguments={"to": "a@example.com"}, channel="email"),
        ),
        ("action-reject", "POST"): ({}, _rejected_by),
        ("action-extend", "POST"): ({}, _extended_by),
        ("actions-bulk", "POST"): ({}, _bulk_approved_by),
        ("action-rollback", "POST"): ({"status": "rolled_back"}, _rollback_requested),
        ("standing-revoke", "POST"): ({"end_reason": "expired"}, _standing_revoked),
        ("api-action-withdraw", "POST"): ({}, _withdrawn),
        ("rollout:agent-register", "POST"): ({}, _registered),
        ("rollout:agent-tier", "POST"): ({}, _open_request_by),
        ("rollout:agent-settings", "POST"): ({}, _tightened_by),
        ("rollout:rule-add", "POST"): ({}, _open_request_by),
        ("rollout:rule-edit", "POST"): ({}, _tightened_by),
        ("rollout:rule-remove", "POST"): ({}, _tightened_by),
        ("rollout:environment-tier", "POST"): ({}, _open_request_by),
        ("rollout:environment-rule", "POST"): ({}, _tightened_by),
        ("rollout:environment-rule-clear", "POST"): ({}, _nothing_to_clear),
        ("rollout:token-issue", "POST"): ({}, _token_issued),
        ("rollout:webhook-secret-rotate", "POST"): ({}, _secret_rotated),
        ("rollout:token-revoke", "POST"): ({}, _token_revoked),
        ("rollout:api-agent-token-revoke", "POST"): ({}, _token_revoked),
        ("rollout:api-agent-webhook-secret", "POST"): ({}, _secret_rotated),
        ("rollout:agent-access", "POST"): ({}, _preview_only),
        ("rollout:version-revert", "POST"): ({}, _open_request_by),
        ("rollout:shadow-label", "POST"): ({}, _labelled),
        ("rollout:case-keep", "POST"): ({}, _case_kept),
        ("rollout:case-retire", "POST"): ({}, _case_retired),
        ("rollout:change-approve", "POST"): ({"status": "rejected"}, _change_approved),
        ("rollout:change-reject", "POST"): ({"status": "applied"}, _change_closed("rejected")),
        ("rollout:change-withdraw", "POST"): ({"status": "applied"}, _change_closed("withdrawn")),
        ("rollout:change-edit", "POST"): ({"status": "applied"}, _change_edited),
        ("incident-engage", "POST"): ({}, _switch_engaged),
        ("incident-release", "POST"): ({}, _switch_released),
        ("incident-drill", "POST"): ({}, _drill_queued(drills)),
        ("audit-verification", "POST"): ({"state": "failed"}, _verification_started),
        ("personal-token-create", "POST"): ({}, _personal_token_created),
        ("personal-token-revoke", "POST"): ({}, _personal_token_revoked),
        ("home-choose", "POST"): ({}, _no_home_for_others),
        ("desktop-notifications-choose", "POST"): ({}, _no_notify_choice_for_others),
        ("slack-link", "POST"): ({}, _slack_linked),
        ("slack-unlink", "POST"): ({}, _no_slack_account_of_others),
        ("slack-threshold", "POST"): ({}, _slack_threshold_set),
        ("person-disable", "POST"): ({"is_active": "on"}, _account("mx-victim", active=False)),
        ("person-enable", "POST"): ({}, _account("mx-dormant", active=True)),
    }


# Slack's signed requests are not in it: no session or token may call them (their bodies
# are Slack's, checked in tests/test_slack_approvals.py).
WRITES = [
    op
    for op in OPS
    if op.method not in ("GET", "HEAD", "OPTIONS")
    and op.key not in NO_STORED_FIELDS
    and op.kind != "signed"
]


@pytest.mark.parametrize("op", WRITES, ids=lambda op: f"{op.method}-{op.name}")
def test_mass_assignment__server_owned_fields__refused_or_ignored(
    op: Op, world: World, db: None, drills: list
) -> None:
    if op.prepare:
        op.prepare(world)
    role = _acting_role(op)
    body = op.body(world.own, world) if op.body else {}
    server_owned = {**SERVER_OWNED, "agent_id": world.other.agent.pk}
    checks = _checks(drills)
    schema_fields = None
    if op.kind == "api":
        path = _openapi_path(matrix_routes()[op.name].path)
        schema_fields = _request_fields(_schema(), path, op.method)
    if schema_fields is not None:
        # Given a JSON body with every server-owned field the endpoint does not take
        extra = {k: v for k, v in server_owned.items() if k not in schema_fields}
        before = writes(drills)
        # When the role that may call it sends them
        response = az.perform(world, op, world.client(role), world.own, body={**body, **extra})
        # Then the request is refused, naming each field, and nothing was written
        assert response.status_code == 400, az.body_text(response)[:500]
        error = response.json()
        assert error["code"] == "invalid"
        assert set(error["fields"]) == set(extra), error
        assert writes(drills) == before
        return
    assert op.key in checks, (
        f"{op.key} ignores unknown fields: add a check of the stored row to _checks in "
        "tests/test_authz_matrix.py"
    )
    overrides, check = checks[op.key]
    extra = {k: v for k, v in {**server_owned, **overrides}.items() if k not in body}
    if op.kind != "api":
        extra = {k: ("on" if v is True else str(v)) for k, v in extra.items()}
    # Given a form (or bodiless API call) with server-owned fields added
    response = az.perform(world, op, world.client(role), world.own, body={**body, **extra})
    # Then it did its work as without them, and the stored rows show the server's values
    assert az.outcome(response) == EXPECTED[op.key][role][0], az.body_text(response)[:500]
    check(world, role)


def test_mass_assignment__every_write_is_checked() -> None:
    """A new writable endpoint needs a request schema (refused) or a stored-row check."""
    schema = _schema()
    checks = _checks([])
    for op in WRITES:
        if op.kind == "api":
            path = _openapi_path(matrix_routes()[op.name].path)
            if _request_fields(schema, path, op.method) is not None:
                continue
        assert op.key in checks, f"{op.key}: no mass-assignment check"
    assert set(checks) <= {op.key for op in WRITES}
