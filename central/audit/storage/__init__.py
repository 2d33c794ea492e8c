"""Audit store backends behind one interface: SQLite by default, PostgreSQL for scale.

``open_store(url)`` picks one from a URL (``sqlite:///path``, ``postgresql://...``
or a plain file path). Both share every rule in ``base.SqlAuditStore``; a backend
only says how to connect, lock a device's chain head and spell its column types.
"""

from __future__ import annotations

from pathlib import Path

from central.audit.storage.base import (
    BatchOutcome,
    EventFilter,
    SqlAuditStore,
    StoreError,
)

__all__ = ["BatchOutcome", "EventFilter", "SqlAuditStore", "StoreError", "open_store"]


def open_store(url: str | Path) -> SqlAuditStore:
    """The store at ``url``; a bare path means an SQLite file."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        from central.audit.storage.postgres import PostgresAuditStore

        return PostgresAuditStore(text)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):]  # sqlite:////abs/path -> /abs/path
    elif "://" in text:
        raise StoreError(f"Unsupported audit store URL {text!r}: use sqlite:///path or postgresql://...")
    from central.audit.storage.sqlite import SqliteAuditStore

    return SqliteAuditStore(Path(text))
