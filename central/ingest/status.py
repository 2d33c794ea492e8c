"""What the rest of central may know about the ingest, without reaching into the connection."""

from __future__ import annotations

import mmap
import struct
import threading
from typing import Protocol


class IngestStatus(Protocol):
    """Read-only view of a running ingest, for health checks and pages."""

    @property
    def connected(self) -> bool: ...

    @property
    def received(self) -> int: ...

    @property
    def rejected(self) -> int: ...


class SharedIngestStatus:
    """The ingest's status in memory shared with the web's worker processes.

    The ingest runs in the server's master process; gunicorn forks the web workers from it, so they hold
    copies of the ingest objects whose threads do not run in them. ``/healthz`` in a worker reads this
    instead: an anonymous shared mapping made before the fork, which the master refreshes from the live
    ingest (``copy_from``) every ``interval_s`` on a thread of its own.
    """

    _FORMAT = "<qqq"

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, struct.calcsize(self._FORMAT))  # MAP_SHARED: the forked workers see writes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def copy_from(self, status: IngestStatus) -> None:
        self._map[:] = struct.pack(self._FORMAT, int(status.connected), status.received, status.rejected)

    def _values(self) -> tuple[int, int, int]:
        return struct.unpack(self._FORMAT, self._map[:])  # type: ignore[return-value]

    @property
    def connected(self) -> bool:
        return bool(self._values()[0])

    @property
    def received(self) -> int:
        return self._values()[1]

    @property
    def rejected(self) -> int:
        return self._values()[2]

    def follow(self, status: IngestStatus, interval_s: float = 0.5) -> None:
        """Keep copying ``status`` until ``stop``."""
        self.copy_from(status)

        def run() -> None:
            while not self._stop.wait(interval_s):
                self.copy_from(status)

        self._thread = threading.Thread(target=run, name="ingest-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
