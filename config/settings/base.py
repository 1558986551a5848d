"""Airlock settings. Every value that differs between machines comes from the environment,
read here and nowhere else (see README "Configuration")."""

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import dj_database_url
import dj_email_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return _bool_value(name, raw)


def _bool_value(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be 1/0 or true/false, got {raw!r}")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# The embedded setup (no DATABASE_URL: SQLite in var/) keeps its key in the file scripts/run
# writes once, so any command run beside it — `manage.py agent_token` in a fresh shell —
# signs with the same key as the server. With a DATABASE_URL, the key comes from the
# environment only.
EMBEDDED_KEY_FILE = VAR_DIR / "secret_key"
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY and not os.environ.get("DATABASE_URL") and EMBEDDED_KEY_FILE.is_file():
    SECRET_KEY = EMBEDDED_KEY_FILE.read_text().strip()
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off (the embedded setup reads var/secret_key, "
            "which scripts/run writes on its first run)"
        )
    SECRET_KEY = "insecure-development-key-set-SECRET_KEY-in-production"
# Previous secret keys after a rotation (comma-separated): sessions, and audit checkpoints
# and export chain heads signed with a key derived from them, still verify.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", "")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "django_htmx",
    "channels",
    "audit",
    "accounts",
    "rollout",
    "grants",
    "approvals",
    "incidents",
    "governance",
    "slack_approvals",
]

# The "PeopleOnly" ones are Django's (and django-htmx's) session, CSRF, authentication,
# messages and htmx middlewares, stepping aside for an agent's bearer-token call to the agent
# API, which needs none of them (config/agent_calls.py says why that opens no way around CSRF).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "core.middleware.RequestBodyLimitMiddleware",
    "config.agent_calls.PeopleOnlySessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "config.agent_calls.PeopleOnlyCsrfViewMiddleware",
    "config.agent_calls.PeopleOnlyAuthenticationMiddleware",
    # Who acts in this request, for audit events no caller names an actor for (roles, accounts).
    "audit.actor_context.ActorContextMiddleware",
    "config.agent_calls.PeopleOnlyMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.agent_calls.PeopleOnlyHtmxMiddleware",
    # The 404 page (not Django's debug page) for pages, with DEBUG on or off.
    "core.error_pages.NotFoundPageMiddleware",
    # Audits refused requests (access.refused) once their answer is made: API and pages.
    "config.refusal_audit.RefusalAuditMiddleware",
]

# Django's "no CSRF middleware" check looks for the exact class; the stack names a subclass
# (config.agent_calls). approvals.checks runs it (as airlock.W003) and the session and CSRF
# cookie checks again with subclasses recognised.
SILENCED_SYSTEM_CHECKS = ["security.W003"]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                # What the navigation offers and where "/" leads (approvals.navigation).
                "approvals.navigation.navigation",
            ],
        },
    }
]

# --- Content-Security-Policy (django-csp) ------------------------------------------------
# On every response. No inline script or style anywhere (the pages load their code and
# styles from /static/; htmx is configured to inject neither); nothing from other origins.
# 'self' also covers the same-origin websocket (ws:/wss:) in current browsers.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# --- Database -----------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'airlock.sqlite3'}"


def database_config(url: str) -> dict:
    """Parse DATABASE_URL. SQLite is written by several processes at once (server, worker,
    CLI), so it always gets WAL, a busy timeout and IMMEDIATE transactions: a writer waits
    for the lock instead of failing with "database is locked" halfway through."""
    config = dj_database_url.parse(url, conn_max_age=0)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    elif config["ENGINE"] == "django.db.backends.postgresql":
        # A connection pool per process, not persistent connections: under ASGI each sync
        # request runs in a fresh thread, and per-thread persistent connections pile up
        # until PostgreSQL refuses more clients.
        # (Django's pool checks each connection before handing it out, so connections
        # broken by a database restart are replaced.)
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "pool": {
                "min_size": int(os.environ.get("DATABASE_POOL_MIN", "2")),
                "max_size": int(os.environ.get("DATABASE_POOL_MAX", "10")),
                # Past this wait for a connection, the request fails (the API answers 503).
                "timeout": 5,
            }
        }
    else:
        raise ImproperlyConfigured("DATABASE_URL must be a sqlite:// or postgres:// URL")
    return config


