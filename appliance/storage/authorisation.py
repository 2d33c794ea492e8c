"""The library authorisation manifest applied on this desk, in the encrypted device database.

Central signs one manifest per desk (``core.library_authorisation``); the updater applies it only after
TUF has verified it, it names this desk and it is newer than the one applied
(``appliance.updates.authorisation``). Every manifest applied is kept, newest in effect, so an auditor
on the desk can see what it was allowed to search and when that changed. The applied version is the
rollback floor: the same or an older version is never applied again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from appliance.storage.device_db import DeviceDatabase
from core.library_authorisation import AuthorisationManifest, AuthorisedLibrary

_SCHEMA = """
CREATE TABLE IF NOT EXISTS library_authorisation (
    version INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    applied_at REAL NOT NULL,
    document BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS library_destructions (
    library_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    version INTEGER,
    reason TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    proof TEXT
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

    def last_entry(self, library_id: str) -> AuthorisedLibrary | None:
        """The newest applied manifest's entry for ``library_id`` (a retired library is no longer listed, so
        its last authorisation is in an older manifest)."""
        with self._db.lock:
            rows = self._db.conn.execute("SELECT document FROM library_authorisation ORDER BY version DESC").fetchall()
        for (document,) in rows:
            entry = AuthorisationManifest.parse(bytes(document)).library(library_id)
            if entry is not None:
                return entry
        return None

    # --- destruction (expired or retired libraries): a pending row first, so a crash finishes it ---------

    def begin_destruction(self, library_id: str, kind: str, version: int | None, reason: str, now: float) -> None:
        with self._db.lock:
            self._db.conn.execute(
                "INSERT INTO library_destructions (library_id, kind, version, reason, started_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(library_id) DO UPDATE SET kind = excluded.kind, version = excluded.version, "
                "reason = excluded.reason, started_at = excluded.started_at, finished_at = NULL, proof = NULL",
                (library_id, kind, version, reason, now))
            self._db.conn.commit()

    def finish_destruction(self, library_id: str, proof: dict[str, Any], now: float) -> None:
        with self._db.lock:
            self._db.conn.execute("UPDATE library_destructions SET finished_at = ?, proof = ? WHERE library_id = ?",
                                  (now, json.dumps(proof, sort_keys=True), library_id))
            self._db.conn.commit()

    def pending_destructions(self) -> list[tuple[str, str, int | None, str]]:
        """(library_id, kind, version, reason) of destructions begun and not finished (a crash mid-way)."""
        with self._db.lock:
            rows = self._db.conn.execute("SELECT library_id, kind, version, reason FROM library_destructions "
                                         "WHERE finished_at IS NULL ORDER BY library_id").fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def destroyed(self) -> set[str]:
        """Libraries this desk has destroyed (it never installs them again from its provisioning files)."""
        with self._db.lock:
            rows = self._db.conn.execute("SELECT library_id FROM library_destructions").fetchall()
        return {r[0] for r in rows}

    def destruction(self, library_id: str) -> dict[str, Any] | None:
        with self._db.lock:
            row = self._db.conn.execute("SELECT kind, version, reason, started_at, finished_at, proof FROM "
                                        "library_destructions WHERE library_id = ?", (library_id,)).fetchone()
        if row is None:
            return None
        return {"kind": row[0], "version": row[1], "reason": row[2], "started_at": row[3], "finished_at": row[4],
                "proof": json.loads(row[5]) if row[5] else None}
