"""Peer review requests and outcomes as the device knows them (no biometric data).

The device keeps its own copy of every request it sent and every outcome it
received, whichever channel carried them, so the case page can show where a
review stands even while the link to central is down.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from appliance.storage.device_db import DeviceDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS peer_reviews (
    case_id TEXT PRIMARY KEY,
    custody_ref TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at REAL NOT NULL,
    ranks TEXT NOT NULL,
    question TEXT NOT NULL,
    channel TEXT NOT NULL,
    reviewer TEXT,
    decisions TEXT,
    notes TEXT,
    decided_at REAL
);
"""


@dataclass(frozen=True)
class PeerReviewRow:
    case_id: str
    custody_ref: str
    requested_by: str
    requested_at: float
    ranks: list[int]
    question: str
    channel: str
    reviewer: str | None
    decisions: dict[int, str] | None
    notes: str | None
    decided_at: float | None


class PeerReviewStore:
    def __init__(self, db: DeviceDatabase) -> None:
        self._db = db
        with db.lock:
            db.conn.executescript(_SCHEMA)
            db.conn.commit()

    def request(self, case_id: str, custody_ref: str, requested_by: str, now: float, ranks: list[int],
                question: str, channel: str) -> None:
        with self._db.lock:
            self._db.conn.execute(
                "INSERT OR REPLACE INTO peer_reviews (case_id, custody_ref, requested_by, requested_at, ranks,"
                " question, channel) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (case_id, custody_ref, requested_by, now, json.dumps(ranks), question, channel))
            self._db.conn.commit()

    def record_outcome(self, case_id: str, reviewer: str, decisions: dict[int, str], notes: str,
                       now: float) -> None:
        with self._db.lock:
            self._db.conn.execute(
                "UPDATE peer_reviews SET reviewer = ?, decisions = ?, notes = ?, decided_at = ? WHERE case_id = ?",
                (reviewer, json.dumps({str(k): v for k, v in decisions.items()}), notes, now, case_id))
            self._db.conn.commit()

    def get(self, case_id: str) -> PeerReviewRow | None:
        with self._db.lock:
            r = self._db.conn.execute(
                "SELECT case_id, custody_ref, requested_by, requested_at, ranks, question, channel, reviewer,"
                " decisions, notes, decided_at FROM peer_reviews WHERE case_id = ?", (case_id,)).fetchone()
        if r is None:
            return None
        decisions = {int(k): v for k, v in json.loads(r[8]).items()} if r[8] else None
        return PeerReviewRow(r[0], r[1], r[2], float(r[3]), json.loads(r[4]), r[5], r[6], r[7], decisions, r[9],
                             float(r[10]) if r[10] is not None else None)
