"""A job the desk runs again every so often in a daemon thread, until it is stopped.

The retention purge and the library expiry sweep each destroy data on a timetable: both must survive one
failed run (logged, tried again at the next interval) and stop promptly when the desk shuts down or is wiped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Periodic:
    """Runs ``job`` every ``interval_s`` seconds after ``start`` (the first run at start is the caller's).

    With ``next_in``, the wait before each run is what it returns (capped at ``interval_s``), asked afresh after
    each run and after ``reschedule``: the library expiry sweep waits for the earliest expiry, not the hour.
    The wait is timed on the monotonic clock (``Event.wait``), so a wall clock jump does not stretch it."""

    def __init__(self, name: str, job: Callable[[], object], next_in: Callable[[], float] | None = None) -> None:
        self.name, self._job, self._next_in = name, job, next_in
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def _wait(self, interval_s: float) -> float:
        if self._next_in is None:
            return interval_s
        try:
            return min(interval_s, max(0.0, self._next_in()))
        except Exception:
            logger.exception("%s: could not work out the next run; waiting %.0f s", self.name, interval_s)
            return interval_s

    def reschedule(self) -> None:
        """Ask ``next_in`` again now (something changed what it would say), without running the job."""
        self._wake.set()

    def start(self, interval_s: float) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._wake.clear()

        def loop() -> None:
            while True:
                self._wake.wait(self._wait(interval_s))
                if self._stop.is_set():
                    return
                if self._wake.is_set():  # rescheduled: work out the wait again
                    self._wake.clear()
                    continue
                try:
                    self._job()
                except Exception:
                    logger.exception("%s failed; it is tried again in %.0f s", self.name, interval_s)

        self._thread = threading.Thread(target=loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 60) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None
