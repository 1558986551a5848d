"""Settings for the benchmark server only: the production settings plus the benchmark's
floor endpoints (``benchmarks.urls``). By default nothing else differs, so the gate is
measured on exactly the stack it ships with.

Two switches, off by default, prototype proposed configuration fixes so the benchmark can
measure them (``benchmarks/gate.py --fixes``; see benchmarks/README.md):

- ``AIRLOCK_BENCH_DB_POOL=1``: PostgreSQL through Django's psycopg connection pool
  (``OPTIONS["pool"]``, needs ``psycopg-pool``) with ``CONN_MAX_AGE=0``. Under ASGI every
  request runs in a new thread, so ``CONN_MAX_AGE=60`` opens one connection per request and
  leaves it open until garbage-collected.
- ``AIRLOCK_BENCH_ASYNC_MIDDLEWARE=1``: an async-capable copy of
  ``config.middleware.RequestBodyLimitMiddleware`` (the only sync-only middleware; Django
  switches threads around it twice per request).
- ``AIRLOCK_BENCH_SHARED_REDIS=1``: one Redis connection pool per process for the cache
  (``benchmarks.redis_pool``); Django keeps cache objects per async context, so under ASGI
  each request otherwise connects to Redis anew.
- ``AIRLOCK_BENCH_CHAIN_STRIPES=K``, ``AIRLOCK_BENCH_LEAN_GATE=1|2`` and
  ``AIRLOCK_BENCH_FAST_THROTTLE=1``: the hot-path prototypes in ``benchmarks.proto``
  (striped per-agent audit chain; fewer round trips in the gate's transaction; a one-round
  -trip agent throttle), applied by ``benchmarks.apps`` at start-up.

Import ``config`` before Django reads these settings (``config.asgi`` does; for management
commands see ``MANAGE`` in benchmarks/gate.py): config/__init__ starts Celery, which reads
the settings at import time and would otherwise see this module half-imported."""

import os
import sys

from config.settings.base import *  # noqa: F403
from config.settings.base import CACHES, DATABASES, INSTALLED_APPS, MIDDLEWARE

ROOT_URLCONF = "benchmarks.urls"

if os.environ.get("AIRLOCK_BENCH_DB_POOL") == "1" and DATABASES["default"]["ENGINE"].endswith(
    "postgresql"
):
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": int(os.environ.get("AIRLOCK_BENCH_DB_POOL_MAX", "8")),
        "timeout": 10,
    }

if os.environ.get("AIRLOCK_BENCH_ASYNC_MIDDLEWARE") == "1":
    MIDDLEWARE = [
        "benchmarks.middleware.RequestBodyLimitMiddleware"
        if name == "config.middleware.RequestBodyLimitMiddleware"
        else name
        for name in MIDDLEWARE
    ]

if os.environ.get("AIRLOCK_BENCH_SHARED_REDIS") == "1" and CACHES["default"]["BACKEND"].endswith(
    "RedisCache"
):
    CACHES["default"].setdefault("OPTIONS", {})["pool_class"] = (
        "benchmarks.redis_pool.SharedConnectionPool"
    )

if any(
    os.environ.get(name)
    for name in (
        "AIRLOCK_BENCH_CHAIN_STRIPES",
        "AIRLOCK_BENCH_LEAN_GATE",
        "AIRLOCK_BENCH_FAST_THROTTLE",
    )
):
    INSTALLED_APPS = [*INSTALLED_APPS, "benchmarks.apps.BenchmarksConfig"]

if os.environ.get("AIRLOCK_BENCH_SWITCH_INTERVAL"):
    # Experiment only: how long a thread waiting for the GIL (e.g. after a database round
    # trip) may have to wait for the thread holding it (Python's default: 5 ms).
    sys.setswitchinterval(float(os.environ["AIRLOCK_BENCH_SWITCH_INTERVAL"]))
