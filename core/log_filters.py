"""Logging helpers referenced from ``LOGGING`` in the settings."""

from __future__ import annotations

import logging
import threading
import time


class OncePerInterval(logging.Filter):
    """Lets one message (same logger, same format string) through at most once per
    ``interval_seconds``; the next one that passes says how many were held back.

    For libraries that log the same error in a retry loop: channels-redis's pub/sub receiver
    logs a full traceback every second per process while Redis is down, which buries the
    one line an operator needs."""

    def __init__(self, interval_seconds: float = 60.0) -> None:
        super().__init__()
        self.interval_seconds = interval_seconds
        self._lock = threading.Lock()
        self._last: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = time.monotonic()
        with self._lock:
            passed_at, held_back = self._last.get(key, (None, 0))
            if passed_at is not None and now - passed_at < self.interval_seconds:
                self._last[key] = (passed_at, held_back + 1)
                return False
            self._last[key] = (now, 0)
        if held_back:
            record.msg = (
                f"{record.msg} ({held_back} more like it held back in the last "
                f"{self.interval_seconds:g} s)"
            )
        return True