DATABASES = {"default": database_config(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, channels, cache, Celery --------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")

if REDIS_URL:
    # Redis pub/sub rather than channels_redis's list-based default: a group event is one
    # PUBLISH that Redis hands once to each server process, which fans it out to its own
    # sockets in memory (the default layer costs a Redis round trip per socket — 100
    # dashboards took p99 ~300 ms vs ~110 ms here; benchmarks/fanout.py). Pub/sub keeps
    # nothing for a process that is not listening, which suits what travels here: wake-ups
    # and refresh hints whose truth is in PostgreSQL (dashboards re-read on reconnect and
    # every 30 s, long-polls re-check the database). Timeouts: a Redis that hangs (rather
    # than refuses) must not hold a request. on_reconnect: when a process's subscription
    # comes back after Redis was lost, its dashboards and long-polls are told to re-read
    # (core/channel_layer.py), since what was published meanwhile never reached them.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "core.channel_layer.NotifyingRedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [
                    {"address": REDIS_URL, "socket_connect_timeout": 2, "socket_timeout": 10}
                ],
                "on_reconnect": "layer.reconnected",
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "socket_connect_timeout": 2,
                "socket_timeout": 2,
                "pool_class": "core.cache.SharedConnectionPool",
            },
        }
    }
else:
    # One process only: events produced in other processes (worker, CLI) reach dashboards
    # through their periodic re-sync, not through this layer.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def default_broker_url() -> str:
    if REDIS_URL:
        return REDIS_URL
    db = DATABASES["default"]
    folder = Path(db["NAME"]).parent if db["ENGINE"].endswith("sqlite3") else VAR_DIR
    return f"sqla+sqlite:///{folder / 'celery-broker.sqlite3'}"


CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or default_broker_url()
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        # Tasks are acknowledged late, so a task taken by a worker that then died whole
        # (no process left to hand it back) stays unacknowledged on Redis; a worker puts it
        # back in the queue once this long has passed since it was taken (when it starts,
        # then every ~100 s). It must exceed the longest countdown (webhook retry backoff:
        # 300 s) and the longest task, or a task still held by a live worker runs twice.
        # Owed webhooks do not wait for it: redispatch_outbox re-queues them after a minute.
        "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT_SECONDS", "3600")),
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# Acknowledged when done, not when taken: a task whose worker dies is not lost. A pool
# process killed mid-task (say, by the OOM killer) is seen by its worker, which puts the
# task back at once (reject on worker lost); a whole worker killed: see visibility_timeout.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Enqueueing happens after a change committed, inside the request: when the broker is down,
# give up quickly (the outbox row stays and is re-dispatched) rather than hold the answer.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_BEAT_SCHEDULE = {
    "expire-stale-actions": {"task": "approvals.tasks.expire_stale_actions", "schedule": 15.0},
    "audit-checkpoint": {"task": "audit.tasks.write_checkpoint", "schedule": 60.0},
}

# --- Auth ---------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Bearer first: DRF answers 401 (not 403) when the first authenticator names a scheme.
    # Agents' tokens (alk_), people's personal tokens (alp_), then the session.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rollout.authentication.AgentTokenAuthentication",
        "accounts.authentication.PersonalTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.SafeJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "core.openapi.AirlockAutoSchema",
    "EXCEPTION_HANDLER": "core.api_errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "agent": os.environ.get("AGENT_HTTP_RATE", "1200/min"),
        "person": os.environ.get("PERSON_HTTP_RATE", "600/min"),
        # Tool services check a grant per tool call (POST /api/v1/grants/verify).
        "service": os.environ.get("SERVICE_HTTP_RATE", "6000/min"),
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Airlock API",
    "DESCRIPTION": "The human-approval control plane for AI agents.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No deep links: Swagger UI draws each operation's path as a link inside the button that
    # opens it, a control inside a control (axe: nested-interactive) that keyboards and screen
    # readers cannot use apart. The operations still open and close in place.
    "SWAGGER_UI_SETTINGS": {"deepLinking": False},
    "COMPONENT_SPLIT_REQUEST": True,
}
# Bodies above this answer 413 as JSON (core.middleware), before any parsing.
MAX_REQUEST_BODY_BYTES = 256 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# --- Airlock ------------------------------------------------------------------------------
# Long-poll: the longest wait an agent may ask for, and how often a waiting request re-reads
# the action when no channel-layer wake-up arrives (decision made in another process
# without a shared layer).
LONG_POLL_MAX_SECONDS = 60
LONG_POLL_RECHECK_SECONDS = float(
    os.environ.get("LONG_POLL_RECHECK_SECONDS", "2" if not REDIS_URL else "10")
)
# Unset: var/checkpoints/<installation id>/, one directory per database (audit.installation).
AUDIT_CHECKPOINT_DIR = (
    Path(os.environ["AUDIT_CHECKPOINT_DIR"]) if os.environ.get("AUDIT_CHECKPOINT_DIR") else None
)

