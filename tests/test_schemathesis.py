"""The API against its own served OpenAPI schema, with schemathesis: generated requests —
valid and deliberately invalid — to every operation, and generated sequences along an
action's life (submit, read, decide, report, withdraw, trace) that carry each answer's id
and payload hash into the next requests. Every answer must be a documented status with a
documented content type and body shape, and never a 5xx.

The application runs in-process through Django's WSGI handler (no server, no threads), so
the whole run shares the test's transaction; each request runs in a savepoint of its own.
Examples per operation are capped to keep the file fast; the failures of every operation
are gathered and reported together."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import DatabaseError, close_old_connections, transaction
from django.test import Client
from django.urls import reverse
from django.utils.crypto import get_random_string
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    multiple,
    rule,
    run_state_machine_as_test,
)
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.permissions import TOKEN_SCOPES
from accounts.personal_tokens import create_personal_token
from tests import factories

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The agent API (an agent token); every other operation is a person's.
AGENT_OPERATIONS = {
    "submit_action",
    "get_action",
    "report_execution",
    "withdraw_action",
    "heartbeat_action",
    "report_rollback",
}
EXAMPLES_PER_MODE = 6  # per operation, positive and negative each
# Tools of the agent's policy (tests.factories.SUPPORT_RULES): a submission names one of
# them in the linked sequences, so the gate allows, denies or queues it for a person rather
# than refusing an unknown tool every time.
KNOWN_TOOLS = ["send_email", "create_ticket_draft", "approve_refund", "get_order_status"]
HYPOTHESIS = {
    "deadline": None,
    "database": None,  # no example database in the work tree; runs stay comparable
    "derandomize": True,
    "suppress_health_check": list(HealthCheck),
}


def operation_id(case: Any) -> str:
    return case.operation.definition.raw["operationId"]


class Credentials:
    """An agent token for the agent API; for the rest a superuser, by personal token (all
    scopes) or by session with its CSRF token."""

    def __init__(self, agent_token: str, personal_token: str, session_key: str) -> None:
        self.agent_token = agent_token
        self.personal_token = personal_token
        self.csrf = get_random_string(32)
        self.session_key = session_key

    def token_kwargs(self, case: Any) -> dict:
        token = self.agent_token if operation_id(case) in AGENT_OPERATIONS else self.personal_token
        return {"headers": {"Authorization": f"Bearer {token}"}}

    def session_kwargs(self, case: Any) -> dict:
        if operation_id(case) in AGENT_OPERATIONS:
            return self.token_kwargs(case)
        return {
            "headers": {"X-CSRFToken": self.csrf},
            "cookies": {"sessionid": self.session_key, "csrftoken": self.csrf},
        }


@pytest.fixture
def in_process(db: None, monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[None]:
    """Requests run in the test's thread and transaction (see ``call``); the long-poll's
    own connection clean-up would end that transaction, and a long-poll waits a moment at
    most."""
    settings.LONG_POLL_MAX_SECONDS = 0.2
    monkeypatch.setattr("approvals.api.close_old_connections", lambda: None)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def served_schema(in_process: None) -> dict:
    """The OpenAPI schema exactly as the application serves it."""
    response = Client().get(reverse("api-schema"), {"format": "json"})
    assert response.status_code == 200
    return response.json()


def bind(raw: dict, **config: Any) -> Any:
    """A schemathesis schema of ``raw`` that calls the WSGI application in-process."""
    schema = schemathesis.openapi.from_dict(
        raw, config=SchemathesisConfig.from_dict({"seed": 11, **config})
    )
    schema.app = get_wsgi_application()
    return schema


@pytest.fixture
def api(served_schema: dict) -> Any:
    return bind(served_schema)


@pytest.fixture
def credentials(in_process: None, support_agent: Any) -> Credentials:
    admin = factories.make_user("schema-admin", superuser=True)
    _, personal = create_personal_token(
        user=admin, name="schemathesis", scopes=list(TOKEN_SCOPES), expires_in_days=1
    )
    browser = Client()
    browser.force_login(admin)
    return Credentials(
        factories.make_token(support_agent), personal, browser.cookies["sessionid"].value
    )


def call(case: Any, kwargs: dict, *, keep: bool = False) -> Any:
    """One request, in a savepoint of the test's transaction: rolled back afterwards unless
    ``keep`` (each generated request then meets the same data, so a failure replays the
    same way), and always after a database error (answered 500, which the checks report),
    which must not poison the requests after it.

    As in Django's test client, the handler must not close the connection at a request's
    start and end (that would end the test's transaction); the test client reconnects
    those receivers after each of its own requests, so they are disconnected before every
    call (``in_process`` restores them)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    savepoint = transaction.savepoint()
    try:
        response = case.call(**kwargs)
    except BaseException:
        transaction.savepoint_rollback(savepoint)
        raise
    try:
        if keep:
            transaction.savepoint_commit(savepoint)
        else:
            transaction.savepoint_rollback(savepoint)
    except DatabaseError:
        transaction.savepoint_rollback(savepoint)
    return response


def test_every_operation__generated_requests__documented_answers_never_5xx(
    api: Any, credentials: Credentials
) -> None:
    # Given every operation of the served schema
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 30
    failures: list[str] = []
    statuses: Counter = Counter()

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES_PER_MODE, **HYPOTHESIS)
            def exercise(case: Any) -> None:
                kwargs = credentials.token_kwargs(case)
                response = call(case, kwargs)
                statuses[response.status_code] += 1
                case.validate_response(response, checks=CHECKS, headers=kwargs["headers"])

            # When schemathesis sends it valid and invalid requests
            try:
                exercise()
            except Exception as exc:  # gathered: one report for every operation
                failures.append(f"{operation.label} ({mode.value}): {exc}")

    # Then every answer was documented, shaped as documented, and none was a 5xx
    assert not failures, "\n\n".join(failures)
    # (and the run reached past authentication: successes and refusals alike)
    assert statuses[200] + statuses[201] > 0
    assert statuses[400] > 0 and statuses[404] > 0


