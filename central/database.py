"""One connection to central's database, SQLite or PostgreSQL, for the small stores beside the audit store.

The account and peer-review stores share the audit store's ``DATABASE`` URL
(a path, ``sqlite:///path`` or ``postgresql://``) so one backup holds everything
an auditor needs. This base opens that URL the same way for each of them: WAL
and full sync on SQLite, autocommit on PostgreSQL, and the schema created under
an advisory lock because several central processes may start together.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from core.errors import CustodyRfrError


class SqlStore:
    """Subclasses give their schema (it may differ by backend), an advisory lock id and their error type."""

    def __init__(self, url: str | Path, *, schema: Callable[[bool], Iterable[str]], lock_id: int,
                 error: type[CustodyRfrError], what: str) -> None:
        text = str(url)
        self.url = text
        self._lock = threading.RLock()
        self._pg = text.startswith(("postgresql://", "postgres://"))
        try:
            if self._pg:
                import psycopg

                self._db: Any = psycopg.connect(text, autocommit=True)
            else:
                path = Path(text[len("sqlite:///"):] if text.startswith("sqlite:///") else text)
                path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
            with self._lock:
                if self._pg:
                    self._execute(f"SELECT pg_advisory_lock({int(lock_id)})")
                try:
                    for statement in schema(self._pg):
                        self._execute(statement)
                finally:
                    if self._pg:
                        self._execute(f"SELECT pg_advisory_unlock({int(lock_id)})")
        except Exception as e:  # sqlite3.Error, psycopg.Error, OSError: one family for callers
            raise error(f"Cannot open the {what}: {e}") from e

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._db.execute(sql.replace("?", "%s") if self._pg else sql, tuple(args))

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self._execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