# --- Static, i18n -------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "once_a_minute": {"()": "core.log_filters.OncePerInterval", "interval_seconds": 60}
    },
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        # Its receive loop logs a traceback every second per process while Redis is down.
        "channels_redis.pubsub": {"filters": ["once_a_minute"]},
    },
}

# Hosts webhooks may reach even though they resolve to private or loopback addresses.
WEBHOOK_ALLOWED_HOSTS = env_list("WEBHOOK_ALLOWED_HOSTS", "")

# The environments agent tokens may be bound to (``rollout.environments``): lowercase
# slugs, compared trimmed and case-insensitively with a call's declared environment.
AIRLOCK_ENVIRONMENTS = [
    name.lower() for name in env_list("AIRLOCK_ENVIRONMENTS", "sandbox,staging,production")
]
for _environment in AIRLOCK_ENVIRONMENTS:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", _environment):
        raise ImproperlyConfigured(
            "AIRLOCK_ENVIRONMENTS: each name is a slug of at most 40 letters, digits, '-' or "
            f"'_', got {_environment!r}"
        )

# Where drills send their probe (the gate as agents reach it).
AIRLOCK_GATE_URL = os.environ.get("AIRLOCK_GATE_URL", "http://127.0.0.1:8000")

# --- Background work ----------------------------------------------------------------------
# An approved or allowed action must be executed within this many seconds, or it is revoked.
GRANT_TTL_SECONDS = int(os.environ.get("GRANT_TTL_SECONDS", "3600"))
# Undecided actions escalate at this fraction of their time to expiry.
ESCALATION_FRACTION = float(os.environ.get("ESCALATION_FRACTION", "0.5"))
# Pending actions at or above this risk notify their reviewers (low, medium, high, critical).
NOTIFY_MIN_RISK = os.environ.get("NOTIFY_MIN_RISK", "high")
# A Slack-compatible incoming-webhook URL that hears every notification (per-agent routes too).
NOTIFY_CHAT_WEBHOOK_URL = os.environ.get("NOTIFY_CHAT_WEBHOOK_URL", "")
# Airlock as people reach it: every link in email, chat and webhooks starts here
# (core.links.public_url). scripts/run sets it from its PORT.
AIRLOCK_PUBLIC_URL = os.environ.get("AIRLOCK_PUBLIC_URL", "http://127.0.0.1:8000")
# Slack approvals (slack_approvals/): a Slack app's bot token (xoxb-…, scopes chat:write and
# im:write) and its signing secret. Both unset: Slack is off (nothing is owed to Slack and its
# endpoints answer 503 slack_not_configured). The Web API's base URL is a setting so that
# tests (and a proxy) can point it elsewhere.
SLACK_BOT_TOKEN = os.environ.get("SLACK_BOT_TOKEN", "")
SLACK_SIGNING_SECRET = os.environ.get("SLACK_SIGNING_SECRET", "")
SLACK_API_URL = os.environ.get("SLACK_API_URL", "https://slack.com/api/")
# How long the link a Slack user gets to connect their Airlock account stays valid.
SLACK_LINK_MAX_AGE_SECONDS = int(os.environ.get("SLACK_LINK_MAX_AGE_SECONDS", "900"))


