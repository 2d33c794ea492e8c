"""Central's resend request on the desk: checked at once, its events queued on a thread of their own.

The end-to-end drill (a real backup, restore and resend over Mosquitto) is in
``tests/central/test_backup_broker.py``; here, what the MQTT thread is spared.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from appliance.services.audit import AuditLog
from appliance.services.resend import ResendService
from appliance.storage import audit_log
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox
from core.audit.verify import EventRecord
from core.fleet import FleetCommand
from tests.fleet_key import CENTRAL_PUBLIC, COMMAND_KEY

DEVICE = "desk-resend-01"


class GatedOutbox(Outbox):
    """The real outbox, whose requeue waits at a gate the test opens: a long log's paging, held still."""

    def __init__(self, db: DeviceDatabase) -> None:
        super().__init__(db)
        self.gate, self.entered = threading.Event(), threading.Event()

    def requeue_since(self, since: datetime, **kwargs) -> tuple[int, int]:  # type: ignore[no-untyped-def]
        self.entered.set()
        assert self.gate.wait(10), "the requeue was held on the caller's thread"
        return super().requeue_since(since, **kwargs)


def _events(db: DeviceDatabase) -> list:
    return [r.event for r in audit_log.records(db) if isinstance(r, EventRecord)]


def test_the_request_is_answered_before_its_events_are_queued_and_recorded_once_they_are(tmp_path: Path) -> None:
    db = DeviceDatabase(tmp_path / "device")
    outbox = GatedOutbox(db)
    log = AuditLog(DEVICE, outbox)
    for _ in range(5):
        log.record("search", "pc-one", "candidates_shown")
    log.checkpoint()
    [(head_hash,)] = db.conn.execute("SELECT hash FROM audit_log WHERE seq = ?", (outbox.head_seq,)).fetchall()
    outbox.acknowledge_through(outbox.head_seq, outbox.signed_seq, head_hash)
    assert outbox.depth() == 0
    service = ResendService(DEVICE, CENTRAL_PUBLIC, log, outbox, tmp_path)

    request = FleetCommand.sign(COMMAND_KEY, DEVICE, "resend", since=datetime(2020, 1, 1, tzinfo=UTC))
    assert service.handle(request.to_bytes()) is True  # returned while the requeue still waits at the gate
    assert outbox.entered.wait(5)
    assert "events_resent" not in [e.type for e in _events(db)]

    outbox.gate.set()
    service.workers[-1].join(10)
    resent = _events(db)[-1]
    assert (resent.type, resent.outcome, resent.details["queued"], resent.details["from_seq"]) == (
        "events_resent", "requeued", 5, 1)
    assert [p.seq for p in outbox.pending(limit=100)][:5] == [1, 2, 3, 4, 5]

    assert service.handle(request.to_bytes()) is False  # the same request again: a replay, refused
    assert _events(db)[-1].outcome == "fleet_command_refused"
