"""Installed by benchmarks.settings only when a prototype switch is on: applies
``benchmarks.proto`` once the app registry is ready."""

import os

from django.apps import AppConfig


class BenchmarksConfig(AppConfig):
    name = "benchmarks"
    label = "benchmarks"

    def ready(self) -> None:
        from benchmarks import proto

        proto.apply(
            stripes=int(os.environ.get("AIRLOCK_BENCH_CHAIN_STRIPES") or 1),
            lean_gate=int(os.environ.get("AIRLOCK_BENCH_LEAN_GATE") or 0),
            fast_throttle=os.environ.get("AIRLOCK_BENCH_FAST_THROTTLE") == "1",
        )