def email_settings(environ: Mapping[str, str], *, embedded: bool, debug: bool) -> dict[str, Any]:
    """Django's ``EMAIL_*`` settings from the environment, in this order (later wins):

    1. the default: the embedded setup (no ``DATABASE_URL``, what ``scripts/run`` starts)
       writes each message to a file under ``var/mail``; otherwise the console with
       ``DEBUG``, else SMTP on localhost:25;
    2. ``EMAIL_URL`` parsed by dj-email-url (``smtp://user:pass@host:587/?tls=True``,
       ``submission://…``, ``file:///absolute/dir``, ``console:``): ``file:`` paths that
       are not absolute are taken from the repository root;
    3. each ``EMAIL_*`` variable set on its own (a password kept apart from the URL, say)."""
    config: dict[str, Any] = {
        "EMAIL_HOST": "localhost",
        "EMAIL_PORT": 25,
        "EMAIL_HOST_USER": "",
        "EMAIL_HOST_PASSWORD": "",
        "EMAIL_USE_TLS": False,
        "EMAIL_USE_SSL": False,
        # A mail server that hangs must not hold the notification task for ever.
        "EMAIL_TIMEOUT": 10,
        "EMAIL_FILE_PATH": str(VAR_DIR / "mail"),
    }
    if embedded:
        config["EMAIL_BACKEND"] = "django.core.mail.backends.filebased.EmailBackend"
    elif debug:
        config["EMAIL_BACKEND"] = "django.core.mail.backends.console.EmailBackend"
    else:
        config["EMAIL_BACKEND"] = "django.core.mail.backends.smtp.EmailBackend"
    url = environ.get("EMAIL_URL", "").strip()
    if url:
        scheme = urlsplit(url).scheme
        if scheme not in dj_email_url.SCHEMES:
            raise ImproperlyConfigured(
                f"EMAIL_URL must start with one of {', '.join(sorted(dj_email_url.SCHEMES))}: "
                f"got {scheme or 'no scheme'}"
            )
        parsed = dj_email_url.parse(url)
        config.update({k: v for k, v in parsed.items() if v is not None and k != "EMAIL_FILE_PATH"})
        if scheme == "file":
            # dj-email-url drops the leading "/" of file:///abs/dir; the URL's own path is meant.
            path = Path(unquote(urlsplit(url).path) or "var/mail")
            config["EMAIL_FILE_PATH"] = str(path if path.is_absolute() else BASE_DIR / path)
    for name in ("EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD"):
        if environ.get(name):
            config[name] = environ[name]
    for name in ("EMAIL_PORT", "EMAIL_TIMEOUT"):
        if environ.get(name):
            config[name] = int(environ[name])
    for name in ("EMAIL_USE_TLS", "EMAIL_USE_SSL"):
        if environ.get(name):
            config[name] = _bool_value(name, environ[name])
    if environ.get("EMAIL_FILE_PATH"):
        config["EMAIL_FILE_PATH"] = environ["EMAIL_FILE_PATH"]
    if config["EMAIL_USE_TLS"] and config["EMAIL_USE_SSL"]:
        raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive: set one")
    return config


def mail_destination() -> str:
    """Where outgoing mail goes with these settings, in words (``scripts/run`` prints it)."""
    backend = EMAIL_BACKEND.rsplit(".", 2)[-2] if EMAIL_BACKEND.count(".") >= 2 else EMAIL_BACKEND
    if backend == "filebased":
        return f"written to files in {EMAIL_FILE_PATH}/ (set EMAIL_URL to send it)"
    if backend == "smtp":
        return f"sent by SMTP to {EMAIL_HOST}:{EMAIL_PORT}"
    if backend == "console":
        return "printed by the worker to its log (set EMAIL_URL to send it)"
    return f"handed to {EMAIL_BACKEND}"


