"""What a failed write or read of the device database means, in words custody staff can act on.

A desk in service for years meets two faults of its own storage: the disk fills up (SQLite says
``SQLITE_FULL``, the OS ``ENOSPC``), and a page of the encrypted database is damaged (SQLCipher's
per-page HMAC fails: ``SQLITE_CORRUPT`` or ``SQLITE_NOTADB``). Both must be told apart from a bug,
so staff get a message that says what happened and whom to call, and the desk's health says so too.
SQLite rolls the failed transaction back, so what was stored before (the audit log, the outbox)
is kept whole; nothing is recorded half-way.

``DamageRecord`` remembers damage once seen (it does not heal by itself) for the health report and
``integrity_problems`` asks SQLCipher to check every page's HMAC, at start and on demand.
"""

from __future__ import annotations

import errno
import logging
import threading

import sqlcipher3

from core.errors import CustodyRfrError
from library.errors import SnapshotError

logger = logging.getLogger(__name__)

STORAGE_FULL_MESSAGE = (
    "This device's storage is full, so nothing new can be recorded: searches and new photos are refused until "
    "space is freed. Everything recorded before is kept and still goes to the RFR team. Call the RFR helpdesk "
    "and tell them the desk's storage is full.")
DAMAGED_MESSAGE = (
    "A damaged page was found in this device's encrypted records or reference library, so the last step was "
    "not completed. Stop using the desk for searches and call the RFR helpdesk: the damage "
    "has been reported to the RFR team.")

LIBRARY_DAMAGED_MESSAGE = (
    "A damaged page was found in a reference library's copy on this device, so this search was not completed. "
    "The desk is checking its libraries now: a damaged one is closed and a fresh copy fetched from central by "
    "itself, while the other libraries can still be searched. Search again in a few minutes; if it keeps "
    "failing, call the RFR helpdesk.")


class StorageFullError(CustodyRfrError):
    """The device database could not grow: the disk is full. Nothing of the failed step was stored."""

    def __init__(self, message: str = STORAGE_FULL_MESSAGE) -> None:
        super().__init__(message)


class DatabaseDamagedError(CustodyRfrError):
    """A page of the device database failed SQLCipher's HMAC check (or the file is no longer a database)."""

    def __init__(self, message: str = DAMAGED_MESSAGE) -> None:
        super().__init__(message)


def _codes(error: BaseException) -> tuple[int | None, int | None]:
    code = getattr(error, "sqlite_errorcode", None)
    return (code & 0xFF if isinstance(code, int) else None), getattr(error, "errno", None)


def is_storage_full(error: BaseException) -> bool:
    """SQLITE_FULL from SQLite, or ENOSPC/EDQUOT from the OS, anywhere in the exception's causes."""
    seen: BaseException | None = error
    while seen is not None:
        code, os_errno = _codes(seen)
        if code == sqlcipher3.SQLITE_FULL or os_errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(seen, sqlcipher3.Error) and "database or disk is full" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_library_damage(error: BaseException) -> bool:
    """Damage met while reading a reference library (``library.errors.SnapshotError`` over SQLCipher's error),
    not the device database: the library is re-fetched, the device database is left alone."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, SnapshotError) and is_damage(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_damage(error: BaseException) -> bool:
    """SQLITE_CORRUPT or SQLITE_NOTADB: what SQLCipher reports when a page's HMAC does not match."""
    seen: BaseException | None = error
    while seen is not None:
        code, _ = _codes(seen)
        if code in (sqlcipher3.SQLITE_CORRUPT, sqlcipher3.SQLITE_NOTADB):
            return True
        text = str(seen)
        if isinstance(seen, sqlcipher3.DatabaseError) and ("malformed" in text or "not a database" in text):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def integrity_problems(conn: sqlcipher3.Connection, lock: threading.RLock, limit: int = 20) -> list[str]:
    """SQLCipher's check of every page's HMAC (``PRAGMA cipher_integrity_check``): one line per bad page,
    none when every page is sound. A file too damaged to read at all is one line saying so."""
    try:
        with lock:
            rows = conn.execute("PRAGMA cipher_integrity_check").fetchmany(limit)
    except sqlcipher3.DatabaseError as e:
        return [f"the database could not be read: {e}"]
    return [str(row[0]) for row in rows]


class DamageRecord:
    """Damage seen in one encrypted file (``what``: the device database, the library), kept for the rest of the
    run (a damaged page does not heal); named so the log sends the operator to the right repair."""

    def __init__(self, what: str = "device database") -> None:
        self._lock = threading.Lock()
        self._problems: list[str] = []
        self._what = what

    def note(self, problems: list[str] | str) -> list[str]:
        """Remember ``problems`` (and log them once each) for /metrics; returns those not seen before."""
        new = [problems] if isinstance(problems, str) else list(problems)
        with self._lock:
            fresh = [p for p in new if p not in self._problems]
            self._problems.extend(fresh)
        for problem in fresh:
            logger.error("%s damaged: %s", self._what, problem,
                         extra={"event": f"{self._what.replace(' ', '_')}_damaged"})
        return fresh

    @property
    def problems(self) -> list[str]:
        with self._lock:
            return list(self._problems)

    @property
    def damaged(self) -> bool:
        return bool(self.problems)
