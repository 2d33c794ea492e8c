"""Accounts and server-side sessions in the encrypted device database.

Rows only: the rules (password hashing, the sign-in throttle, timeouts) live in
``appliance.services.accounts``. A session row is keyed by the SHA-256 of the
cookie's random token (``websession``), so a copy of the database cannot be replayed as a
cookie. Times are UNIX seconds passed in by the caller, so tests can move the
clock without sleeping.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import sqlcipher3

from appliance.storage.device_db import DeviceDatabase
from appliance.storage.storage_faults import is_storage_full
from websession.manager import SessionRow, token_hash

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0,  -- until when attempts wait (core.throttle); the name predates it
    created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_seen REAL NOT NULL
);
"""


@dataclass(frozen=True)
class AccountRow:
    username: str
    role: str
    password_hash: str
    failed_logins: int
    locked_until: float
    disabled: bool


class AccountStore:
    def __init__(self, db: DeviceDatabase) -> None:
        self._db = db
        with db.lock:
            db.conn.executescript(_SCHEMA)
            db.conn.commit()

    def insert(self, username: str, role: str, password_hash: str, now: float) -> None:
        with self._db.lock:
            self._db.conn.execute("INSERT INTO accounts (username, role, password_hash, created_at) VALUES (?,?,?,?)",
                                  (username, role, password_hash, now))
            self._db.conn.commit()

    def get(self, username: str) -> AccountRow | None:
        with self._db.lock:
            row = self._db.conn.execute(
                "SELECT username, role, password_hash, failed_logins, locked_until, disabled"
                " FROM accounts WHERE username = ?", (username,)).fetchone()
        return AccountRow(row[0], row[1], row[2], int(row[3]), float(row[4]), bool(row[5])) if row else None

    def all(self) -> list[AccountRow]:
        with self._db.lock:
            rows = self._db.conn.execute(
                "SELECT username, role, password_hash, failed_logins, locked_until, disabled"
                " FROM accounts ORDER BY username").fetchall()
        return [AccountRow(r[0], r[1], r[2], int(r[3]), float(r[4]), bool(r[5])) for r in rows]

    def set_failures(self, username: str, failed: int, locked_until: float) -> None:
        with self._db.lock:
            self._db.conn.execute("UPDATE accounts SET failed_logins = ?, locked_until = ? WHERE username = ?",
                                  (failed, locked_until, username))
            self._db.conn.commit()

    def set_password(self, username: str, password_hash: str) -> None:
        with self._db.lock:
            self._db.conn.execute("UPDATE accounts SET password_hash = ?, failed_logins = 0, locked_until = 0"
                                  " WHERE username = ?", (password_hash, username))
            self._db.conn.commit()


class SessionStore:
    def __init__(self, db: DeviceDatabase) -> None:
        self._db = db
        with db.lock:
            db.conn.executescript(_SCHEMA)
            db.conn.commit()

    def create(self, token: str, data: dict[str, Any], now: float) -> None:
        with self._db.transaction() as conn:
            conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)", (token_hash(token), json.dumps(data), now, now))

    def get(self, token: str) -> SessionRow | None:
        with self._db.lock:
            row = self._db.conn.execute("SELECT data, created_at, last_seen FROM sessions WHERE token_hash = ?",
                                        (token_hash(token),)).fetchone()
        return SessionRow(json.loads(row[0]), float(row[1]), float(row[2])) if row else None

    def save(self, token: str, data: dict[str, Any], now: float) -> None:
        """Mark the session used. On a full disk this is skipped (logged): staff can still read their pages, and
        every step that records something is refused with its own message (``storage_faults``)."""
        try:
            with self._db.transaction() as conn:
                conn.execute("UPDATE sessions SET data = ?, last_seen = ? WHERE token_hash = ?",
                             (json.dumps(data), now, token_hash(token)))
        except sqlcipher3.OperationalError as e:
            if not is_storage_full(e):
                raise
            logger.warning("session not marked as used: the device's storage is full", extra={"event": "storage_full"})

    def delete(self, token: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash(token),))

    def purge(self, idle_before: float, created_before: float) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM sessions WHERE last_seen < ? OR created_at < ?", (idle_before, created_before))
