"""Page-by-page integrity of the desk's encrypted files: damage found on purpose, reported, never ignored.

SQLCipher authenticates every page with HMAC-SHA512, but only when the page is read. A damaged page of the
reference library that no search happens to read (a thumbnail, a template of a rarely matched record) would
otherwise go unnoticed until the day it is needed. So the desk checks every page of the library in use in the
background after it starts (``PRAGMA cipher_integrity_check`` on a read-only connection of its own: the
library store is not touched), and the device database at open (``DeviceDatabase``). Damage is logged,
recorded in the audit chain as a ``device_fault`` (so central sees it), and shown on /metrics; staff who hit
a damaged page get ``storage_faults.DAMAGED_MESSAGE``. Repair is a reinstall of the library from central
(docs/operations.md, "Faults").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import sqlcipher3

from appliance.services.audit import AuditLog
from appliance.storage.storage_faults import DamageRecord, integrity_problems
from library import cipher
from library.errors import SnapshotError

logger = logging.getLogger(__name__)


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
    """Checks the libraries in use (``target`` gives each one's path and key) and reports what is damaged."""

    def __init__(self, target: Callable[[], list[tuple[Path, bytes]]], audit: AuditLog) -> None:
        self._target, self._audit = target, audit
        self.damage = DamageRecord("library")  # logged as the library, not the device database
        self._thread: threading.Thread | None = None

    def check(self) -> list[str]:
        """Check now; damage not seen before is logged and recorded in the audit chain."""
        problems = [problem for path, key in self._target() for problem in library_problems(path, key)]
        fresh = [p for p in problems if p not in self.damage.problems]
        self.damage.note(problems)
        if fresh:
            try:
                self._audit.record("device_fault", "system", "library_damaged", problems=fresh[:5])
            except Exception:
                logger.exception("could not record the library's damage in the audit log")
        return problems

    def start(self) -> None:
        """One check in a daemon thread: a large library takes a while, and searches need not wait for it."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="library-integrity", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self.check()
        except Exception:
            logger.exception("the library's integrity check failed to run")
