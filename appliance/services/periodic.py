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
    """Runs ``job`` every ``interval_s`` seconds after ``start`` (the first run at start is the caller's)."""

    def __init__(self, name: str, job: Callable[[], object]) -> None:
        self.name, self._job = name, job
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, interval_s: float) -> None:
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self._job()
                except Exception:
                    logger.exception("%s failed; it is tried again in %.0f s", self.name, interval_s)

        self._thread = threading.Thread(target=loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 60) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None
