"""Test settings: the base settings, with only what tests need changed."""

import os
import tempfile
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
# Signed audit checkpoints of this test run go to a directory of its own (inherited by the
# server and worker processes tests start), never to the developer's var/checkpoints.
# Under pytest-xdist each worker (PYTEST_XDIST_WORKER=gw0, gw1, …) has its own: the workers
# inherit the controller's environment, so the directory is tagged with the worker's name.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_CHECKPOINTS_TAG = f"airlock-test-checkpoints-{_WORKER or 'main'}-"
if _CHECKPOINTS_TAG not in os.environ.get("AUDIT_CHECKPOINT_DIR", ""):
    os.environ["AUDIT_CHECKPOINT_DIR"] = tempfile.mkdtemp(prefix=_CHECKPOINTS_TAG)
# A worker's cache, rate-limit counters and Celery queues live in a Redis database of its own
# (gw0 → 1, gw1 → 2, …), and its channel-layer messages under a prefix of its own (Redis
# pub/sub ignores the database number), so two workers' tests never see each other's.
# Server and worker processes a test starts inherit the environment and land on the same.
if _WORKER and os.environ.get("REDIS_URL"):
    _redis = urlsplit(os.environ["REDIS_URL"])
    _index = int(_WORKER.removeprefix("gw")) + 1
    os.environ["REDIS_URL"] = urlunsplit(_redis._replace(path=f"/{_index}"))

from config.settings.base import *  # noqa: E402, F403 (after the environment above is set)
from config.settings.base import CHANNEL_LAYERS, DATABASES, REDIS_URL  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
# Server processes started by live-server tests must reach the same test database.
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"]["TEST"] = {"NAME": "test_airlock"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Lets the test runner empty the append-only audit table between tests (see the
    # audit trigger migration); UPDATE and DELETE stay refused.
    # Tests open and close connections across threads and processes on their own terms:
    # plain connections, no pool.
    DATABASES["default"]["OPTIONS"] = {"options": "-c airlock.allow_audit_truncate=on"}

if _WORKER and REDIS_URL:
    CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = f"asgi-{_WORKER}"
