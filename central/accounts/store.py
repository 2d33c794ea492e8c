"""Central's accounts in central's one database (SQLite or PostgreSQL, like the other stores).

One row per person: roles as a sorted comma-separated list, the scrypt hash
(``core.passwords``), and the failure count and lock time that make password
guessing slow. Keeping accounts in central's own database means one backup and
one ``DATABASE`` URL hold everything an auditor needs to know about who did what.

``session_generation`` goes up whenever the account's sessions must end for good
(a new password, disabling): a session carries the value it signed in with, and
a copied cookie stops working at once instead of at the 12-hour cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from central.database import Dialect, SqlStore, added_columns
from core.errors import CustodyRfrError

_SCHEMA = """CREATE TABLE IF NOT EXISTS central_accounts (
    username TEXT PRIMARY KEY,
    roles TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0,
    session_generation INTEGER NOT NULL DEFAULT 0)"""
# Columns added since the table was first made: an older database gains them when central opens it.
_ADDED_COLUMNS = (("session_generation", "INTEGER NOT NULL DEFAULT 0"),)
_COLUMNS = ("username, roles, password_hash, created_at, failed_logins, locked_until, disabled,"
            " session_generation")


class AccountStoreError(CustodyRfrError):
    """The account store cannot be opened or written."""


@dataclass(frozen=True)
class AccountRow:
    username: str
    roles: frozenset[str]
    password_hash: str
    created_at: float
    failed_logins: int
    locked_until: float
    disabled: bool
    session_generation: int


def _schema(dialect: Dialect) -> list[str]:
    # PostgreSQL adds a missing column idempotently under SqlStore's advisory lock; SQLite after opening.
    return [_SCHEMA, *added_columns(dialect, "central_accounts", _ADDED_COLUMNS)]


class AccountStore(SqlStore):
    """Accounts in SQLite (a path or ``sqlite:///path``) or PostgreSQL (``postgresql://``)."""

    def __init__(self, url: str | Path) -> None:
        super().__init__(url, schema=_schema, lock_id=772003, error=AccountStoreError, what="account store")
        try:
            self._add_missing_columns("central_accounts", _ADDED_COLUMNS)
        except Exception as e:  # sqlite3.Error: the same one line as a store that cannot open
            self.close()
            raise AccountStoreError(f"Cannot open the account store: {e}") from e

    def get(self, username: str) -> AccountRow | None:
        with self._lock:
            row = self._execute(f"SELECT {_COLUMNS} FROM central_accounts WHERE username = ?",
                                (username,)).fetchone()
        return None if row is None else _row(row)

    def all(self) -> list[AccountRow]:
        with self._lock:
            rows = self._execute(f"SELECT {_COLUMNS} FROM central_accounts ORDER BY username").fetchall()
        return [_row(r) for r in rows]

    def insert(self, username: str, roles: frozenset[str], password_hash: str, now: float) -> bool:
        """Add the account; False if the username is taken (two administrators at once cannot both win)."""
        with self._lock:
            cur = self._execute("INSERT INTO central_accounts (username, roles, password_hash, created_at)"
                                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                (username, ",".join(sorted(roles)), password_hash, now))
        return bool(cur.rowcount == 1)

    def set_failures(self, username: str, failed_logins: int, locked_until: float) -> None:
        with self._lock:
            self._execute("UPDATE central_accounts SET failed_logins = ?, locked_until = ? WHERE username = ?",
                          (failed_logins, locked_until, username))

    def set_password(self, username: str, password_hash: str) -> bool:
        """The new hash, a clean failure count and a new session generation in one statement; False if unknown."""
        with self._lock:
            cur = self._execute("UPDATE central_accounts SET password_hash = ?, failed_logins = 0, locked_until = 0,"
                                " session_generation = session_generation + 1 WHERE username = ?",
                                (password_hash, username))
        return bool(cur.rowcount == 1)

    def set_disabled(self, username: str, disabled: bool) -> bool:
        """Disabling also moves the session generation on, so enabling again does not revive old cookies."""
        with self._lock:
            cur = self._execute("UPDATE central_accounts SET disabled = ?,"
                                " session_generation = session_generation + ? WHERE username = ?",
                                (int(disabled), int(disabled), username))
        return bool(cur.rowcount == 1)


def _row(row: Sequence[Any]) -> AccountRow:
    username, roles, password_hash, created_at, failed, locked_until, disabled, generation = row
    return AccountRow(username, frozenset(r for r in roles.split(",") if r), password_hash, float(created_at),
                      int(failed), float(locked_until), bool(disabled), int(generation))
