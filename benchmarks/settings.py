"""Settings for the benchmark server only: the production settings plus the benchmark's
floor endpoints (``benchmarks.urls``). Nothing else differs, so the gate is measured on
exactly the stack it ships with (``benchmarks/gate.py --configs`` varies only environment
variables the production settings read, such as ``AUDIT_CHAIN_STRIPES``).

Import ``config`` before Django reads these settings (``config.asgi`` does; for management
commands see ``MANAGE`` in benchmarks/gate.py): config/__init__ starts Celery, which reads
the settings at import time and would otherwise see this module half-imported."""

import os
import sys

from config.settings.base import *  # noqa: F403

ROOT_URLCONF = "benchmarks.urls"

if os.environ.get("AIRLOCK_BENCH_SWITCH_INTERVAL"):
    # Experiment only: how long a thread waiting for the GIL (e.g. after a database round
    # trip) may have to wait for the thread holding it (Python's default: 5 ms).
    sys.setswitchinterval(float(os.environ["AIRLOCK_BENCH_SWITCH_INTERVAL"]))

if os.environ.get("AIRLOCK_BENCH_SERVER_SIDE_BINDING"):
    # Experiment only (gate.py --configs prepared): psycopg binds parameters on the server
    # and prepares a statement once a connection has run it 5 times, so PostgreSQL stops
    # re-planning the gate's statements. Not shipped: it changes how every query of the
    # project binds its parameters.
    DATABASES["default"]["OPTIONS"] = {  # noqa: F405
        **DATABASES["default"]["OPTIONS"],  # noqa: F405
        "server_side_binding": True,
        # Django passes None (never prepare) unless told; psycopg's default is 5.
        "prepare_threshold": 5,
    }
