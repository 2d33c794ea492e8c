"""Accounts and server-side sessions in the encrypted device database.

Rows only: the rules (password hashing, the sign-in throttle, timeouts) live in
``appliance.services.accounts``. A session row is keyed by the SHA-256 of the
cookie's random token (``websession``), so a copy of the database cannot be replayed as a
cookie. Times are UNIX seconds passed in by the caller, so tests can move the
clock without sleeping.

An account's authorisation to search (``core.desk_config.SearchAuthorisation``) is three columns
of its row, added to device databases made before them (``_ADDED_COLUMNS``): an account from then
has none recorded, so it can sign in but not search until central or the device administrator
records one (``appliance.services.search_authority``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlcipher3

from appliance.storage.device_db import DeviceDatabase
from appliance.storage.storage_faults import is_storage_full
from core.desk_config import SearchAuthorisation
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
    disabled INTEGER NOT NULL DEFAULT 0,
    trained_on TEXT,               -- the search authorisation (all three set, or none): ISO dates
    search_authorised_until TEXT,
    business_area TEXT
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_seen REAL NOT NULL
);
"""
# Columns added since the first schema: (name, declaration), added in place to an older device database.
_ADDED_COLUMNS = (("trained_on", "TEXT"), ("search_authorised_until", "TEXT"), ("business_area", "TEXT"))
_SELECT = ("SELECT username, role, password_hash, failed_logins, locked_until, disabled, trained_on,"
           " search_authorised_until, business_area FROM accounts")


def migrate(db: DeviceDatabase) -> None:
    """Create the tables, and add the authorisation columns to an accounts table made before them."""
    with db.lock:
        db.conn.executescript(_SCHEMA)
        have = {row[1] for row in db.conn.execute("PRAGMA table_info(accounts)")}
        for name, declaration in _ADDED_COLUMNS:
            if name not in have:
                db.conn.execute(f"ALTER TABLE accounts ADD COLUMN {name} {declaration}")
        db.conn.commit()


def authorisation_columns(auth: SearchAuthorisation | None) -> tuple[str | None, str | None, str | None]:
    """The three stored columns of an authorisation (``None`` for each when there is none)."""
    if auth is None:
        return None, None, None
    return auth.trained_on.isoformat(), auth.authorised_until.isoformat(), auth.business_area


def _authorisation(trained: str | None, until: str | None, area: str | None) -> SearchAuthorisation | None:
    if trained is None or until is None or area is None:
        return None
    return SearchAuthorisation(trained_on=date.fromisoformat(trained), authorised_until=date.fromisoformat(until),
                               business_area=area)


@dataclass(frozen=True)
class AccountRow:
    username: str
    role: str
    password_hash: str
    failed_logins: int
    locked_until: float
    disabled: bool
    authorisation: SearchAuthorisation | None = None


def _row(r: tuple[Any, ...]) -> AccountRow:
    return AccountRow(r[0], r[1], r[2], int(r[3]), float(r[4]), bool(r[5]), _authorisation(r[6], r[7], r[8]))


class AccountStore:
    def __init__(self, db: DeviceDatabase) -> None:
        self._db = db
        migrate(db)

    def insert(self, username: str, role: str, password_hash: str, now: float,
               authorisation: SearchAuthorisation | None = None) -> None:
        with self._db.lock:
            self._db.conn.execute(
                "INSERT INTO accounts (username, role, password_hash, created_at, trained_on, search_authorised_until,"
                " business_area) VALUES (?,?,?,?,?,?,?)",
                (username, role, password_hash, now, *authorisation_columns(authorisation)))
            self._db.conn.commit()

    def get(self, username: str) -> AccountRow | None:
        with self._db.lock:
            row = self._db.conn.execute(_SELECT + " WHERE username = ?", (username,)).fetchone()
        return _row(row) if row else None

    def all(self) -> list[AccountRow]:
        with self._db.lock:
            rows = self._db.conn.execute(_SELECT + " ORDER BY username").fetchall()
        return [_row(r) for r in rows]

    def set_authorisation(self, username: str, authorisation: SearchAuthorisation | None) -> bool:
        """Record (or with ``None`` remove) an account's authorisation to search; False when there is no such
        account. Open sessions carry on: the desk reads the authorisation afresh at every submission and search."""
        with self._db.lock:
            cur = self._db.conn.execute("UPDATE accounts SET trained_on = ?, search_authorised_until = ?,"
                                        " business_area = ? WHERE username = ?",
                                        (*authorisation_columns(authorisation), username))
            self._db.conn.commit()
        return cur.rowcount == 1

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
        migrate(db)

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
