"""The append-only, hash-linked audit log and its signed checkpoints, in the device database.

SQL triggers refuse every UPDATE and DELETE on the log and checkpoint tables,
and refuse an INSERT that is not the next sequence number, so no code path in
the appliance can rewrite history. Someone holding the database key can drop
the triggers, which is why every row is also hash-linked and periodically
signed: ``verify`` then names the row that was touched.
"""

from __future__ import annotations

from collections.abc import Iterator

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.storage.device_db import DeviceDatabase
from core.audit.checkpoint import Checkpoint
from core.audit.verify import CheckpointRecord, EventRecord, Record, VerifyReport, verify_records
from core.events import AuditEvent

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq INTEGER PRIMARY KEY,
    payload BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_log_append_only BEFORE INSERT ON audit_log
WHEN NEW.seq IS NOT (SELECT IFNULL(MAX(seq), 0) + 1 FROM audit_log)
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: only the next sequence number may be added'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: rows cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: rows cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only: rows cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only: rows cannot be deleted'); END;
"""


def records(db: DeviceDatabase) -> Iterator[Record]:
    """The log in chain order (a checkpoint right after the event it signs); position = row number."""
    with db.lock:
        events = db.conn.execute("SELECT seq, payload FROM audit_log ORDER BY seq").fetchall()
        checkpoints = db.conn.execute("SELECT seq, payload FROM audit_checkpoints ORDER BY seq").fetchall()
    by_seq: dict[int, list[bytes]] = {}
    for seq, payload in checkpoints:
        by_seq.setdefault(seq, []).append(bytes(payload))
    position = 0
    for seq, payload in events:
        position += 1
        yield EventRecord(position, AuditEvent.from_bytes(bytes(payload)))
        for cp in by_seq.pop(seq, []):
            position += 1
            yield CheckpointRecord(position, Checkpoint.from_bytes(cp))
    for seq in sorted(by_seq):
        for cp in by_seq[seq]:
            position += 1
            yield CheckpointRecord(position, Checkpoint.from_bytes(cp))


def verify(db: DeviceDatabase, device_id: str, public_key: Ed25519PublicKey) -> VerifyReport:
    """Check the device's own log: every row links, every checkpoint is signed and matches."""
    return verify_records(records(db), {device_id: public_key}, require_signed_tail=False)