# The embedded setup: no DATABASE_URL (SQLite in var/, what scripts/run starts).
EMBEDDED = not os.environ.get("DATABASE_URL")
email_config = email_settings(os.environ, embedded=EMBEDDED, debug=DEBUG)
EMAIL_BACKEND = email_config["EMAIL_BACKEND"]
EMAIL_HOST = email_config["EMAIL_HOST"]
EMAIL_PORT = email_config["EMAIL_PORT"]
EMAIL_HOST_USER = email_config["EMAIL_HOST_USER"]
EMAIL_HOST_PASSWORD = email_config["EMAIL_HOST_PASSWORD"]
EMAIL_USE_TLS = email_config["EMAIL_USE_TLS"]
EMAIL_USE_SSL = email_config["EMAIL_USE_SSL"]
EMAIL_TIMEOUT = email_config["EMAIL_TIMEOUT"]
EMAIL_FILE_PATH = email_config["EMAIL_FILE_PATH"]
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL") or email_config.get(
    "DEFAULT_FROM_EMAIL", "airlock@localhost"
)
# Webhook signing: a rotated secret is still accepted (sent as a second signature) this long.
WEBHOOK_SECRET_GRACE_SECONDS = int(os.environ.get("WEBHOOK_SECRET_GRACE_SECONDS", "86400"))
# /metrics is served to this bearer token (and to staff sessions); empty: staff only.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

CELERY_BEAT_SCHEDULE.update(
    {
        "escalate-due-actions": {"task": "approvals.tasks.escalate_due_actions", "schedule": 30.0},
        "redispatch-outbox": {"task": "approvals.tasks.redispatch_outbox", "schedule": 60.0},
        "send-notification-batches": {
            "task": "approvals.tasks.send_notification_batches",
            "schedule": 15.0,
        },
        "rollup-daily-stats": {"task": "approvals.tasks.rollup_daily_stats", "schedule": 300.0},
        "redispatch-slack": {"task": "slack_approvals.tasks.redispatch_slack", "schedule": 60.0},
    }
)

# --- Audit --------------------------------------------------------------------------------
import json  # noqa: E402  (only the audit settings below parse JSON)

# Signed checkpoints of the chain head go to AUDIT_CHECKPOINT_DIR (above), outside the
# database. Their HMAC key; empty: derived from SECRET_KEY (set a separate key in production,
# so that whoever can read the database settings cannot forge checkpoints).
AUDIT_CHECKPOINT_KEY = os.environ.get("AUDIT_CHECKPOINT_KEY", "")
# Action payloads (arguments, original arguments, evidence, rationale, results) older than
# this many days are redacted on the action rows; the chain keeps only their hashes, so it
# still verifies. 0 keeps them forever.
AUDIT_PAYLOAD_RETENTION_DAYS = int(os.environ.get("AUDIT_PAYLOAD_RETENTION_DAYS", "0"))
# Argument fields masked for viewers without ``audit.view_sensitive``: tool name (or "*" for
# every tool) -> dotted paths; "*" matches any key or list item, a leading "**." any depth.
AUDIT_REDACTED_ARGUMENT_PATHS = json.loads(
    os.environ.get("AUDIT_REDACTED_ARGUMENT_PATHS", '{"*": ["**.card_number", "**.cvv"]}')
)
if not isinstance(AUDIT_REDACTED_ARGUMENT_PATHS, dict) or not all(
    isinstance(paths, list) and all(isinstance(p, str) for p in paths)
    for paths in AUDIT_REDACTED_ARGUMENT_PATHS.values()
):
    raise ImproperlyConfigured(
        'AUDIT_REDACTED_ARGUMENT_PATHS must be a JSON object {"tool": ["path", ...]}'
    )
# The periodic verification: incremental every AUDIT_VERIFY_INTERVAL_SECONDS, a full walk
# when the last full one is older than AUDIT_FULL_VERIFY_HOURS.
AUDIT_VERIFY_INTERVAL_SECONDS = float(os.environ.get("AUDIT_VERIFY_INTERVAL_SECONDS", "300"))
AUDIT_FULL_VERIFY_HOURS = float(os.environ.get("AUDIT_FULL_VERIFY_HOURS", "24"))
# A person's views of one action are audited at most once per this many seconds.
AUDIT_VIEW_DEDUP_SECONDS = int(os.environ.get("AUDIT_VIEW_DEDUP_SECONDS", "600"))
CELERY_BEAT_SCHEDULE.update(
    {
        "audit-verify": {
            "task": "audit.tasks.verify_chain_periodically",
            "schedule": AUDIT_VERIFY_INTERVAL_SECONDS,
        },
        "audit-retention": {
            "task": "approvals.tasks.apply_payload_retention",
            "schedule": 3600.0,
        },
    }
)
# Chain stripes per agent (PostgreSQL): an agent's events go to whichever of its stripes
# (partitions ``slug``, ``slug#1`` … ``slug#N-1``) no other transaction holds, so its
# concurrent gate calls do not queue on one chain head across their commits. The first
# stripe is taken whenever it is free, so a quiet agent's events stay in one chain; each
# stripe is an ordinary hash chain, and the checkpoints record every stripe's head.
# 1: one chain per agent.
AUDIT_CHAIN_STRIPES = int(os.environ.get("AUDIT_CHAIN_STRIPES", "8"))
if AUDIT_CHAIN_STRIPES < 1:
    raise ImproperlyConfigured("AUDIT_CHAIN_STRIPES must be at least 1")
