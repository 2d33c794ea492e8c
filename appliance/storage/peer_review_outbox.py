"""Peer review requests waiting to reach central, kept until central's outcome comes back.

A request is written here in the device's encrypted database when the officer
asks for the review, so it survives a link outage or a restart. It is not
dropped when the broker accepts it (a broker can lose what it acknowledged):
it stays until the outcome arrives and is sent again on every new connection
and after a resend interval; central stores requests idempotently by
``request_id`` and answers a repeat of a decided request with its outcome
again. The row also maps an outcome's ``request_id`` back to its case, so an
outcome for a request this device never made is refused.

Once a request is answered (or retired by a newer one for the same case) its
payload, the candidates' subject references, scores and the officer's
reasoning, is blanked: nothing reads it again (a repeated outcome is
recognised by ``answered_at`` alone), and the case's own records hold what
must be kept. Only the request id and case id stay, to recognise repeats.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.storage.device_db import DeviceDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS peer_review_outbox (
    request_id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    queued_at REAL NOT NULL,
    sent_at REAL,
    sends INTEGER NOT NULL DEFAULT 0,
    answered_at REAL
);
CREATE INDEX IF NOT EXISTS peer_review_outbox_by_case ON peer_review_outbox (case_id);
UPDATE peer_review_outbox SET payload = x'' WHERE answered_at IS NOT NULL AND length(payload) > 0;
"""


@dataclass(frozen=True)
class QueuedRequest:
    request_id: str
    case_id: str
    payload: bytes
    sends: int
    answered: bool


class PeerReviewOutbox:
    """The queue of peer review requests (one per device database)."""

    def __init__(self, db: DeviceDatabase) -> None:
        self._db = db
        with db.lock:
            db.conn.executescript(_SCHEMA)
            db.conn.commit()

    def enqueue(self, request_id: str, case_id: str, payload: bytes, now: float) -> None:
        """Queue a request; an older unanswered one for the same case (left by a crash mid-adjudication)
        is retired, so only the newest request's outcome can decide the case."""
        with self._db.lock:
            self._db.conn.execute("UPDATE peer_review_outbox SET answered_at = ?, payload = x'' WHERE case_id = ?"
                                  " AND answered_at IS NULL", (now, case_id))
            self._db.conn.execute(
                "INSERT INTO peer_review_outbox (request_id, case_id, payload, queued_at) VALUES (?, ?, ?, ?)",
                (request_id, case_id, payload, now))
            self._db.conn.commit()

    def due(self, now: float, resend_after_s: float, *, everything: bool = False) -> list[QueuedRequest]:
        """Unanswered requests never sent, or sent longer than ``resend_after_s`` ago (all, if ``everything``)."""
        with self._db.lock:
            rows = self._db.conn.execute(
                "SELECT request_id, case_id, payload, sends FROM peer_review_outbox WHERE answered_at IS NULL"
                " AND (? OR sent_at IS NULL OR sent_at <= ?) ORDER BY queued_at",
                (int(everything), now - resend_after_s)).fetchall()
        return [QueuedRequest(r[0], r[1], bytes(r[2]), int(r[3]), False) for r in rows]

    def mark_sent(self, request_id: str, now: float) -> None:
        with self._db.lock:
            self._db.conn.execute("UPDATE peer_review_outbox SET sent_at = ?, sends = sends + 1 WHERE request_id = ?",
                                  (now, request_id))
            self._db.conn.commit()

    def get(self, request_id: str) -> QueuedRequest | None:
        with self._db.lock:
            r = self._db.conn.execute("SELECT request_id, case_id, payload, sends, answered_at FROM"
                                      " peer_review_outbox WHERE request_id = ?", (request_id,)).fetchone()
        return None if r is None else QueuedRequest(r[0], r[1], bytes(r[2]), int(r[3]), r[4] is not None)

    def mark_answered(self, request_id: str, now: float) -> bool:
        """True the first time: a repeated outcome finds the request answered already."""
        with self._db.lock:
            cur = self._db.conn.execute("UPDATE peer_review_outbox SET answered_at = ?, payload = x''"
                                        " WHERE request_id = ? AND answered_at IS NULL", (now, request_id))
            self._db.conn.commit()
        return cur.rowcount == 1

    def waiting(self) -> int:
        """How many requests have no outcome yet (for the health page)."""
        with self._db.lock:
            return int(self._db.conn.execute(
                "SELECT COUNT(*) FROM peer_review_outbox WHERE answered_at IS NULL").fetchone()[0])
