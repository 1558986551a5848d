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