# Processes a full verification of a large log uses on PostgreSQL; 0: the cores, up to 4.
AUDIT_VERIFY_WORKERS = int(os.environ.get("AUDIT_VERIFY_WORKERS", "0"))
# Retired checkpoint keys (comma-separated), still accepted for lines signed before a rotation.
AUDIT_CHECKPOINT_PREVIOUS_KEYS = env_list("AUDIT_CHECKPOINT_PREVIOUS_KEYS", "")

# --- Access: two-factor, step-up, personal tokens, logins, sessions -----------------------
INSTALLED_APPS += ["django_otp", "django_otp.plugins.otp_totp"]
# Ends a session after this many seconds without a click (live refreshes do not count).
SESSION_IDLE_TIMEOUT_SECONDS = int(os.environ.get("SESSION_IDLE_TIMEOUT_SECONDS", "1800"))
# Live sockets re-read their session and rights at least this often (besides at once on
# every access hint): the backstop for a lost hint or a session that merely expired.
LIVE_SOCKET_RECHECK_SECONDS = float(os.environ.get("LIVE_SOCKET_RECHECK_SECONDS", "60"))
# Innermost (after the auth and messages middlewares it needs): it is sync-only, so Django
# runs every middleware outside it in sync mode in one worker thread; innermost, none is
# left in async mode to hop threads for its process_response (see its docstring).
MIDDLEWARE.append("config.agent_calls.PeopleOnlySessionIdleTimeoutMiddleware")
# The longest a session lives, active or not.
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_MAX_AGE_SECONDS", "43200"))
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients).
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Roles (group names) whose members must use a second factor; "superuser" names superusers
# and "*" everyone. Empty: two-factor is optional (but, once enrolled, always asked).
TWO_FACTOR_REQUIRED_ROLES = env_list("TWO_FACTOR_REQUIRED_ROLES", "")
OTP_TOTP_ISSUER = os.environ.get("TWO_FACTOR_ISSUER", "Airlock")
RECOVERY_CODE_COUNT = 10
# Step-up: approving a high or critical action, releasing a kill switch, approving a
# governance change and creating a personal token need a second-factor code entered within
# the last STEP_UP_WINDOW_SECONDS.
STEP_UP_ENABLED = env_bool("STEP_UP_ENABLED", False)
STEP_UP_WINDOW_SECONDS = int(os.environ.get("STEP_UP_WINDOW_SECONDS", "300"))
# Re-authentication: enrolling, replacing or removing a second factor, new recovery codes
# and creating a personal token need the password typed within the last
# REAUTH_WINDOW_SECONDS (asked inline with the form; wrong ones count as failed logins).
REAUTH_WINDOW_SECONDS = int(os.environ.get("REAUTH_WINDOW_SECONDS", "300"))
# Personal API tokens expire after at most this many days.
PERSONAL_TOKEN_MAX_DAYS = int(os.environ.get("PERSONAL_TOKEN_MAX_DAYS", "365"))
# Failed logins (password or second factor) allowed per username and per client address
# within LOGIN_FAILURE_WINDOW_SECONDS; more are refused until the window has passed.
LOGIN_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
LOGIN_FAILURE_LIMIT_PER_IP = int(os.environ.get("LOGIN_FAILURE_LIMIT_PER_IP", "20"))
LOGIN_FAILURE_WINDOW_SECONDS = int(os.environ.get("LOGIN_FAILURE_WINDOW_SECONDS", "900"))
# Proxies in front of the app that append to X-Forwarded-For (0: use the peer address).
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))
