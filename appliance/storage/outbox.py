"""The persistent outbox: audit events wait here until central has them.

An event is written here in the same transaction that gives it its sequence
number, and leaves only when the broker has acknowledged it (central's
ingest is idempotent by event id, so a resend after a crash is harmless).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from appliance.storage.device_db import DeviceDatabase
from core.events import AuditEvent

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    payload BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class PendingEvent:
    seq: int
    payload: bytes


class Outbox:
    def __init__(self, db: DeviceDatabase) -> None:
        self._db = db
        with db.lock:
            db.conn.executescript(_SCHEMA)
            db.conn.commit()
        self._listeners: list[Callable[[], None]] = []

    def on_append(self, callback: Callable[[], None]) -> None:
        """Wake a sender when an event is queued, instead of it polling."""
        self._listeners.append(callback)

    def append(self, build: Callable[[int], AuditEvent]) -> AuditEvent:
        """Give the next sequence number to ``build`` and queue its event atomically."""
        conn = self._db.conn
        with self._db.lock:
            row = conn.execute("SELECT value FROM counters WHERE name = 'audit_seq'").fetchone()
            seq = (row[0] if row else 0) + 1
            event = build(seq)
            conn.execute("INSERT OR REPLACE INTO counters VALUES ('audit_seq', ?)", (seq,))
            conn.execute("INSERT INTO outbox VALUES (?, ?, ?)", (seq, event.event_id, event.to_bytes()))
            conn.commit()
        for callback in self._listeners:
            callback()
        return event

    def pending(self, limit: int = 100, exclude: frozenset[int] = frozenset()) -> list[PendingEvent]:
        with self._db.lock:
            rows = self._db.conn.execute("SELECT seq, payload FROM outbox ORDER BY seq LIMIT ?",
                                         (limit + len(exclude),)).fetchall()
        return [PendingEvent(seq, bytes(p)) for seq, p in rows if seq not in exclude][:limit]

    def acknowledge(self, seq: int) -> None:
        with self._db.lock:
            self._db.conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._db.conn.commit()

    def depth(self) -> int:
        with self._db.lock:
            return int(self._db.conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
