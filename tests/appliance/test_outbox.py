"""One audit chain, however many processes append to the device database.

The outbox reads the chain's head inside each append's write transaction (``BEGIN IMMEDIATE``), so a
second appender, such as a command run beside the desk, links to the same chain: no fork, no gap, and
the desk is not locked out of its own log afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from appliance.services.audit import AuditLog
from appliance.storage import audit_log
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import AuditLogBusyError, Outbox
from core.audit.verify import EventRecord, verify_records
from tests.appliance.audit_writer import CHECKPOINT_EVERY

ROOT = Path(__file__).resolve().parents[2]
DEVICE = "desk-writers-01"


def _events(db: DeviceDatabase) -> list:
    return [r.event for r in audit_log.records(db) if isinstance(r, EventRecord)]


def test_an_outbox_opened_before_another_appended_links_to_the_newer_head(tmp_path: Path) -> None:
    first_db, second_db = DeviceDatabase(tmp_path / "device"), DeviceDatabase(tmp_path / "device")
    first = AuditLog(DEVICE, Outbox(first_db, checkpoint_every=3))
    second = AuditLog(DEVICE, Outbox(second_db, checkpoint_every=3))  # opened on the same, empty log
    for _ in range(2):
        first.record("search", "pc-first", "candidates_shown")
        second.record("search", "pc-second", "candidates_shown")
    second.checkpoint()
    first.checkpoint()  # the head is signed already: nothing to add
    events = _events(first_db)
    assert [(e.seq, e.actor) for e in events] == [(1, "pc-first"), (2, "pc-second"), (3, "pc-first"),
                                                 (4, "pc-second")]
    report = first.verify()
    assert report.ok and (report.events, report.checkpoints) == (4, 2), report.findings


def test_two_processes_appending_at_once_make_one_verifiable_chain(tmp_path: Path) -> None:
    data, go, count = tmp_path / "device", tmp_path / "go", 150
    db = DeviceDatabase(data)
    outbox = Outbox(db)  # the keys exist before the writers start, as on a provisioned desk
    AuditLog(DEVICE, outbox).record("library_loaded", "system", "ok")
    writers = [subprocess.Popen([sys.executable, "-m", "tests.appliance.audit_writer", str(data), DEVICE, actor,
                                 str(count), str(go)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for actor in ("writer-a", "writer-b")]
    try:
        for writer in writers:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "ready", writer.stderr
        go.touch()
        outputs = [writer.communicate(timeout=120) for writer in writers]
    finally:
        for writer in writers:
            writer.kill()
            writer.wait()
    assert [w.returncode for w in writers] == [0, 0], [err[-2000:] for _, err in outputs]

    events = _events(db)
    assert [e.seq for e in events] == list(range(1, 2 * count + 2))
    actors = [e.actor for e in events[1:]]
    assert actors.count("writer-a") == actors.count("writer-b") == count
    assert sum(a != b for a, b in pairwise(actors)) > 2  # they really took turns
    # core's verifier, as central and an auditor run it: every link, every checkpoint, and a signed tail.
    report = verify_records(audit_log.records(db), {DEVICE: outbox.public_key}, require_signed_tail=True)
    assert report.ok, report.findings
    assert report.events == 2 * count + 1 and report.checkpoints >= (2 * count + 1) // CHECKPOINT_EVERY
    # The first process carries on: its next event links to the writers' last one.
    assert AuditLog(DEVICE, outbox).record("search", "pc-after", "no_candidates").seq == 2 * count + 2
    assert outbox.verify().ok
    db.close()


def test_an_appender_that_cannot_get_the_write_lock_is_refused_and_records_nothing(tmp_path: Path) -> None:
    holder_db, waiter_db = DeviceDatabase(tmp_path / "device"), DeviceDatabase(tmp_path / "device")
    waiter = AuditLog(DEVICE, Outbox(waiter_db))
    waiter.record("library_loaded", "system", "ok")
    waiter_db.conn.execute("PRAGMA busy_timeout = 200")
    holder_db.conn.execute("BEGIN IMMEDIATE")  # another process in the middle of a long write
    with pytest.raises(AuditLogBusyError, match=r"another process .* this event was not recorded"):
        waiter.record("search", "pc-waiting", "candidates_shown")
    holder_db.conn.rollback()
    assert waiter.record("search", "pc-waiting", "candidates_shown").seq == 2  # no gap, no fork
    assert waiter.verify().ok


def test_events_asked_for_again_are_queued_page_by_page_once_each(tmp_path: Path) -> None:
    """After a restore central asks for the events since a moment again: the log is read and queued a page at
    a time (the desk is not held for the whole chain), the same as in one go, and a repeat adds nothing."""
    db = DeviceDatabase(tmp_path / "device")
    outbox = Outbox(db, checkpoint_every=4)
    log = AuditLog(DEVICE, outbox)
    for _ in range(11):
        log.record("search", "pc-one", "candidates_shown")
    log.checkpoint()
    head = outbox.head_seq
    [(head_hash,)] = db.conn.execute("SELECT hash FROM audit_log WHERE seq = ?", (head,)).fetchall()
    outbox.acknowledge_through(head, outbox.signed_seq, head_hash)
    assert outbox.depth() == 0
    events = _events(db)

    assert outbox.requeue_since(datetime.now(UTC) + timedelta(days=1), page=3) == (0, 0)  # nothing logged since
    assert outbox.requeue_since(datetime(2020, 1, 1, tzinfo=UTC), page=3) == (11, 1)  # the whole chain
    assert [p.seq for p in outbox.pending(limit=100)] == [e.seq for e in events]
    assert [p.seq for p in outbox.pending_checkpoints()] == [4, 8, 11]
    assert outbox.requeue_since(datetime(2020, 1, 1, tzinfo=UTC), page=3) == (0, 1)  # asked again: no new rows
    outbox.acknowledge_through(head, outbox.signed_seq, head_hash)
    since = datetime.fromisoformat(events[7].occurred_at)  # the eighth event's moment: from the first so stamped
    queued, first = outbox.requeue_since(since, page=2)
    assert first == min(e.seq for e in events if datetime.fromisoformat(e.occurred_at) >= since) <= 8
    assert queued == 11 - first + 1 and [p.seq for p in outbox.pending_checkpoints()] == [c for c in (4, 8, 11)
                                                                                          if c >= first]


def test_a_clock_note_taken_by_another_thread_is_stored_before_the_event_that_follows_it(tmp_path: Path) -> None:
    """The health sender takes the note of a clock jump just as an officer's action is recorded: the note must
    land in the chain before that action, whose time the jump made wrong (the guard hands each note out once)."""
    db = DeviceDatabase(tmp_path / "device")
    log = AuditLog(DEVICE, Outbox(db))
    notes = [{"outcome": "clock_doubtful", "reason": "jumped_forwards"}]
    taken, recorded = threading.Event(), threading.Event()

    def guard() -> list[dict]:
        if threading.current_thread().name != "health-sender":
            return []
        handed, notes[:] = list(notes), []
        taken.set()
        recorded.wait(1.0)  # the slow half of the race: the note is out of the guard, not yet in the chain
        return handed

    log.watch_clock(guard)
    sender = threading.Thread(target=log.check_clock, name="health-sender")
    sender.start()
    assert taken.wait(5)
    log.record("login", "officer", "ok")
    recorded.set()
    sender.join(5)
    assert [(e.type, e.outcome) for e in _events(db)] == [("device_fault", "clock_doubtful"), ("login", "ok")]
