"""The demo agent (``sdk/python/examples/demo_agent.py``, a plain SDK client) against the
real server, with tokens from ``manage.py agent_token … --json`` as ``scripts/run`` makes
them: it drives the demo agents through the SDK, waits on pending calls in the background
and executes what people approve; it survives an unreachable server."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from approvals import actions
from approvals.management.commands.seed_demo import AGENTS
from approvals.models import Action, Report
from audit.chain import Actor
from rollout.actions import register_agent
from rollout.models import AgentToken
from tests.sdk_support import Decider, approve_with, closed_port

pytestmark = pytest.mark.django_db(transaction=True)


EXAMPLE = Path(__file__).resolve().parents[1] / "sdk" / "python" / "examples" / "demo_agent.py"


def _example():
    """The example script as a module (registered first: its dataclasses look it up)."""
    if "demo_agent_example" not in sys.modules:
        spec = importlib.util.spec_from_file_location("demo_agent_example", EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        sys.modules["demo_agent_example"] = module
        spec.loader.exec_module(module)
    return sys.modules["demo_agent_example"]


@pytest.fixture
def demo_agents(reference_data):
    return [register_agent(actor=Actor.system("t"), **spec) for spec in AGENTS]


@pytest.fixture
def tokens_file(demo_agents, tmp_path):
    out = io.StringIO()
    slugs = [agent.slug for agent in demo_agents]
    call_command("agent_token", *slugs, name="demo-agent", json=True, stdout=out)
    path = tmp_path / "tokens.json"
    path.write_text(out.getvalue())
    return path


def run_demo(tokens_file, **options) -> str:
    out = io.StringIO()
    argv = ["--tokens", str(tokens_file)]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    assert _example().main(argv, out=out) == 0
    return out.getvalue()


def test_demo_agent__drives_the_agents_and_executes_what_people_approve(
    asgi_server, tokens_file, reviewer, reviewer2
):
    edited = {}

    def approve_then_roll_back(action: Action) -> None:
        edited.update({**action.arguments, "amount": 10.0})
        approve_with(reviewer, edited, "partial refund")(action)
        if Action.objects.get(pk=action.pk).status == "pending":  # a high-risk refund
            approve_with(reviewer2)(action)
        deadline = time.monotonic() + 60  # generous: a loaded CI machine
        while Action.objects.get(pk=action.pk).status != "executed":
            assert time.monotonic() < deadline, "the demo agent did not execute the refund"
            time.sleep(0.05)  # polling for the agent's execution report
        actions.request_rollback(action_id=action.pk, user=reviewer, comment="Customer cancelled")

    # Seed 20: all four agents; the third call is a refund; a shadow deploy and a forbidden
    # call follow.
    with Decider([("create_refund_request", approve_then_roll_back)], timeout=60):
        log = run_demo(
            tokens_file,
            url=asgi_server.url,
            interval="0.2",
            max_calls=16,
            seed=20,
            rollback_check=0.2,
            failure_rate=0,  # the refund must run: a pretend tool failure would end it `failed`
        )

    assert "demo agent stopped after 16 calls" in log and " ERROR " not in log
    assert AgentToken.objects.filter(name="demo-agent").count() == 4
    by_agent = set(Action.objects.values_list("agent__slug", flat=True))
    assert by_agent == {spec["slug"] for spec in AGENTS}
    statuses = set(Action.objects.values_list("status", flat=True))
    assert {"executed", "denied", "shadowed", "cancelled"} <= statuses
    # The approved refund ran with the reviewer's edit, was reported, then rolled back
    # when the reviewer asked.
    refund = Action.objects.get(tool="create_refund_request")
    assert refund.arguments == edited and refund.original_arguments["amount"] != 10.0
    assert Report.objects.get(action=refund, kind="execution").result["amount"] == 10.0
    assert "approved with edited arguments: executing" in log
    assert refund.status == "rolled_back" and "rolled back as requested" in log
    # Nothing is left waiting for a person when the agent stops.
    assert not Action.objects.filter(status="pending").exists()


def test_demo_agent__server_unreachable__logs_and_keeps_going(tokens_file):
    log = run_demo(
        tokens_file,
        url=f"http://127.0.0.1:{closed_port()}",
        interval="0",
        max_calls=3,
        give_up_after=0.3,
    )
    assert log.count(" ERROR ") >= 3
    assert "demo agent stopped after 3 calls" in log


def test_agent_token__several_agents_as_json__one_live_token_each(demo_agents):
    out = io.StringIO()
    call_command("agent_token", "ops-agent", "deploy-bot", name="demo-agent", json=True, stdout=out)
    tokens = json.loads(out.getvalue())
    assert set(tokens) == {"ops-agent", "deploy-bot"}
    assert all(token.startswith("alk_") for token in tokens.values())
    assert AgentToken.objects.filter(name="demo-agent", revoked_at__isnull=True).count() == 2


def test_agent_token__an_unknown_agent_among_several__issues_none(demo_agents):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no-such-agent"):
        call_command("agent_token", "ops-agent", "no-such-agent", json=True, stdout=io.StringIO())
    assert not AgentToken.objects.exists()


def test_demo_agent__unreadable_tokens_file__exits_2_saying_why(tmp_path, capsys):
    assert _example().main(["--tokens", str(tmp_path / "missing.json")]) == 2
    assert "cannot read the agents' tokens" in capsys.readouterr().err


def test_demo_agent__failure_rate_out_of_range__exits_2_saying_why(tokens_file, capsys):
    argv = ["--tokens", str(tokens_file), "--failure-rate", "1.5", "--max-calls", "1"]
    assert _example().main(argv) == 2
    assert "--failure-rate must be between 0 and 1" in capsys.readouterr().err
