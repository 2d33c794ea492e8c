"""A text progress bar on stderr for long enrolments: done, rate and time left.

Hand-rolled rather than tqdm to add no dependency; on a terminal it redraws
one line, otherwise (a log file, CI) it prints a line every ``log_every``
seconds so the log shows progress without a flood.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 30


class ProgressBar:
    def __init__(self, total: int, label: str = "enrol", stream: TextIO | None = None,
                 min_interval: float = 0.25, log_every: float = 30.0) -> None:
        self.total, self.label = total, label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.interval = min_interval if self.tty else log_every
        self.done = 0
        self._started = time.perf_counter()
        self._last = 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self._last >= self.interval or self.done >= self.total:
            self._last = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.perf_counter()) - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        share = self.done / self.total if self.total else 1.0
        filled = int(share * _WIDTH)
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        eta = time.strftime("%H:%M:%S", time.gmtime(left))
        return (f"{self.label} [{'#' * filled}{'-' * (_WIDTH - filled)}] {self.done}/{self.total} "
                f"{share:4.0%}  {rate:.1f} images/s  ETA {eta}")

    def _draw(self, now: float) -> None:
        if self.tty:
            self.stream.write("\r" + self.line(now))
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self._draw(time.perf_counter())
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()
