"""Benchmark data set-up, run once in its own process after ``migrate``, ``seed_demo``
and ``agent_token``: ``python -m benchmarks.prepare SLUG RATE_LIMIT``.

- Raises the agent's per-minute rate limit so the measured calls stay ``allowed`` (the
  seeded 600/min would turn most of them into ``denied/rate_limited``). Done the way an
  operator would: update the agent and record a new, audited policy version.
- Creates the durable floor's table with a cursor (no migration, no model).
- Prints the agent's current policy snapshot as JSON for the in-process engine timing.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    import config  # noqa: F401  (before the settings: see MANAGE in benchmarks/gate.py)

    django.setup()
    from django.db import connection, transaction

    from audit.chain import Actor
    from benchmarks.views import CREATE_FLOOR_TABLE
    from rollout.actions import record_policy_version
    from rollout.models import Agent

    slug, rate_limit = sys.argv[1], int(sys.argv[2])
    with transaction.atomic():
        agent = Agent.objects.get(slug=slug)
        Agent.objects.filter(pk=agent.pk).update(rate_limit_per_minute=rate_limit)
        record_policy_version(
            agent=agent,
            actor=Actor.system("benchmark"),
            reason=f"benchmark: rate limit {rate_limit}/min",
        )
    with connection.cursor() as cursor:
        cursor.execute(CREATE_FLOOR_TABLE)
    agent = Agent.objects.select_related("current_policy").get(pk=agent.pk)
    print(
        json.dumps(
            {
                "policy_version": agent.current_policy.number,
                "snapshot": agent.current_policy.snapshot,
            }
        )
    )


if __name__ == "__main__":
    main()
