"""The desks' heartbeats (``device_health``): each desk's newest for the fleet page, and a bounded history.

A heartbeat also names every reference library the desk holds (``libraries``, a JSON list of
``{"library_id", "version"}``), so the fleet page can show which desks still hold a retired or expired
library. A desk too old to send the list holds one library, the default ``national`` one, at
``library_version``: :func:`held_libraries` says so, rather than showing such a desk as holding nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from central.database import Dialect, SqlStore, StoreError, added_columns, iso
from core.library_announce import DEFAULT_LIBRARY_ID

# Columns added to device_health since it was first made: an older database gains them when central opens it.
_ADDED_COLUMNS = (("libraries", "TEXT"),)


def _schema(dialect: Dialect) -> list[str]:
    id_column, big = dialect.id_column, dialect.big_int
    return [
        f"""CREATE TABLE IF NOT EXISTS device_health (
            id {id_column},
            device_id TEXT NOT NULL,
            received_at TEXT NOT NULL,
            sent_at TEXT NOT NULL,
            interval_s DOUBLE PRECISION NOT NULL,
            software_version TEXT NOT NULL,
            library_version {big},
            embedder_id TEXT,
            disk_free_bytes {big} NOT NULL,
            disk_total_bytes {big} NOT NULL,
            memory_available_bytes {big},
            memory_total_bytes {big},
            outbox_depth {big} NOT NULL,
            since_last_sync_s DOUBLE PRECISION,
            clock_offset_s DOUBLE PRECISION,
            key_protection TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS device_health_by_device_time ON device_health (device_id, received_at)",
        *added_columns(dialect, "device_health", _ADDED_COLUMNS),
    ]


def held_libraries(row: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The (library id, version) pairs a stored heartbeat says the desk holds, sorted by id.

    A heartbeat without the list (a desk with the single default library) holds ``national`` at its
    ``library_version``, or nothing when that is empty too.
    """
    raw = row.get("libraries")
    held = raw if isinstance(raw, list) else json.loads(raw) if isinstance(raw, str) and raw else []
    pairs = sorted((str(e["library_id"]), int(e["version"])) for e in held)
    if not pairs and row.get("library_version") is not None:
        pairs = [(DEFAULT_LIBRARY_ID, int(row["library_version"]))]
    return pairs


class HealthStore(SqlStore):
    """Heartbeat rows in SQLite (a path or ``sqlite:///path``) or PostgreSQL (``postgresql://``)."""

    def __init__(self, url: str | Path) -> None:
        super().__init__(url, schema=_schema, lock_id=772005, error=StoreError, what="health store")
        try:
            self._add_missing_columns("device_health", _ADDED_COLUMNS)
        except Exception as e:  # sqlite3.Error: the same one line as a store that cannot open
            self.close()
            raise StoreError(f"Cannot open the health store: {e}") from e

    def record_health(self, row: dict[str, Any]) -> None:
        """One heartbeat (columns of ``device_health`` except id); ``libraries`` as a list is stored as JSON."""
        row = dict(row)
        if not isinstance(row.get("libraries"), str | None):
            row["libraries"] = json.dumps(row["libraries"], sort_keys=True, separators=(",", ":"))
        names = sorted(row)
        with self._lock:
            self._execute(f"INSERT INTO device_health ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                          [row[n] for n in names])

    def latest_health(self) -> dict[str, dict[str, Any]]:
        """Each device's newest heartbeat."""
        with self._lock:
            rows = self._rows("SELECT h.* FROM device_health h JOIN (SELECT device_id, MAX(id) AS id FROM device_health"
                              " GROUP BY device_id) m ON m.id = h.id")
        return {r["device_id"]: r for r in rows}

    def health_history(self, device_id: str, limit: int = 200) -> list[dict[str, Any]]:
        with self._lock:
            return self._rows("SELECT * FROM device_health WHERE device_id = ? ORDER BY id DESC LIMIT ?",
                              (device_id, limit))

    def prune_health(self, before: datetime) -> int:
        """Drop heartbeats received before ``before`` (the history is kept for a bounded time)."""
        with self._lock:
            return int(self._execute("DELETE FROM device_health WHERE received_at < ?", (iso(before),)).rowcount)
