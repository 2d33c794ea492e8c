"""Where central keeps audit events: ``AuditStore`` (SQLite at a path) and ``open_store`` (any URL).

The rules live in ``central.audit.storage.base``; this module keeps the name the
rest of central has always used.
"""

from __future__ import annotations

from pathlib import Path

from central.audit.storage import EventFilter, SqlAuditStore, StoreError, open_store
from central.audit.storage.sqlite import SqliteAuditStore

__all__ = ["AuditStore", "EventFilter", "SqlAuditStore", "StoreError", "open_store"]


class AuditStore(SqliteAuditStore):
    """The SQLite audit store at ``path`` (created if missing)."""

    def __init__(self, path: Path) -> None:
        super().__init__(Path(path))
