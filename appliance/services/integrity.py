"""Page-by-page integrity of the desk's encrypted files: damage found on purpose, reported, never ignored.

SQLCipher authenticates every page with HMAC-SHA512, but only when the page is read. A damaged page of the
reference library that no search happens to read (a thumbnail, a template of a rarely matched record) would
otherwise go unnoticed until the day it is needed. So the desk checks every page of the library in use in the
background after it starts (``PRAGMA cipher_integrity_check`` on a read-only connection of its own: the
library store is not touched), again every day while it runs (a page can fail on a desk that is never
restarted), and the device database at open (``DeviceDatabase``). Damage is logged,
recorded in the audit chain as a ``device_fault`` (so central sees it), and shown on /metrics; staff who hit
a damaged library page in a search get ``storage_faults.LIBRARY_DAMAGED_MESSAGE`` and the check runs at once
(``check_soon``). Every file of a library is checked (its base and its
delta segments); a library with a damaged file is handed to ``on_damage`` (``library_repair.LibraryRepair``:
refused at once, re-fetched from central) (docs/operations.md, "Faults").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import sqlcipher3

from appliance.services.audit import AuditLog
from appliance.services.periodic import Periodic
from appliance.storage.storage_faults import DamageRecord, integrity_problems
from library import cipher
from library.errors import SnapshotError

logger = logging.getLogger(__name__)

#: How often a running desk checks every page of its libraries again.
RECHECK_S = 24 * 3600.0


def library_problems(path: Path, key: bytes) -> list[str]:
    """Every page of the library file at ``path`` checked against its HMAC; one line per bad page."""
    try:
        conn = cipher.connect(path, key, read_only=True)
    except SnapshotError as e:
        return [str(e)]
    try:
        return [f"{path.name}: {problem}" for problem in integrity_problems(conn, threading.RLock())]
    except sqlcipher3.Error as e:
        return [f"{path.name}: {e}"]
    finally:
        conn.close()


class LibraryIntegrity:
    """Checks the libraries in use (``target`` gives each one's id, files and key) and reports what is damaged."""

    def __init__(self, target: Callable[[], list[tuple[str, Path, bytes]]], audit: AuditLog,
                 on_damage: Callable[[dict[str, list[str]]], None] | None = None) -> None:
        self._target, self._audit = target, audit
        #: Told the damaged libraries (id: problems) after each check that found any.
        self.on_damage = on_damage
        self.damage = DamageRecord("library")  # logged as the library, not the device database
        self._thread: threading.Thread | None = None
        self._soon: threading.Thread | None = None  # a check asked for by a search that met damage
        self._soon_lock = threading.Lock()
        self._periodic = Periodic("library-integrity", self.check)

    def check(self) -> list[str]:
        """Check now; damage not seen before is logged and recorded in the audit chain."""
        by_library: dict[str, list[str]] = {}
        for library_id, path, key in self._target():
            found = library_problems(path, key)
            if found:
                by_library.setdefault(library_id, []).extend(found)
        problems = [p for found in by_library.values() for p in found]
        fresh = [p for p in problems if p not in self.damage.problems]
        self.damage.note(problems)
        if fresh:
            try:
                self._audit.record("device_fault", "system", "library_damaged", problems=fresh[:5])
            except Exception:
                logger.exception("could not record the library's damage in the audit log")
        if by_library and self.on_damage is not None:
            self.on_damage(by_library)
        return problems

    def start(self, recheck_s: float = RECHECK_S) -> None:
        """One check in a daemon thread (a large library takes a while, and searches need not wait for it),
        then one every ``recheck_s`` seconds."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="library-integrity", daemon=True)
            self._thread.start()
            self._periodic.start(recheck_s)

    def check_soon(self) -> bool:
        """A search met a damaged library page: check every page now, in the background (the same path as the
        check at start, so the damaged library is refused and re-fetched by ``on_damage``). At most one such
        check runs at a time; False if one already is."""
        with self._soon_lock:
            if self._soon is not None and self._soon.is_alive():
                return False
            self._soon = threading.Thread(target=self._run, name="library-integrity-now", daemon=True)
            self._soon.start()
            return True

    def stop(self) -> None:
        self._periodic.stop()

    def _run(self) -> None:
        try:
            self.check()
        except Exception:
            logger.exception("the library's integrity check failed to run")
