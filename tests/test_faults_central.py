"""Central's disk fills during ingest, and the broker loses its persistence file: real processes, nothing lost.

The same rig as ``tests/test_audit_faults.py``: a stand-in appliance process (the real audit log, outbox and
MQTT sender), central's real ingest process (``python -m central ingest``, SQLite) and a real Mosquitto with
persistence.

* Central's disk full: central's data folder is a small tmpfs, filled to the last byte mid-flow. SQLite's
  writes fail (``database or disk is full``), so central acknowledges nothing it did not store: every event
  is either in central's database or still in the desk's outbox, and the desk's outbox never drops below what
  central holds. Once space returns, the desk's resends bring every event, exactly once.
* The broker's persistence file lost: central away while the desk's events queue for it at the broker,
  then Mosquitto stopped, ``mosquitto.db`` (holding that queue) deleted, Mosquitto started again
  with no sessions and no queued messages. The desk's outbox sends again what central had not acknowledged,
  and central ends with every event exactly once.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox
from central.audit.store import AuditStore
from testbed.mosquitto import PersistentBroker
from tests.audit_support import wait_for
from tests.fault_disks import fill, free, small_filesystem
from tests.test_audit_faults import Rig


def _rig(tmp_path: Path) -> Iterator[Rig]:
    # Mosquitto drops to its own user: its persistence folder must be reachable by it, which pytest's 0700
    # tmp_path is not (there it silently persists nothing). A folder of its own under /tmp, readable on the way.
    home = Path(tempfile.mkdtemp(prefix="rfr-broker-"))
    home.chmod(0o755)
    broker = PersistentBroker(home / "broker")
    broker.start()
    rig = Rig(tmp=tmp_path, broker=broker)
    rig.register()
    try:
        yield rig
    finally:
        rig.close()
        broker.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    yield from _rig(tmp_path)


@pytest.fixture
def rig_on_small_disk(tmp_path: Path) -> Iterator[Rig]:
    """Central's data folder (its SQLite database) on a 16 MB file system of its own."""
    with small_filesystem(tmp_path / "central", "16m"):
        yield from _rig(tmp_path)


RESENT = "sending unacknowledged events from seq"  # the desk's sender, when no ack came in time
UNSTORED = "left unacknowledged"  # central's ingest, when a batch could not be stored


def _count(rig: Rig, log: str, line: str) -> int:
    path = rig.tmp / log
    return path.read_text().count(line) if path.exists() else 0


def _stored(rig: Rig) -> set[int]:
    store = AuditStore(rig.db_url)
    try:
        head = store.head(rig.device_id)
        return set(range(1, head.contiguous_seq + 1)) if head is not None else set()
    finally:
        store.close()


def _desk_outbox(rig: Rig) -> tuple[set[int], int]:
    """(seqs still waiting in the desk's outbox, the desk's newest seq)."""
    db = DeviceDatabase(rig.tmp / "device")
    try:
        outbox = Outbox(db)
        return {p.seq for p in outbox.pending(limit=100_000)}, outbox.head_seq
    finally:
        db.close()


def test_central_disk_full_during_ingest_acks_nothing_unstored(rig_on_small_disk: Rig) -> None:
    rig = rig_on_small_disk
    rig.start_central()
    rig.start_device(total=300, interval=0.02)
    rig.recorded_at_least(60)
    filler = fill(rig.tmp / "central")
    rig.recorded_at_least(300)  # the desk records on while central cannot store
    # The desk sends again (no ack came), and that resend reaches central, which still cannot store it.
    resends = _count(rig, "device.log", RESENT)
    assert wait_for(lambda: _count(rig, "device.log", RESENT) > resends, 60), rig.logs()
    failures = _count(rig, "central.log", UNSTORED)
    assert wait_for(lambda: _count(rig, "central.log", UNSTORED) > failures, 60), rig.logs()
    log = (rig.tmp / "central.log").read_text()
    assert "database or disk is full" in log and "left unacknowledged" in log, log[-3000:]
    stored = _stored(rig)
    waiting, head = _desk_outbox(rig)
    assert head == 300 and len(stored) < 300
    # Nothing is lost in between: what central did not store is still on the desk, never acknowledged away.
    assert set(range(1, 301)) <= stored | waiting
    assert min(waiting) <= max(stored, default=0) + 1

    free(filler)
    rig.assert_everything_arrived_once(300)


def test_broker_persistence_file_lost_outboxes_resend(rig: Rig) -> None:
    rig.start_central()
    rig.start_device(total=300, interval=0.02)
    rig.recorded_at_least(100)
    rig.kill9(rig.central)  # central away: what the desk sends now waits in central's session at the broker
    rig.recorded_at_least(200)
    rig.broker.stop()  # a clean stop writes those queued messages to mosquitto.db ...
    persistence = rig.broker.workdir / "mosquitto.db"
    assert persistence.exists() and persistence.stat().st_size > 0
    persistence.unlink()  # ... and it is lost: no sessions, no subscriptions, no queued messages
    rig.broker.start()
    rig.start_central()
    rig.recorded_at_least(300)
    rig.assert_everything_arrived_once(300)
