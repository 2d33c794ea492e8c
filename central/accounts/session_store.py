"""Central's signed-in web sessions, in central's one database (SQLite or PostgreSQL).

The cookie carries only a random token; this table keeps its SHA-256, the session's data (username,
session generation, CSRF token) and when it was made and last used, so that signing out, a new
password or a disable ends a session for good, even one whose cookie was copied, and nothing the
secret key can sign is worth forging. The lifetime rules are ``websession.manager``'s; only
signed-in sessions get a row (the sign-in form's token travels in a short-lived signed cookie), so
anonymous visitors cannot grow the table, and rows past their timeouts are purged at each sign-in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from central.database import Dialect, SqlStore
from core.errors import CustodyRfrError
from websession.manager import SessionRow, token_hash


class SessionStoreError(CustodyRfrError):
    """The session store cannot be opened or written."""


# The account store creates this table too: a new password or a disable deletes the account's rows in the
# same transaction, even from the command line on a database no web server has opened yet.
SCHEMA = ("""CREATE TABLE IF NOT EXISTS central_sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL)""",
          "CREATE INDEX IF NOT EXISTS central_sessions_username ON central_sessions (username)")


def _schema(_dialect: Dialect) -> list[str]:
    return list(SCHEMA)


class SessionStore(SqlStore):
    """Sessions in SQLite (a path or ``sqlite:///path``) or PostgreSQL (``postgresql://``)."""

    def __init__(self, url: str | Path) -> None:
        super().__init__(url, schema=_schema, lock_id=772006, error=SessionStoreError, what="session store")

    def create(self, token: str, data: dict[str, Any], now: float) -> None:
        with self._lock:
            self._execute("INSERT INTO central_sessions (token_hash, username, data, created_at, last_seen)"
                          " VALUES (?, ?, ?, ?, ?)",
                          (token_hash(token), str(data.get("username", "")), json.dumps(data), now, now))

    def get(self, token: str) -> SessionRow | None:
        with self._lock:
            row = self._execute("SELECT data, created_at, last_seen FROM central_sessions WHERE token_hash = ?",
                                (token_hash(token),)).fetchone()
        return None if row is None else SessionRow(json.loads(row[0]), float(row[1]), float(row[2]))

    def save(self, token: str, data: dict[str, Any], now: float) -> None:
        with self._lock:
            self._execute("UPDATE central_sessions SET data = ?, last_seen = ? WHERE token_hash = ?",
                          (json.dumps(data), now, token_hash(token)))

    def delete(self, token: str) -> None:
        with self._lock:
            self._execute("DELETE FROM central_sessions WHERE token_hash = ?", (token_hash(token),))

    def purge(self, idle_before: float, created_before: float) -> None:
        with self._lock:
            self._execute("DELETE FROM central_sessions WHERE last_seen < ? OR created_at < ?",
                          (idle_before, created_before))

    def count(self) -> int:
        with self._lock:
            return int(self._scalar("SELECT COUNT(*) FROM central_sessions"))
