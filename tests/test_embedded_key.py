"""The embedded setup's secret key: ``scripts/run`` writes ``var/secret_key`` once, and any
``manage.py`` command run beside it in a fresh shell (no environment at all) uses it — the
README's first agent command works. With a ``DATABASE_URL`` (a real deployment) and
``DEBUG`` off, nothing but a real ``SECRET_KEY`` will do.

Each case runs in a copy of the application code, so its ``var/`` is a temporary
directory, never the checkout's."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Everything a fresh shell could have set; the embedded setup must need none of it.
CLEARED = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "DJANGO_SETTINGS_MODULE",
    "SECRET_KEY",
    "SECRET_KEY_FALLBACKS",
    "DEBUG",
    "ALLOWED_HOSTS",
)
KEY_PROBE = "from config.settings import base; print(base.SECRET_KEY)"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The application code (not tests, SDK, docs or any var/) in a directory of its own."""
    copy = tmp_path / "airlock"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "var", "tests", "sdk", "benchmarks", "docs", "__pycache__", ".*cache*"
        ),
    )
    (copy / "var").mkdir()
    return copy


def fresh_shell(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["AUDIT_CHECKPOINT_DIR"] = str(tmp_path / "checkpoints")
    env.update(extra)
    return env


def write_key_as_scripts_run_does(checkout: Path) -> str:
    # scripts/run keeps the key in var/secret_key (it exports it to what it starts).
    assert "var/secret_key" in (ROOT / "scripts" / "run").read_text()
    key = secrets.token_urlsafe(50)
    (checkout / "var" / "secret_key").write_text(key + "\n")
    return key


def run(checkout: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=checkout, env=env, capture_output=True, text=True, timeout=300
    )


def test_embedded__no_environment__settings_use_the_key_file(checkout, tmp_path):
    key = write_key_as_scripts_run_does(checkout)
    probe = run(checkout, fresh_shell(tmp_path), "-c", KEY_PROBE)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == key


def test_embedded__no_key_file__refuses_without_debug_and_says_where_the_key_lives(
    checkout, tmp_path
):
    probe = run(checkout, fresh_shell(tmp_path), "-c", KEY_PROBE)
    assert probe.returncode != 0
    assert "SECRET_KEY is required" in probe.stderr and "var/secret_key" in probe.stderr


def test_database_url_set__debug_off__the_key_file_does_not_count(checkout, tmp_path):
    write_key_as_scripts_run_does(checkout)
    env = fresh_shell(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}", DEBUG="0")
    probe = run(checkout, env, "-c", KEY_PROBE)
    assert probe.returncode != 0
    assert "SECRET_KEY is required" in probe.stderr
    with_key = run(checkout, {**env, "SECRET_KEY": "a-real-key"}, "-c", KEY_PROBE)
    assert with_key.stdout.strip() == "a-real-key"


@pytest.mark.multiprocess
def test_readme_first_agent_command__fresh_shell__prints_a_token(checkout, tmp_path):
    # Given what scripts/run leaves behind: the key file, a migrated and seeded database
    write_key_as_scripts_run_does(checkout)
    setup = fresh_shell(tmp_path, DEBUG="1")  # scripts/run's own environment
    for command in (("migrate", "--noinput"), ("seed_demo",)):
        done = run(checkout, setup, "manage.py", *command)
        assert done.returncode == 0, done.stderr
    # When the README's command runs in a fresh shell, with no environment
    issued = run(checkout, fresh_shell(tmp_path), "manage.py", "agent_token", "support-assistant")
    # Then it prints only a token
    assert issued.returncode == 0, issued.stderr
    assert re.fullmatch(r"alk_\S+", issued.stdout.strip()), issued.stdout
