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


# --- outgoing mail (config.settings.base.email_settings, called with the environment) -----

FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def mail(env: dict, *, embedded: bool = False, debug: bool = False) -> dict:
    from config.settings.base import email_settings

    return email_settings(env, embedded=embedded, debug=debug)


def test_email__embedded_default__files_under_var_mail():
    config = mail({}, embedded=True, debug=True)
    assert config["EMAIL_BACKEND"] == FILE_BACKEND
    assert config["EMAIL_FILE_PATH"] == str(ROOT / "var" / "mail")


def test_email__production_default__smtp_on_localhost_with_a_timeout():
    config = mail({})
    assert (config["EMAIL_BACKEND"], config["EMAIL_HOST"], config["EMAIL_PORT"]) == (
        SMTP_BACKEND,
        "localhost",
        25,
    )
    assert config["EMAIL_TIMEOUT"] == 10


def test_email__url__parsed_into_the_email_settings():
    config = mail({"EMAIL_URL": "smtp://airlock:p%40ss%3Aw@mail.example.test:587/?tls=True"})
    assert (config["EMAIL_BACKEND"], config["EMAIL_HOST"], config["EMAIL_PORT"]) == (
        SMTP_BACKEND,
        "mail.example.test",
        587,
    )
    assert (config["EMAIL_HOST_USER"], config["EMAIL_HOST_PASSWORD"]) == ("airlock", "p@ss:w")
    assert (config["EMAIL_USE_TLS"], config["EMAIL_USE_SSL"]) == (True, False)


@pytest.mark.parametrize(
    ("url", "backend", "path"),
    [
        ("file:///srv/airlock/mail", FILE_BACKEND, "/srv/airlock/mail"),
        ("file:var/outbox", FILE_BACKEND, str(ROOT / "var" / "outbox")),
        ("console:", "django.core.mail.backends.console.EmailBackend", None),
    ],
)
def test_email__file_and_console_urls(url, backend, path):
    config = mail({"EMAIL_URL": url})
    assert config["EMAIL_BACKEND"] == backend
    if path:
        assert config["EMAIL_FILE_PATH"] == path


def test_email__single_variables__override_the_url():
    config = mail(
        {
            "EMAIL_URL": "smtp://airlock:old@mail.example.test:587/?tls=True",
            "EMAIL_HOST_PASSWORD": "kept-apart",
            "EMAIL_PORT": "2525",
            "EMAIL_USE_TLS": "0",
        }
    )
    assert (config["EMAIL_HOST_PASSWORD"], config["EMAIL_PORT"]) == ("kept-apart", 2525)
    assert config["EMAIL_USE_TLS"] is False


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"EMAIL_URL": "http://mail.example.test"}, "EMAIL_URL must start with one of"),
        ({"EMAIL_URL": "smtp://h/?ssl=True", "EMAIL_USE_TLS": "1"}, "exclusive"),
        ({"EMAIL_USE_TLS": "maybe"}, "EMAIL_USE_TLS must be 1/0"),
    ],
)
def test_email__bad_configuration__refused_at_start(env, problem):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match=problem):
        mail(env)
