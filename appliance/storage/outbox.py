"""The persistent outbox: audit events and checkpoints wait here until central has stored them.

Appending an event gives it its sequence number, links it into the hash chain,
writes it to the append-only log and queues it for central, all in one
transaction: an event is either recorded and queued, or neither. Every
``checkpoint_every`` events (and whenever the sender finds the tail idle and
unsigned) the head is signed with the device key in the same way.

An outbox row references a log row and is deleted only when central's
application-level ack says the event is stored with no gap before it; a
broker PUBACK is not enough, since a broker can lose what it acknowledged
(``kill -9`` between autosaves). The log itself is never deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.storage import audit_log
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.signing_key import load_or_create_signing_key
from core.audit import chain
from core.audit.checkpoint import Checkpoint
from core.audit.verify import VerifyReport
from core.events import AuditEvent

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_outbox (
    kind TEXT NOT NULL CHECK (kind IN ('event', 'checkpoint')),
    seq INTEGER NOT NULL,
    PRIMARY KEY (kind, seq)
);
"""
CHECKPOINT_EVERY = 100


@dataclass(frozen=True)
class PendingEvent:
    seq: int
    payload: bytes


class Outbox:
    """The device's audit log and its queue to central (one per device database)."""

    def __init__(self, db: DeviceDatabase, signing_key: Ed25519PrivateKey | None = None,
                 *, checkpoint_every: int = CHECKPOINT_EVERY) -> None:
        self._db = db
        self._key = signing_key or load_or_create_signing_key(db.data_dir)
        self._checkpoint_every = checkpoint_every
        with db.lock:
            db.conn.executescript(audit_log.SCHEMA + _SCHEMA)
            db.conn.commit()
            row = db.conn.execute("SELECT seq, hash, payload FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            cp = db.conn.execute("SELECT IFNULL(MAX(seq), 0) FROM audit_checkpoints").fetchone()
        self._head_seq = row[0] if row else 0
        self._head_hash: str | None = row[1] if row else None
        self._device_id: str | None = AuditEvent.from_bytes(bytes(row[2])).device_id if row else None
        self._signed_seq = int(cp[0])
        self._last_append = time.monotonic()
        self._listeners: list[Callable[[], None]] = []

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The device's Ed25519 public key (what central must have registered)."""
        return self._key.public_key()

    @property
    def head_seq(self) -> int:
        return self._head_seq

    @property
    def signed_seq(self) -> int:
        return self._signed_seq

    def on_append(self, callback: Callable[[], None]) -> None:
        """Wake a sender when an event is queued, instead of it polling."""
        self._listeners.append(callback)

    def append(self, build: Callable[[int], AuditEvent]) -> AuditEvent:
        """Give the next sequence number to ``build``; log, link and queue its event atomically."""
        conn = self._db.conn
        with self._db.lock:
            seq = self._head_seq + 1
            event = build(seq)
            if self._device_id is not None and event.device_id != self._device_id:
                raise ValueError(f"this log belongs to {self._device_id}, not {event.device_id}")
            prev = self._head_hash if self._head_hash is not None else chain.genesis_hash(event.device_id)
            sealed = chain.seal(event, prev)
            payload = sealed.to_bytes()
            assert sealed.hash is not None
            try:
                conn.execute("INSERT INTO audit_log (seq, event_id, hash, payload) VALUES (?, ?, ?, ?)",
                             (seq, sealed.event_id, sealed.hash, payload))
                conn.execute("INSERT INTO audit_outbox (kind, seq) VALUES ('event', ?)", (seq,))
                signed = seq % self._checkpoint_every == 0
                if signed:
                    self._insert_checkpoint(sealed.device_id, seq, sealed.hash)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            self._head_seq, self._head_hash, self._device_id = seq, sealed.hash, sealed.device_id
            if signed:
                self._signed_seq = seq
            self._last_append = time.monotonic()
        for callback in self._listeners:
            callback()
        return sealed

    def _insert_checkpoint(self, device_id: str, seq: int, head: str) -> Checkpoint:
        cp = Checkpoint.sign(self._key, device_id, seq, head)
        self._db.conn.execute("INSERT INTO audit_checkpoints (seq, payload) VALUES (?, ?)", (seq, cp.to_bytes()))
        self._db.conn.execute("INSERT INTO audit_outbox (kind, seq) VALUES ('checkpoint', ?)", (seq,))
        return cp

    def sign_tail(self, min_idle_s: float = 0.0) -> Checkpoint | None:
        """Sign the head if events after the last checkpoint have been idle ``min_idle_s``."""
        with self._db.lock:
            if self._head_seq <= self._signed_seq or self._device_id is None or self._head_hash is None:
                return None
            if time.monotonic() - self._last_append < min_idle_s:
                return None
            try:
                cp = self._insert_checkpoint(self._device_id, self._head_seq, self._head_hash)
                self._db.conn.commit()
            except BaseException:
                self._db.conn.rollback()
                raise
            self._signed_seq = self._head_seq
        for callback in self._listeners:
            callback()
        return cp

    def pending(self, limit: int = 100, from_seq: int = 1) -> list[PendingEvent]:
        """Queued events from ``from_seq`` on, oldest first, with their exact logged bytes."""
        with self._db.lock:
            rows = self._db.conn.execute(
                "SELECT o.seq, l.payload FROM audit_outbox o JOIN audit_log l ON l.seq = o.seq"
                " WHERE o.kind = 'event' AND o.seq >= ? ORDER BY o.seq LIMIT ?", (from_seq, limit)).fetchall()
        return [PendingEvent(seq, bytes(p)) for seq, p in rows]

    def pending_checkpoints(self, after_seq: int = 0) -> list[PendingEvent]:
        """Queued checkpoints newer than ``after_seq``, oldest first."""
        with self._db.lock:
            rows = self._db.conn.execute(
                "SELECT o.seq, c.payload FROM audit_outbox o JOIN audit_checkpoints c ON c.seq = o.seq"
                " WHERE o.kind = 'checkpoint' AND o.seq > ? ORDER BY o.seq", (after_seq,)).fetchall()
        return [PendingEvent(seq, bytes(p)) for seq, p in rows]

    def first_pending(self) -> int | None:
        """The oldest event central has not acknowledged, if any."""
        with self._db.lock:
            row = self._db.conn.execute(
                "SELECT MIN(seq) FROM audit_outbox WHERE kind = 'event'").fetchone()
        return None if row[0] is None else int(row[0])

    def acknowledge_through(self, events_through: int, checkpoint_through: int) -> int:
        """Central holds every event up to ``events_through``: drop those rows. Returns rows removed."""
        with self._db.lock:
            if events_through > self._head_seq or checkpoint_through > self._head_seq:
                logger.warning("ack claims seq %s/%s beyond our head %s; ignoring the excess",
                               events_through, checkpoint_through, self._head_seq)
            events_through = min(events_through, self._head_seq)
            checkpoint_through = min(checkpoint_through, self._head_seq)
            cur = self._db.conn.execute(
                "DELETE FROM audit_outbox WHERE (kind = 'event' AND seq <= ?) OR (kind = 'checkpoint' AND seq <= ?)",
                (events_through, checkpoint_through))
            self._db.conn.commit()
            return cur.rowcount

    def depth(self) -> int:
        """Events and checkpoints still waiting for central."""
        with self._db.lock:
            return int(self._db.conn.execute("SELECT count(*) FROM audit_outbox").fetchone()[0])

    def verify(self) -> VerifyReport:
        """Check the whole local log against its hashes and signed checkpoints."""
        return audit_log.verify(self._db, self._device_id or "unknown", self._key.public_key())
