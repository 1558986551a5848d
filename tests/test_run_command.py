"""Smoke test of what scripts/run starts: migrate, seed_demo and the ASGI runserver with the
embedded defaults (SQLite, no Redis), then a real HTTP request to the login page."""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_env(tmp_path: Path) -> dict[str, str]:
    """The environment scripts/run gives its processes, pointed at a throwaway SQLite file.
    This pytest process itself runs against PostgreSQL and Redis (scripts/test): drop those."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}",
            "DEBUG": "1",
            "SECRET_KEY": "run-command-smoke-test",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "AUDIT_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def manage(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, (
        f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    )


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


@pytest.mark.multiprocess
def test_run_command_serves_the_login_page(tmp_path):
    env = run_env(tmp_path)
    manage(env, "migrate", "--noinput")
    manage(env, "seed_demo")

    port = free_port()
    url = f"http://127.0.0.1:{port}/accounts/login/"
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        status, body = None, ""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"server exited with {server.returncode}:\n{log_path.read_text()}")
            try:
                status, body = get(url)
            except OSError:  # not listening yet
                time.sleep(0.25)
                continue
            if status == 200:
                break
            time.sleep(0.25)
        assert status == 200, f"last status {status}; server log:\n{log_path.read_text()}"
        assert 'name="username"' in body
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)


def test_run_environment__port__sets_every_url_to_it(tmp_path):
    # scripts/run takes its addresses from scripts/_run_env.sh, all from one PORT
    run = (ROOT / "scripts" / "run").read_text()
    assert "source scripts/_run_env.sh" in run and "\nrun_environment\n" in run
    env = {k: v for k, v in run_env(tmp_path).items() if not k.startswith("AIRLOCK_")}
    env.pop("DATABASE_URL")  # what scripts/run runs: the embedded setup
    script = (
        "source scripts/_run_env.sh && run_environment && "
        'echo "$AIRLOCK_URL $AIRLOCK_PUBLIC_URL $AIRLOCK_GATE_URL" && mail_destination "$1"'
    )
    shown = subprocess.run(
        ["bash", "-c", script, "bash", sys.executable],
        cwd=ROOT,
        env={**env, "PORT": "8765"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    # Links in notifications and the drills' probe reach the server where it listens
    assert shown[0] == " ".join(["http://127.0.0.1:8765"] * 3)
    # and mail goes to files under var/mail (what the banner prints)
    assert shown[1] == f"written to files in {ROOT / 'var' / 'mail'}/ (set EMAIL_URL to send it)"
    # A public URL set by the operator (a proxy in front) is kept
    kept = subprocess.run(
        ["bash", "-c", script.split(" && mail_destination")[0]],
        cwd=ROOT,
        env={**env, "PORT": "8765", "AIRLOCK_PUBLIC_URL": "https://airlock.example.test"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert kept[0].split() == [
        "http://127.0.0.1:8765",
        "https://airlock.example.test",
        "http://127.0.0.1:8765",
    ]
