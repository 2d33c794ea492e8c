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

The chain's head is read from the database inside each append's write transaction, never kept in
memory: a second process appending to the same device database links its events to the same chain
instead of forking it or locking the desk out.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import sqlcipher3
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.storage import audit_log
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.signing_key import load_or_create_signing_key
from core.audit import chain
from core.audit.checkpoint import Checkpoint
from core.audit.verify import VerifyReport
from core.errors import CustodyRfrError
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
#: Rows read or queued per database lock when central asks for logged events again (``requeue_since``).
REQUEUE_PAGE = 2000


class AckRefusedError(CustodyRfrError):
    """An ack (already verified as central's) does not match this desk's log: nothing was deleted."""


class AuditLogBusyError(CustodyRfrError):
    """Another process held the device database's write lock past the busy timeout: nothing was recorded."""


@dataclass(frozen=True)
class PendingEvent:
    seq: int
    payload: bytes


class Outbox:
    """The device's audit log and its queue to central (one per device database).

    Any number of processes may append to the same device database: each append takes the database's
    write lock first (``BEGIN IMMEDIATE``) and reads the chain's head inside that transaction, so it
    links to the event committed last by whichever process wrote it. Nothing about the chain is kept
    in memory, so an append never links to a head another process has moved on from (the log's
    append-only trigger would refuse it anyway: it accepts only the next sequence number).
    """

    def __init__(self, db: DeviceDatabase, signing_key: Ed25519PrivateKey | None = None,
                 *, checkpoint_every: int = CHECKPOINT_EVERY) -> None:
        self._db = db
        self._key = signing_key or load_or_create_signing_key(db.data_dir)
        self._checkpoint_every = checkpoint_every
        with db.lock:
            db.conn.executescript(audit_log.SCHEMA + _SCHEMA)
            db.conn.commit()
        self._last_append = time.monotonic()
        self._listeners: list[Callable[[], None]] = []

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The device's Ed25519 public key (what central must have registered)."""
        return self._key.public_key()

    @property
    def head_seq(self) -> int:
        with self._db.lock:
            return self._sequences()[0]

    @property
    def signed_seq(self) -> int:
        with self._db.lock:
            return self._sequences()[1]

    def head_time(self) -> float | None:
        """When (Unix time, as the desk's clock read it) the newest event was recorded; None for an empty log."""
        with self._db.lock:
            row = self._db.conn.execute("SELECT payload FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return datetime.fromisoformat(AuditEvent.from_bytes(bytes(row[0])).occurred_at).timestamp()

    def event_time(self, seq: int) -> float | None:
        """When (Unix time, as the desk's clock read it) event ``seq`` was recorded; None if there is none."""
        with self._db.lock:
            row = self._db.conn.execute("SELECT payload FROM audit_log WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            return None
        return datetime.fromisoformat(AuditEvent.from_bytes(bytes(row[0])).occurred_at).timestamp()

    def last_clock_note(self) -> tuple[str, str] | None:
        """(outcome, why) of the newest clock note in the log (a ``device_fault`` saying ``clock_doubtful`` or
        ``clock_trusted``), None when there is none: a doubt recorded before a restart still stands after it.
        Found by SQLite in the stored JSON (compact, sorted keys), newest first, without decoding every event."""
        with self._db.lock:
            row = self._db.conn.execute(
                "SELECT payload FROM audit_log WHERE instr(payload, CAST(? AS BLOB)) > 0 AND"
                " (instr(payload, CAST(? AS BLOB)) > 0 OR instr(payload, CAST(? AS BLOB)) > 0)"
                " ORDER BY seq DESC LIMIT 1",
                ('"type":"device_fault"', '"outcome":"clock_doubtful"', '"outcome":"clock_trusted"')).fetchone()
        if row is None:
            return None
        event = AuditEvent.from_bytes(bytes(row[0]))
        return event.outcome, str(event.details.get("why", ""))

    def on_append(self, callback: Callable[[], None]) -> None:
        """Wake a sender when an event is queued, instead of it polling."""
        self._listeners.append(callback)

    def append(self, build: Callable[[int], AuditEvent]) -> AuditEvent:
        """Give the next sequence number to ``build``; log, link and queue its event atomically."""
        with self._write() as conn:
            head_seq, head_hash, device_id = self._head()
            seq = head_seq + 1
            event = build(seq)
            if device_id is not None and event.device_id != device_id:
                raise ValueError(f"this log belongs to {device_id}, not {event.device_id}")
            prev = head_hash if head_hash is not None else chain.genesis_hash(event.device_id)
            sealed = chain.seal(event, prev)
            assert sealed.hash is not None
            conn.execute("INSERT INTO audit_log (seq, event_id, hash, payload) VALUES (?, ?, ?, ?)",
                         (seq, sealed.event_id, sealed.hash, sealed.to_bytes()))
            conn.execute("INSERT INTO audit_outbox (kind, seq) VALUES ('event', ?)", (seq,))
            if seq % self._checkpoint_every == 0:
                self._insert_checkpoint(sealed.device_id, seq, sealed.hash)
        self._last_append = time.monotonic()
        for callback in self._listeners:
            callback()
        return sealed

    @contextmanager
    def _write(self) -> Iterator[sqlcipher3.Connection]:
        """One transaction that holds the database's write lock before it reads the head, committed at the end.

        Called inside a transaction the caller already opened with a write (``CaseStore.purge_retained``
        deletes a case's rows, then records the deletion), the write lock is already held, and the caller's
        writes commit, or roll back, together with the event.
        """
        conn = self._db.conn
        with self._db.lock:
            if not conn.in_transaction:
                try:
                    conn.execute("BEGIN IMMEDIATE")  # waits up to the busy timeout while another process writes
                except sqlcipher3.OperationalError as e:
                    if getattr(e, "sqlite_errorcode", None) != sqlcipher3.SQLITE_BUSY:
                        raise
                    raise AuditLogBusyError(
                        f"The audit log in {self._db.path} is being written by another process that did not "
                        "finish in time; this event was not recorded. Try again.") from e
            try:
                yield conn
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

    def _head(self) -> tuple[int, str | None, str | None]:
        """(seq, hash, device id) of the newest logged event, as committed by any process; (0, None, None)."""
        row = self._db.conn.execute("SELECT seq, hash, payload FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return 0, None, None
        return int(row[0]), str(row[1]), AuditEvent.from_bytes(bytes(row[2])).device_id

    def _sequences(self) -> tuple[int, int]:
        """(newest event, newest checkpoint): two index look-ups, cheap enough for the sender's every turn."""
        row = self._db.conn.execute("SELECT (SELECT IFNULL(MAX(seq), 0) FROM audit_log),"
                                    " (SELECT IFNULL(MAX(seq), 0) FROM audit_checkpoints)").fetchone()
        return int(row[0]), int(row[1])

    def _insert_checkpoint(self, device_id: str, seq: int, head: str) -> Checkpoint:
        cp = Checkpoint.sign(self._key, device_id, seq, head)
        self._db.conn.execute("INSERT INTO audit_checkpoints (seq, payload) VALUES (?, ?)", (seq, cp.to_bytes()))
        self._db.conn.execute("INSERT INTO audit_outbox (kind, seq) VALUES ('checkpoint', ?)", (seq,))
        return cp

    def sign_tail(self, min_idle_s: float = 0.0) -> Checkpoint | None:
        """Sign the head if events after the last checkpoint have been idle ``min_idle_s``."""
        with self._db.lock:
            head_seq, signed_seq = self._sequences()
            if head_seq <= signed_seq or time.monotonic() - self._last_append < min_idle_s:
                return None
            with self._write():  # read again under the write lock: another process may have signed or appended
                head_seq, head_hash, device_id = self._head()
                if head_seq <= self._sequences()[1] or device_id is None or head_hash is None:
                    return None
                cp = self._insert_checkpoint(device_id, head_seq, head_hash)
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

    @property
    def lock(self) -> threading.RLock:  # type: ignore[valid-type]
        """The device database's lock, which every append takes: a caller that must append several events in
        order holds it around them (re-entrant), and never waits for another lock while holding it."""
        return self._db.lock

    def first_pending(self) -> int | None:
        """The oldest event central has not acknowledged, if any."""
        with self._db.lock:
            row = self._db.conn.execute(
                "SELECT MIN(seq) FROM audit_outbox WHERE kind = 'event'").fetchone()
        return None if row[0] is None else int(row[0])

    def acknowledge_through(self, events_through: int, checkpoint_through: int, head_hash: str) -> int:
        """Central holds every event up to ``events_through``, the last with hash ``head_hash``, and the
        checkpoint at ``checkpoint_through``: drop those rows. Returns rows removed (0 for a repeat).

        Raises :class:`AckRefusedError`, deleting nothing, for an ack past what this desk has logged or
        signed, or whose hash is not this desk's event at that position: the chain makes the hash stand for
        every event before it, so central can only have it by holding exactly those events.
        """
        with self._db.lock:
            head_seq, signed_seq = self._sequences()
            if events_through > head_seq or checkpoint_through > signed_seq:
                raise AckRefusedError(f"the ack covers events through {events_through} and checkpoint "
                                      f"{checkpoint_through}, but this desk has logged {head_seq} events and "
                                      f"signed checkpoints through {signed_seq}")
            if events_through == 0:
                ours = None if head_seq == 0 else chain.genesis_hash(self._head()[2] or "")
            else:
                row = self._db.conn.execute("SELECT hash FROM audit_log WHERE seq = ?", (events_through,)).fetchone()
                ours = None if row is None else str(row[0])
            if ours is not None and ours != head_hash:
                raise AckRefusedError(f"the ack's hash for event {events_through} is not this desk's: central "
                                      "does not hold the events this desk logged")
            cur = self._db.conn.execute(
                "DELETE FROM audit_outbox WHERE (kind = 'event' AND seq <= ?) OR (kind = 'checkpoint' AND seq <= ?)",
                (events_through, checkpoint_through))
            self._db.conn.commit()
            return cur.rowcount

    def requeue_since(self, since: datetime, *, page: int = REQUEUE_PAGE) -> tuple[int, int]:
        """Queue again every event from the first one logged at or after ``since`` to the head, and the
        checkpoints among them (central lost them in a restore, though it had acknowledged them). Returns
        (events queued anew, first seq queued, or 0). Rows still queued are left as they are; central's ingest
        is idempotent by (device, seq), so an event it still holds is counted as a duplicate and dropped.

        Every event from the first match on is queued, not only those stamped after ``since``: a desk clock
        that jumped back would otherwise leave later events out (``appliance.services.clock_guard``).

        A ``since`` years back reaches the whole chain, so the log is read and queued ``page`` rows at a time,
        each page under the database lock on its own: searches and appends go on between pages. The outbox
        holds one row per event at most, however often this runs; the link sends it in batches as usual. A crash
        midway leaves the pages already queued (central then asks again).
        """
        first, after = 0, 0
        while not first:
            with self._db.lock:
                rows = self._db.conn.execute("SELECT seq, payload FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
                                             (after, page)).fetchall()
            if not rows:
                return 0, 0
            for seq, payload in rows:
                try:
                    moment = datetime.fromisoformat(json.loads(bytes(payload))["occurred_at"])
                    if moment >= since:
                        first = int(seq)
                        break
                except (ValueError, KeyError, TypeError):
                    continue
            after = int(rows[-1][0])
        with self._db.lock:
            head = self._sequences()[0]
        queued = 0
        for low in range(first, head + 1, page):
            with self._db.lock:
                try:
                    cur = self._db.conn.execute(
                        "INSERT OR IGNORE INTO audit_outbox (kind, seq) SELECT 'event', seq FROM audit_log"
                        " WHERE seq >= ? AND seq < ?", (low, low + page))
                    queued += cur.rowcount
                    self._db.conn.execute(
                        "INSERT OR IGNORE INTO audit_outbox (kind, seq) SELECT 'checkpoint', seq FROM audit_checkpoints"
                        " WHERE seq >= ? AND seq < ?", (low, low + page))
                    self._db.conn.commit()
                except BaseException:
                    self._db.conn.rollback()
                    raise
        logger.info("queued %d logged events again from seq %d for central", queued, first)
        return queued, first

    def depth(self) -> int:
        """Events and checkpoints still waiting for central."""
        with self._db.lock:
            return int(self._db.conn.execute("SELECT count(*) FROM audit_outbox").fetchone()[0])

    def verify(self) -> VerifyReport:
        """Check the whole local log against its hashes and signed checkpoints."""
        with self._db.lock:
            device_id = self._head()[2]
        return audit_log.verify(self._db, device_id or "unknown", self._key.public_key())