def test_action_life__generated_sequences__documented_answers_never_5xx(
    api: Any, credentials: Credentials
) -> None:
    """Stateful: sequences of submissions, reads, decisions (by session, with CSRF),
    withdrawals, execution and rollback reports on the actions submitted earlier in the
    same sequence — each request generated by schemathesis from its operation's schema
    (positive and negative), with the ids and payload hashes the earlier answers gave,
    as an agent would send them. (drf-spectacular writes no OpenAPI links, and
    schemathesis' link inference does not start from a submission, so the links are
    these rules.)"""
    operations = {
        op.definition.raw["operationId"]: op for op in (r.ok() for r in api.get_all_operations())
    }
    reached: Counter = Counter()
    modes = st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE])

    def send(case: Any, kwargs: dict) -> Any:
        response = call(case, kwargs, keep=True)
        reached[(operation_id(case), response.status_code)] += 1
        case.validate_response(response, checks=CHECKS, headers=kwargs.get("headers"))
        return response

    def generated(data: Any, name: str, **fixed: Any) -> Any:
        return data.draw(operations[name].as_strategy(generation_mode=data.draw(modes), **fixed))

    class ActionLife(RuleBasedStateMachine):
        """Each sequence starts from the same data (a savepoint rolled back at its end), so a
        failing sequence replays the same way."""

        actions = Bundle("actions")

        def __init__(self) -> None:
            super().__init__()
            self.savepoint = transaction.savepoint()

        def teardown(self) -> None:
            transaction.savepoint_rollback(self.savepoint)

        @initialize(target=actions, data=st.data())
        def approved_once(self, data: Any) -> Any:
            # Every sequence starts with one decision that succeeds (a queued send_email,
            # approved), so whether the run reaches a decision does not hang on which
            # strings hypothesis draws (they change with the project's own source).
            case = data.draw(
                operations["submit_action"].as_strategy(generation_mode=GenerationMode.POSITIVE)
            )
            case.body.update(tool="send_email", arguments={"to": "customer@example.com"})
            case.body.pop("callback_url", None)
            response = send(case, credentials.token_kwargs(case))
            if response.status_code != 201:
                return multiple()
            action = response.json()
            decision = data.draw(
                operations["decide_action"].as_strategy(
                    generation_mode=GenerationMode.POSITIVE,
                    path_parameters={"action_id": action["id"]},
                    body={"verdict": "approve"},
                )
            )
            decided = send(decision, credentials.session_kwargs(decision))
            if decided.status_code == 201:
                action.update(decided.json())
            return multiple(action)

        @rule(target=actions, data=st.data(), tool=st.sampled_from(KNOWN_TOOLS))
        def submit(self, data: Any, tool: str) -> Any:
            case = generated(data, "submit_action")
            if isinstance(case.body, dict):
                # A tool of the agent's policy, so the gate allows, denies or queues it
                # rather than refusing an unknown tool; no webhooks to random hosts.
                case.body.update(tool=tool, arguments={"to": "customer@example.com"})
                case.body.pop("callback_url", None)
            response = send(case, credentials.token_kwargs(case))
            if response.status_code == 201:
                return multiple(response.json())
            return multiple()

        @rule(action=actions, data=st.data())
        def read(self, action: dict, data: Any) -> None:
            case = generated(data, "get_action", path_parameters={"action_id": action["id"]})
            send(case, credentials.token_kwargs(case))

        @rule(action=actions, data=st.data(), honest=st.booleans())
        def decide(self, action: dict, data: Any, honest: bool) -> None:
            # An honest approval as well as generated verdicts: whether generated ones include
            # a valid approval depends on the strings hypothesis draws, and those change with
            # the project's own source (it mixes in constants found in local modules).
            fixed: dict[str, Any] = {"path_parameters": {"action_id": action["id"]}}
            if honest:
                fixed["body"] = {"verdict": "approve"}
            case = generated(data, "decide_action", **fixed)
            response = send(case, credentials.session_kwargs(case))
            if response.status_code == 201:
                action.update(response.json())

        @rule(action=actions, data=st.data(), honest=st.booleans())
        def report_execution(self, action: dict, data: Any, honest: bool) -> None:
            fixed = {"path_parameters": {"action_id": action["id"]}}
            if honest:
                fixed["body"] = {"outcome": "succeeded", "payload_hash": action["payload_hash"]}
            case = generated(data, "report_execution", **fixed)
            send(case, credentials.token_kwargs(case))

        @rule(action=actions, data=st.data())
        def withdraw(self, action: dict, data: Any) -> None:
            case = generated(data, "withdraw_action", path_parameters={"action_id": action["id"]})
            send(case, credentials.token_kwargs(case))

        @rule(action=actions, data=st.data())
        def report_rollback(self, action: dict, data: Any) -> None:
            case = generated(data, "report_rollback", path_parameters={"action_id": action["id"]})
            send(case, credentials.token_kwargs(case))

        @rule(action=actions, data=st.data())
        def trace(self, action: dict, data: Any) -> None:
            case = generated(data, "get_action_trace", path_parameters={"action_id": action["id"]})
            send(case, credentials.session_kwargs(case))

    # When hypothesis runs sequences of these steps
    run_state_machine_as_test(
        ActionLife, settings=settings(max_examples=15, stateful_step_count=8, **HYPOTHESIS)
    )

    # Then every step conformed (a failing check fails the run), and the sequences reached
    # past refusals: submissions, decisions and reports on real actions succeeded
    succeeded = {op for (op, status) in reached if status < 300}
    assert {"submit_action", "get_action", "decide_action"} <= succeeded, reached
