"""The library authorisation manifest applied on this desk, in the encrypted device database.

Central signs one manifest per desk (``core.library_authorisation``); the updater applies it only after
TUF has verified it, it names this desk and it is newer than the one applied
(``appliance.updates.authorisation``). Every manifest applied is kept, newest in effect, so an auditor
on the desk can see what it was allowed to search and when that changed. The applied version is the
rollback floor: the same or an older version is never applied again.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.storage.device_db import DeviceDatabase
from core.library_authorisation import AuthorisationManifest

_SCHEMA = """
CREATE TABLE IF NOT EXISTS library_authorisation (
    version INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    applied_at REAL NOT NULL,
    document BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class AppliedManifest:
    version: int
    digest: str
    applied_at: float
    manifest: AuthorisationManifest


class AuthorisationStore:
    """The manifests applied on this desk; ``manifest()`` is the one in effect (cached in memory)."""

    def __init__(self, db: DeviceDatabase) -> None:
        self._db = db
        with db.lock:
            db.conn.executescript(_SCHEMA)
            db.conn.commit()
        self._cached: AppliedManifest | None = None
        self._loaded = False

    def applied(self) -> AppliedManifest | None:
        if self._loaded:
            return self._cached
        with self._db.lock:
            row = self._db.conn.execute("SELECT version, digest, applied_at, document FROM library_authorisation "
                                        "ORDER BY version DESC LIMIT 1").fetchone()
        applied = None if row is None else AppliedManifest(int(row[0]), row[1], float(row[2]),
                                                          AuthorisationManifest.parse(bytes(row[3])))
        self._cached, self._loaded = applied, True
        return applied

    def manifest(self) -> AuthorisationManifest | None:
        applied = self.applied()
        return None if applied is None else applied.manifest

    def applied_version(self) -> int:
        applied = self.applied()
        return 0 if applied is None else applied.version

    def apply(self, document: bytes, manifest: AuthorisationManifest, digest: str, now: float) -> None:
        """Record ``manifest`` (already verified and checked newer) as the one in effect."""
        with self._db.lock:
            conn = self._db.conn
            try:
                newest = conn.execute("SELECT MAX(version) FROM library_authorisation").fetchone()[0]
                if newest is not None and manifest.version <= int(newest):
                    raise ValueError(f"manifest version {manifest.version} is not newer than {newest}")
                conn.execute("INSERT INTO library_authorisation (version, digest, applied_at, document) "
                             "VALUES (?,?,?,?)", (manifest.version, digest, now, document))
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                self._loaded = False
