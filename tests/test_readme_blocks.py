"""The READMEs' runnable examples, run exactly as written against a real running server.

A fenced block right after a ``<!-- runnable -->`` line in ``README.md`` or
``sdk/python/README.md`` is extracted and run as a developer would paste it: shell blocks
with bash from the repository root, Python blocks with the venv's Python. Only the
environment differs: ``AIRLOCK_URL`` names the test server, ``AIRLOCK_TOKEN`` an agent
token (for blocks that do not issue their own), and ``DATABASE_URL`` the test database
(for ``manage.py``). People approve whatever the example leaves pending, from another
thread, as a reviewer on the dashboard would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tests.sdk_path
from approvals.models import Action, Report
from tests import factories, servers
from tests.sdk_support import Decider, approve_with

ROOT = Path(__file__).resolve().parent.parent
READMES = (ROOT / "README.md", ROOT / "sdk" / "python" / "README.md")
MARKER = "<!-- runnable -->"
BLOCK = re.compile(r"^<!-- runnable -->\n```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
RUNNERS = {
    "bash": ["bash", "-euo", "pipefail", "-c"],
    "sh": ["bash", "-euo", "pipefail", "-c"],
    "python": [sys.executable, "-c"],
}

pytestmark = pytest.mark.django_db(transaction=True)


def runnable_blocks() -> list[tuple[str, str, str]]:
    """(id, language, code) of every marked block, in order."""
    blocks = []
    for readme in READMES:
        text = readme.read_text()
        found = BLOCK.findall(text)
        # A marker whose fence did not parse would silently drop an example.
        assert len(found) == text.count(MARKER), f"{readme.name}: a {MARKER} without a fence"
        for number, (language, code) in enumerate(found, 1):
            name = f"{readme.relative_to(ROOT)}#{number}"
            blocks.append((name, language, code))
    return blocks


BLOCKS = runnable_blocks()


def test_both_readmes_mark_their_agent_examples():
    names = [name for name, _, _ in BLOCKS]
    assert any(name.startswith("README.md") for name in names)
    assert any(name.startswith("sdk/") for name in names)


@pytest.mark.multiprocess
@pytest.mark.parametrize(("name", "language", "code"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_runnable_block__runs_as_written_against_a_live_server(
    name, language, code, asgi_server, support_agent, reviewer
):
    # Given the server a developer would have (the demo agent, a reviewer at the dashboard)
    env = {
        **os.environ,
        "AIRLOCK_URL": asgi_server.url,
        "AIRLOCK_TOKEN": factories.make_token(support_agent),
        "DATABASE_URL": servers.test_database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "PYTHONPATH": str(tests.sdk_path.SDK_SRC),
    }
    # When the block runs while a reviewer approves what it asks for
    with Decider(
        [(tool, approve_with(reviewer)) for tool in ("send_email", "create_refund_request")] * 2,
        timeout=90,
    ):
        result = subprocess.run(
            [*RUNNERS[language], code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    # Then it succeeds, and every call it made through the gate ran and was reported
    assert result.returncode == 0, f"{name}:\n{result.stdout}\n{result.stderr}"
    made = Action.objects.filter(agent=support_agent)
    assert made.exists(), f"{name} asked the gate nothing"
    for action in made:
        assert action.status == "executed", (name, action.tool, action.status, result.stdout)
        assert Report.objects.filter(action=action, outcome="succeeded").exists()
