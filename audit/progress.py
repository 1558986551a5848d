"""Progress and an ETA for long work on a terminal (verify, export).

On a terminal one status line is rewritten in place; otherwise (a log file, CI) a plain line
is written every few seconds. Nothing is written when disabled."""

from __future__ import annotations

import time
from typing import TextIO


def _human(number: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if number >= size:
            return f"{number / size:.1f}{unit}"
    return f"{number:.0f}"


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TerminalProgress:
    """``update(done)`` as work advances; ``finish()`` at the end (or on interruption)."""

    def __init__(
        self,
        stream: TextIO,
        label: str,
        total: float | None = None,
        unit: str = "events",
        enabled: bool = True,
        interval: float | None = None,
    ) -> None:
        self.stream = stream
        self.label = label
        self.total = total or None
        self.unit = unit
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.interval = interval if interval is not None else (0.2 if self.tty else 5.0)
        self.started = time.monotonic()
        self._last_print = 0.0
        self.done = 0.0

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.label}: {_human(self.done)} {self.unit}, {_human(rate)} {self.unit}/s"
        if self.total:
            share = min(self.done / self.total, 1.0)
            text += f", {share:6.1%}"
            if rate > 0 and self.done < self.total:
                text += f", ETA {_clock((self.total - self.done) / rate)}"
        return text + f", {_clock(elapsed)} elapsed"

    def update(self, done: float, force: bool = False) -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_print < self.interval:
            return
        self._last_print = now
        if self.tty:
            self.stream.write("\r\033[K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.flush()
