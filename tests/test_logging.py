"""The log filter that keeps a library's retry loop from burying everything else."""

from __future__ import annotations

import logging

from core import log_filters


def record(msg: str = "Unexpected exception in receive task") -> logging.LogRecord:
    return logging.LogRecord("channels_redis.pubsub", logging.ERROR, __file__, 1, msg, (), None)


def test_once_per_interval__repeats_held_back_then_counted(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(log_filters.time, "monotonic", lambda: clock[0])
    once = log_filters.OncePerInterval(interval_seconds=60)
    first = record()
    assert once.filter(first) and first.getMessage() == "Unexpected exception in receive task"
    for _ in range(59):  # one a second while Redis is down
        clock[0] += 1
        assert not once.filter(record())
    assert once.filter(record("another message"))  # other messages are not held back
    clock[0] += 1
    later = record()
    assert once.filter(later)
    assert later.getMessage() == (
        "Unexpected exception in receive task (59 more like it held back in the last 60 s)"
    )


def test_settings__pubsub_logger_is_filtered():
    from django.conf import settings

    assert settings.LOGGING["loggers"]["channels_redis.pubsub"]["filters"] == ["once_a_minute"]
    filters = logging.getLogger("channels_redis.pubsub").filters
    assert any(isinstance(f, log_filters.OncePerInterval) for f in filters)
