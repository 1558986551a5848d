"""``manage.py check --deploy`` is clean with the production settings README tells operators
to set (read from README itself, so the two cannot drift apart)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECK = (
    "import django; django.setup(); "
    "from django.core.management import call_command; "
    "call_command('check', '--deploy', fail_level='WARNING')"
)


def production_environment() -> dict[str, str]:
    """The ``export NAME=value`` lines of README's production block, with a fresh secret."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- production-env -->\s*```bash\n(.*?)```", readme, re.S)
    assert block, "README lost its production settings block"
    env = dict(re.findall(r"^export (\w+)=\"?([^\"\n]*)\"?$", block.group(1), re.M))
    assert env.get("DEBUG") == "0"
    env["SECRET_KEY"] = secrets.token_urlsafe(50)
    return env


def run_check(tmp_path: Path, **overrides: str) -> subprocess.CompletedProcess:
    # Only the production variables (and what Python needs): nothing of the test settings.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'airlock.sqlite3'}",
        "AUDIT_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        **production_environment(),
        **overrides,
    }
    return subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy__readme_production_settings__no_warnings(tmp_path: Path) -> None:
    result = run_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout + result.stderr


def test_check_deploy__a_setting_left_out__is_reported(tmp_path: Path) -> None:
    # The check really runs with these settings: drop HSTS and it says so
    result = run_check(tmp_path, SECURE_HSTS_SECONDS="0")
    assert result.returncode != 0
    assert "security.W004" in result.stdout + result.stderr


def test_check_deploy__mail_kept_locally_and_links_to_localhost__are_reported(
    tmp_path: Path,
) -> None:
    # Notifications that would never reach anyone: mail written to the console, and links
    # built from the development default of the public URL
    result = run_check(tmp_path, EMAIL_URL="console:", AIRLOCK_PUBLIC_URL="http://127.0.0.1:8000")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "airlock.W001" in output and "printed to the console" in output
    assert "airlock.W002" in output and "AIRLOCK_PUBLIC_URL" in output


def test_check_deploy__insecure_session_cookie__still_reported_with_our_middleware(
    tmp_path: Path,
) -> None:
    # The session middleware in the stack is a subclass (agent calls skip it): Django's own
    # cookie checks must still see it
    result = run_check(tmp_path, SECURE_COOKIES="0")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "security.W012" in output and "security.W016" in output
