"""The audit store in one SQLite file: the default, for a force's single central server.

WAL lets the web interface read while the ingest writes; ``synchronous=FULL``
means an acknowledged event survives power loss; ``BEGIN IMMEDIATE`` makes
each batch take the write lock up front, so ingest workers in other processes
queue instead of deadlocking.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from central.audit.storage.base import SqlAuditStore, StoreError


class SqliteAuditStore(SqlAuditStore):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=30000")
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"Cannot open the audit store {self.path}: {e}") from e
        self._create_schema()

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._db.execute(sql, tuple(args))

    def _begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        with self._lock:
            self._db.close()
