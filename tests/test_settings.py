"""Settings read from the environment: each case imports config.settings.base in a fresh
interpreter, because the module reads os.environ once, at import."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json
from config.settings import base as s
print(json.dumps({
    "channel_backend": s.CHANNEL_LAYERS["default"]["BACKEND"],
    "cache_backend": s.CACHES["default"]["BACKEND"],
    "broker": s.CELERY_BROKER_URL,
    "db": {k: v for k, v in s.DATABASES["default"].items() if k in ("ENGINE", "NAME", "OPTIONS")},
    "var_dir": str(s.VAR_DIR),
}))
"""

SETTINGS_VARS = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")


def load_settings(**env: str) -> dict:
    """Import the base settings with exactly these settings variables set (others removed)."""
    child_env = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARS}
    child_env.update({"SECRET_KEY": "settings-test-key", "DEBUG": "0"})
    child_env.update(env)
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_redis_url_selects_redis_channel_layer_cache_and_broker(tmp_path):
    redis_url = "redis://127.0.0.1:6399/3"
    s = load_settings(REDIS_URL=redis_url, DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}")
    assert s["channel_backend"] == "core.channel_layer.NotifyingRedisPubSubChannelLayer"
    assert s["cache_backend"] == "django.core.cache.backends.redis.RedisCache"
    assert s["broker"] == redis_url


def test_without_redis_everything_is_embedded(tmp_path):
    s = load_settings(DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}")
    assert s["channel_backend"] == "channels.layers.InMemoryChannelLayer"
    assert s["cache_backend"] == "django.core.cache.backends.locmem.LocMemCache"
    # The SQLite broker sits beside the SQLite database.
    assert s["broker"] == f"sqla+sqlite:///{tmp_path / 'celery-broker.sqlite3'}"


def test_without_redis_on_postgres_the_broker_is_sqlite_in_var():
    s = load_settings(DATABASE_URL="postgres://postgres@127.0.0.1:5999/airlock")
    assert s["db"]["ENGINE"] == "django.db.backends.postgresql"
    assert s["broker"] == f"sqla+sqlite:///{Path(s['var_dir']) / 'celery-broker.sqlite3'}"


def test_explicit_broker_url_wins():
    s = load_settings(REDIS_URL="redis://127.0.0.1:6399/0", CELERY_BROKER_URL="redis://h:1/5")
    assert s["broker"] == "redis://h:1/5"


@pytest.mark.parametrize("explicit", [True, False], ids=["sqlite-url", "default-url"])
def test_sqlite_gets_immediate_transactions_and_wal(tmp_path, explicit):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"} if explicit else {}
    s = load_settings(**env)
    db = s["db"]
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    if explicit:
        assert db["NAME"] == str(tmp_path / "x.sqlite3")
    else:
        assert db["NAME"] == str(Path(s["var_dir"]) / "airlock.sqlite3")
    assert db["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in db["OPTIONS"]["init_command"]
