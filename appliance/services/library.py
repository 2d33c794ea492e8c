"""The library the desk searches, swapped atomically when an update is installed.

Searches take a reference to the current snapshot and keep using it to the
end, so an update never changes a result half-way; the swap itself is one
reference assignment under a lock, and versions only move forward.
"""

from __future__ import annotations

import threading

from library.errors import SnapshotError
from library.snapshot import Snapshot


class LibraryRollbackError(SnapshotError):
    """An update offered a library version that is not newer than the installed one."""


class LibraryHolder:
    def __init__(self, snapshot: Snapshot) -> None:
        self._current = snapshot
        self._lock = threading.Lock()

    @property
    def current(self) -> Snapshot:
        return self._current

    def swap(self, new: Snapshot) -> Snapshot:
        """Install ``new`` and return the snapshot it replaced (the caller closes it when idle)."""
        with self._lock:
            old = self._current
            if new.version <= old.version:
                raise LibraryRollbackError(
                    f"Library version {new.version} is not newer than the installed version {old.version}; "
                    f"it was not installed."
                )
            if new.embedder_id != old.embedder_id:
                raise SnapshotError(
                    f"Library version {new.version} was built with {new.embedder_id}, not {old.embedder_id}."
                )
            self._current = new
            return old
