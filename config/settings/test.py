"""Test settings: the base settings, with only what tests need changed."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
# Signed audit checkpoints of this test run go to a directory of its own (inherited by the
# server and worker processes tests start), never to the developer's var/checkpoints.
os.environ.setdefault("AUDIT_CHECKPOINT_DIR", tempfile.mkdtemp(prefix="airlock-test-checkpoints-"))

from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES

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
