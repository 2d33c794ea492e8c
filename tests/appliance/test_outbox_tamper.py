"""The device's audit log refuses rewrites, and names the row when someone with the key forces one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlcipher3

from appliance.services.audit import AuditLog
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox


@pytest.fixture
def log(tmp_path: Path) -> tuple[DeviceDatabase, Outbox]:
    db = DeviceDatabase(tmp_path / "device")
    outbox = Outbox(db, checkpoint_every=4)
    audit = AuditLog("desk-t-01", outbox)
    for i in range(8):
        audit.record("search", f"pc{i}", "candidates_shown", candidates=i)
    assert outbox.verify().ok
    return db, outbox


@pytest.mark.parametrize("sql", [
    "UPDATE audit_log SET payload = x'00' WHERE seq = 3",
    "DELETE FROM audit_log WHERE seq = 3",
    "INSERT INTO audit_log (seq, event_id, hash, payload) VALUES (3, 'x', 'y', x'00')",
    "INSERT INTO audit_log (seq, event_id, hash, payload) VALUES (20, 'x', 'y', x'00')",
    "DELETE FROM audit_checkpoints",
])
def test_triggers_refuse_every_rewrite(log, sql) -> None:
    db, _ = log
    with pytest.raises(sqlcipher3.DatabaseError, match=r"append-only|UNIQUE"):
        db.conn.execute(sql)
    db.conn.rollback()


def _drop_triggers(db: DeviceDatabase) -> None:
    for (name,) in db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.conn.execute(f"DROP TRIGGER {name}")


def _payload(db: DeviceDatabase, seq: int) -> dict:
    return json.loads(bytes(db.conn.execute("SELECT payload FROM audit_log WHERE seq = ?", (seq,)).fetchone()[0]))


def test_edited_row_is_named(log) -> None:
    db, outbox = log
    _drop_triggers(db)
    event = _payload(db, 3)
    event["actor"] = "someone-else"
    db.conn.execute("UPDATE audit_log SET payload = ? WHERE seq = 3", (json.dumps(event).encode(),))
    db.conn.commit()
    [finding] = outbox.verify().findings
    assert (finding.position, finding.seq, finding.kind) == (3, 3, "edited")


def test_deleted_row_is_a_gap_at_the_next_position(log) -> None:
    db, outbox = log
    _drop_triggers(db)
    db.conn.execute("DELETE FROM audit_log WHERE seq = 6")
    db.conn.commit()
    first = outbox.verify().findings[0]
    assert (first.seq, first.kind) == (7, "gap")


def test_inserted_row_breaks_the_chain_where_it_was_put(log) -> None:
    db, outbox = log
    _drop_triggers(db)
    # Make room at seq 2 by renumbering later rows, then insert a forged event there.
    for seq in range(8, 1, -1):
        db.conn.execute("UPDATE audit_log SET seq = seq + 1 WHERE seq = ?", (seq,))
    forged = _payload(db, 3)
    forged.update(seq=2, actor="forger", event_id="00000000-0000-4000-8000-000000000001")
    db.conn.execute("INSERT INTO audit_log (seq, event_id, hash, payload) VALUES (2, ?, ?, ?)",
                    (forged["event_id"], forged["hash"], json.dumps(forged).encode()))
    db.conn.commit()
    kinds = [(f.seq, f.kind) for f in outbox.verify().findings]
    assert (2, "edited") in kinds
