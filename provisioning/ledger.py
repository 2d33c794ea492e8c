"""The CA's ledger (``fleet.db``, SQLite): enrolment tokens and every certificate issued, with revocations.

It sits beside the issuing key on central's enrolment host. The CRL and the list of enrolled
devices are generated from it, so it is the registry the broker's configuration follows.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tokens (
        token_hash TEXT PRIMARY KEY, device_id TEXT NOT NULL, created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL, used_at TEXT)""",
    """CREATE TABLE IF NOT EXISTS certificates (
        serial TEXT PRIMARY KEY, device_id TEXT NOT NULL, issued_at TEXT NOT NULL,
        not_after TEXT NOT NULL, revoked_at TEXT)""",
)


@dataclass(frozen=True)
class IssuedCertificate:
    serial: int
    device_id: str
    issued_at: datetime
    not_after: datetime
    revoked_at: datetime | None


class Ledger:
    """One connection; every change is its own transaction (autocommit off, explicit commits)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.conn = sqlite3.connect(self.path, isolation_level="IMMEDIATE")
        self.conn.row_factory = sqlite3.Row
        for statement in _SCHEMA:
            self.conn.execute(statement)
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- certificates ---

    def record_certificate(self, serial: int, device_id: str, issued_at: datetime, not_after: datetime) -> None:
        with self.conn:
            self.conn.execute("INSERT INTO certificates (serial, device_id, issued_at, not_after) VALUES (?, ?, ?, ?)",
                              (str(serial), device_id, issued_at.isoformat(), not_after.isoformat()))

    def revoke_device(self, device_id: str, when: datetime) -> list[int]:
        """Revoke every unrevoked certificate of a device; the serials revoked now."""
        with self.conn:
            rows = self.conn.execute("SELECT serial FROM certificates WHERE device_id = ? AND revoked_at IS NULL",
                                     (device_id,)).fetchall()
            self.conn.execute("UPDATE certificates SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL",
                              (when.isoformat(), device_id))
        return [int(r["serial"]) for r in rows]

    def certificates(self, device_id: str | None = None) -> list[IssuedCertificate]:
        sql = "SELECT * FROM certificates"
        args: tuple[str, ...] = ()
        if device_id is not None:
            sql, args = sql + " WHERE device_id = ?", (device_id,)
        rows = self.conn.execute(sql + " ORDER BY issued_at, serial", args).fetchall()
        return [IssuedCertificate(int(r["serial"]), r["device_id"], datetime.fromisoformat(r["issued_at"]),
                                  datetime.fromisoformat(r["not_after"]),
                                  datetime.fromisoformat(r["revoked_at"]) if r["revoked_at"] else None)
                for r in rows]

    def revoked(self) -> list[IssuedCertificate]:
        return [c for c in self.certificates() if c.revoked_at is not None]
