"""The central record of audit events, in one SQLite file.

Appliances publish at-least-once (QoS 1 plus their own outbox), so the same event
can arrive many times: the event id is the primary key and a repeat is ignored,
never stored twice. Messages that fail validation are not silently dropped either:
each is recorded in ``rejections`` with its topic, reason and size (never its
content, which may be hostile), so an auditor can see that something was refused.

The ingest thread writes and web threads read; one connection guarded by a lock
keeps that simple, and WAL lets other processes read while a write is under way.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.events import AuditEvent

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id    TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    occurred_at TEXT NOT NULL,
    occurred_utc TEXT NOT NULL,
    type        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    details     TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (occurred_utc);
CREATE INDEX IF NOT EXISTS events_by_device ON events (device_id, occurred_utc);
CREATE TABLE IF NOT EXISTS rejections (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    topic       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    size        INTEGER NOT NULL
);
"""
# Reasons come from our own validators but may quote attacker-chosen text; cap them.
_MAX_REASON = 500
_MAX_TOPIC = 300


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _utc_sort_key(occurred_at: str) -> str:
    """Devices may send any UTC offset (or none, meaning UTC); order by the same clock."""
    moment = datetime.fromisoformat(occurred_at)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class AuditStore:
    """Audit events and rejected messages at ``path`` (created if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def insert(self, event: AuditEvent, received_at: datetime) -> bool:
        """Store ``event``; False when an event with the same id is already stored."""
        with self._lock, self._db:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO events (event_id, device_id, seq, occurred_at, occurred_utc, type,"
                " actor, outcome, details, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.event_id,
                    event.device_id,
                    event.seq,
                    event.occurred_at,
                    _utc_sort_key(event.occurred_at),
                    event.type,
                    event.actor,
                    event.outcome,
                    json.dumps(event.details, sort_keys=True),
                    _iso(received_at),
                ),
            )
            return cur.rowcount == 1

    def recent(self, limit: int = 100, device_id: str | None = None) -> list[dict[str, Any]]:
        """The newest events first (by when they happened), optionally for one device."""
        where, args = ("WHERE device_id = ?", [device_id]) if device_id else ("", [])
        with self._lock:
            rows = self._db.execute(
                f"SELECT event_id, device_id, seq, occurred_at, type, actor, outcome, details, received_at"
                f" FROM events {where} ORDER BY occurred_utc DESC, rowid DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        out = []
        for row in rows:
            item = dict(row)
            item["details"] = json.loads(item["details"])
            out.append(item)
        return out

    def devices(self) -> list[str]:
        """Every device that has sent at least one stored event, for filters."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT device_id FROM events ORDER BY device_id").fetchall()
        return [r[0] for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def record_rejection(
        self, topic: str, reason: str, size: int, received_at: datetime | None = None
    ) -> None:
        """Note a refused message: where it came from, why, and how big it was."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO rejections (received_at, topic, reason, size) VALUES (?, ?, ?, ?)",
                (_iso(received_at or datetime.now(UTC)), topic[:_MAX_TOPIC], reason[:_MAX_REASON], size),
            )

    def rejections(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest rejections first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT received_at, topic, reason, size FROM rejections ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [dict(r) for r in rows]

    def rejection_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM rejections").fetchone()[0])
