"""A damaged library is refused at once and re-fetched from central by itself, never served from the damaged file.

The page check (``integrity.LibraryIntegrity``) hands over every library with a damaged file (base or delta
segment). For each, the desk:

1. stops searching it (``LibrarySet.mark_repairing``: staff read that the library is being repaired; the other
   libraries keep serving) and records a ``device_fault`` ``library_repair_started`` in the audit chain;
2. asks the updater for a fresh full copy (``LibraryUpdater.refetch``: TUF-verified like every update, checked
   against central's signed content digest, installed in a folder of its own and swapped in place of the
   damaged one, which is shredded and never used as a delta's base);
3. on success serves the fresh copy and records ``library_repaired``; on failure (central unreachable, or
   what it sent refused) records ``library_repair_retrying`` with the reason and tries again after
   ``retry_s``, doubling up to an hour, for as long as it takes. The library stays refused meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from appliance.services.audit import AuditLog
from appliance.services.library import LibrarySet

logger = logging.getLogger(__name__)

MAX_RETRY_S = 3600.0


class RefetchResult(Protocol):
    """``appliance.updates.updater.UpdateResult``, by shape."""

    outcome: str
    installed_version: int
    message: str
    reason: str | None


class LibraryRepair:
    """Keeps damaged libraries refused and re-fetches each until a sound copy is installed."""

    def __init__(self, libraries: LibrarySet, refetch: Callable[[str], RefetchResult] | None, audit: AuditLog, *,
                 retry_s: float = 30.0) -> None:
        self._libraries, self._refetch, self._audit = libraries, refetch, audit
        self._retry_s = retry_s
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}  # library id -> failed attempts so far
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def damaged(self, problems: dict[str, list[str]]) -> None:
        """Damage found in these libraries: refuse each now and start re-fetching it (once per damage)."""
        for library_id, found in problems.items():
            if not self._libraries.mark_repairing(library_id):
                continue  # already being repaired
            logger.error("library %s is damaged; it is refused and re-fetched from central", library_id,
                         extra={"event": "library_repair_started"})
            self._audit.record("device_fault", "system", "library_repair_started", library_id=library_id,
                               problems=found[:5])
            with self._lock:
                self._pending[library_id] = 0
        if self._refetch is None:
            return  # no updates configured: refused until a technician reinstalls it (docs/operations.md)
        with self._lock:
            if self._thread is None and self._pending:
                self._thread = threading.Thread(target=self._run, name="library-repair", daemon=True)
                self._thread.start()
        self._wake.set()

    def pending(self) -> list[str]:
        with self._lock:
            return sorted(self._pending)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        delay: float | None = 0.0
        while not self._stop.is_set():
            if delay is None or delay > 0:
                self._wake.wait(delay)
            self._wake.clear()
            if self._stop.is_set():
                return
            delays = [d for d in (self._attempt(library_id) for library_id in self.pending()) if d is not None]
            delay = min(delays) if delays else None  # None: nothing left; wait until new damage wakes us

    def _attempt(self, library_id: str) -> float | None:
        """One re-fetch; the delay before the next try, or None once repaired."""
        assert self._refetch is not None
        if library_id not in self._libraries.repairing():  # destroyed meanwhile (expiry, withdrawal): nothing to do
            with self._lock:
                self._pending.pop(library_id, None)
            return None
        try:
            result = self._refetch(library_id)
        except Exception as e:  # never let one failure end the repair: the library stays refused
            logger.exception("library %s re-fetch failed unexpectedly", library_id)
            outcome, message, reason, version = "unavailable", str(e), "refetch_failed", None
        else:
            outcome, message, reason, version = (result.outcome, result.message, result.reason,
                                                 result.installed_version)
        with self._lock:
            if outcome == "installed":
                self._pending.pop(library_id, None)
            else:
                self._pending[library_id] = self._pending.get(library_id, 0) + 1
            attempts = self._pending.get(library_id, 0)
        if outcome == "installed":
            logger.info("library %s repaired: version %s from central", library_id, version)
            self._audit.record("device_fault", "system", "library_repaired", library_id=library_id,
                               library_version=version)
            return None
        delay = min(self._retry_s * 2 ** (attempts - 1), MAX_RETRY_S)
        logger.warning("library %s not repaired yet (%s); retrying in %g s", library_id, message, delay)
        self._audit.record("device_fault", "system", "library_repair_retrying", library_id=library_id, reason=reason,
                           attempts=attempts, retry_in_s=round(delay, 3), message=message[:600])
        return delay
