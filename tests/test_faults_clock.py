"""A desk clock that jumps by hours or days, and central's view of a desk's clock.

The desk runs for real (pipeline, library, SQLCipher device database, MQTT link to a real Mosquitto); only its
wall clock is injected (``ClockGuard.from_log``, as the runtime opens it, and the retention job read it, as
tests/appliance/test_retention.py does for the retention job), so "91 days later" is a number and the
machine's clock is never touched. Central's signed acks arrive over the broker with central's real time.

What must hold: a jump either way is recorded in the audit chain (a ``device_fault`` event before the next
event, so every later time is read knowing the clock was doubtful); the retention purge destroys nothing
while the clock is doubtful, though a clock 91 days ahead makes a fresh viable match look expired; only
central's signed time makes the clock trusted again; a desk behind central is doubtful from central's ack
alone; a desk whose clock is behind its own log is doubtful from the start. Central flags a heartbeat's
skew beyond two minutes on the fleet page's status.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.__main__ import main as appliance_main
from appliance.services.audit import AuditLog
from appliance.services.clock_guard import ClockGuard
from appliance.services.retention import DAY_S, RetentionService
from appliance.storage.audit_log import records
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox
from appliance.web import create_app
from central.audit.store import AuditStore
from central.fleet.health_store import HealthStore
from central.fleet.registry_store import RegistryStore
from central.fleet.status import device_status
from central.ingest.health import HealthIngest
from core.audit.verify import EventRecord
from core.fleet import Heartbeat
from core.topics import ack_topic, health_topic
from tests.appliance.conftest import appliance_settings
from tests.appliance.desk_helpers import add_users, fast_kdf
from tests.appliance.test_acks import signed_ack
from tests.appliance.test_retention import apply_config, closed_viable, write_settings
from tests.audit_support import wait_for

HOUR = 3600.0


class Wall:
    """The desk's wall clock: real time plus an offset the test sets (a jump)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def faults(desk) -> list[dict]:
    return [e.to_dict() for e in _events(desk) if e.type == "device_fault"]


def _events(desk):
    return [r.event for r in records(desk.db) if isinstance(r, EventRecord)]


def _ack_now(desk, publisher) -> None:
    """Central's signed ack for the newest event, issued at central's (the real) time, over the broker."""
    seq, head = desk.db.conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    desk.clock_guard.offset_s = None  # set again by the guard as it judges this ack: then its decision is made
    publisher(ack_topic(desk.settings.device_id), signed_ack(desk.settings.device_id, int(seq), 0, str(head)))
    assert wait_for(lambda: desk.clock_guard.offset_s is not None, 20), f"ack not taken ({desk.mqtt.refused} refused)"


@pytest.fixture
def clock_desk(tmp_path, demo_library, pipeline, mosquitto, monkeypatch):
    fast_kdf(monkeypatch)
    wall = Wall()
    monkeypatch.setattr(ClockGuard, "from_log", functools.partial(ClockGuard.from_log, wall=wall))
    settings = appliance_settings(tmp_path, demo_library, mqtt_port=mosquitto.port)
    app = create_app(settings, pipeline=pipeline, start_sync=True)
    app.config["TESTING"] = True
    desk = app.extensions["desk"]
    desk.retention = RetentionService(desk.cases.store, desk.desk_config, desk.audit, clock=wall,
                                      clock_doubt=lambda: desk.clock_guard.doubt)
    add_users(app)
    assert desk.mqtt.wait_connected(20)
    yield app, desk, wall
    desk.close()


def test_desk_clock_jumps_are_recorded_and_hold_the_retention_purge_back(clock_desk, face_photo, publisher):
    app, desk, wall = clock_desk
    apply_config(desk.desk_config, 1, 90)
    _, case_id = closed_viable(app, face_photo("obama3.jpg").read_bytes())
    assert desk.clock_guard.doubt is None and faults(desk) == []

    # The clock jumps 91 days forwards: the viable match looks past its 90 days.
    wall.offset = 91 * DAY_S
    desk.audit.record("login", "officer", "ok")
    jumped = faults(desk)
    assert [(f["outcome"], f["details"]["reason"]) for f in jumped] == [("clock_doubtful", "jumped_forwards")]
    assert jumped[0]["details"]["jump_s"] == pytest.approx(91 * DAY_S, abs=60)
    types = [e.type for e in _events(desk)]
    assert types[-2:] == ["device_fault", "login"]  # told before the event whose time is wrong
    assert desk.retention.purge() == []
    assert desk.cases.get(case_id).biometrics_destroyed_at is None
    # Central's ack says central's time is 91 days earlier: maybe only a late ack, so the doubt stays.
    _ack_now(desk, publisher)
    assert desk.clock_guard.doubt is not None and desk.retention.purge() == []
    assert desk.cases.get(case_id).biometrics_destroyed_at is None

    # Set right again (a jump backwards, so still doubtful) until central's time agrees.
    wall.offset = 0.0
    desk.audit.check_clock()
    assert [f["details"].get("reason") for f in faults(desk)][-1] == "jumped_backwards"
    assert desk.clock_guard.doubt is not None
    _ack_now(desk, publisher)
    assert wait_for(lambda: desk.clock_guard.doubt is None, 10)
    desk.audit.check_clock()
    assert faults(desk)[-1]["outcome"] == "clock_trusted"
    # On the right clock the purge runs, and rightly destroys nothing: the case is minutes old.
    assert desk.retention.purge() == []
    assert desk.cases.get(case_id).biometrics_destroyed_at is None
    assert desk.audit.verify().findings == []


def test_a_replayed_old_ack_cannot_clear_a_clock_doubt(clock_desk, publisher):
    """An ack central signed hours ago (captured, or held at the broker) carries an old time that a clock set
    back by the same hours agrees with; it covers only events from before the doubt, so it proves nothing."""
    _app, desk, wall = clock_desk
    desk.audit.record("login", "officer", "ok")
    row = desk.db.conn.execute("SELECT hash FROM audit_log WHERE seq = 1").fetchone()
    three_hours_ago = datetime.now(UTC) - timedelta(seconds=3 * HOUR)
    wall.offset = -3 * HOUR
    desk.audit.check_clock()
    assert faults(desk)[-1]["details"]["reason"] == "jumped_backwards" and desk.clock_guard.doubt is not None
    assert desk.clock_guard.offset_s is None  # no ack yet
    publisher(ack_topic(desk.settings.device_id),
              signed_ack(desk.settings.device_id, 1, 0, str(row[0]), issued=three_hours_ago))
    # offset_s is set in the same step that would clear the doubt: once it is there, the decision is made.
    assert wait_for(lambda: desk.clock_guard.offset_s is not None, 20), desk.mqtt.refused
    assert desk.clock_guard.offset_s == pytest.approx(0, abs=60)  # the old time agrees with the wrong clock...
    assert desk.clock_guard.doubt is not None  # ...but an ack for events from before the doubt does not clear it
    desk.audit.check_clock()
    assert faults(desk)[-1]["outcome"] == "clock_doubtful"


def test_a_recorded_clock_doubt_outlives_a_restart_and_holds_the_purge_command_back(
        clock_desk, face_photo, pipeline, publisher, tmp_path, capsys):
    """A doubt lives in the chain, not only in the process that noticed it: restarting the desk or running
    ``retention purge`` by hand must not destroy on a clock central has not yet confirmed."""
    app, desk, wall = clock_desk
    apply_config(desk.desk_config, 1, 90)
    desk.cases._clock = lambda: time.time() - 100 * DAY_S  # looks closed 100 days ago: past the 90 days
    _, case_id = closed_viable(app, face_photo("obama3.jpg").read_bytes())
    wall.offset = 3 * HOUR
    desk.audit.check_clock()
    assert faults(desk)[-1]["outcome"] == "clock_doubtful"
    config = write_settings(tmp_path / "appliance.toml", app)
    settings = desk.settings
    desk.close()  # the service stops (a power cut, an update) before central's time confirmed the clock
    wall.offset = 0.0

    capsys.readouterr()
    assert appliance_main(["retention", "purge", "--config", str(config)]) == 1
    assert "clock is not trusted" in capsys.readouterr().err

    again = create_app(settings, pipeline=pipeline, start_sync=True).extensions["desk"]
    try:
        assert again.clock_guard.doubt is not None  # still doubtful after the restart...
        assert again.cases.probe(case_id) is not None  # ...so the purge at start destroyed nothing
        assert again.mqtt.wait_connected(20)
        _ack_now(again, publisher)  # central's time, in an ack for an event logged since the restart
        assert wait_for(lambda: again.clock_guard.doubt is None, 10)
        assert [p.case_id for p in again.retention.purge()] == [case_id]
        assert again.cases.probe(case_id) is None
    finally:
        again.close()


def test_desk_clock_behind_centrals_is_doubtful_from_the_ack(clock_desk, publisher):
    _app, desk, wall = clock_desk
    wall.offset = -3 * HOUR
    desk.audit.check_clock()  # the jump itself
    wall_jump = faults(desk)[-1]["details"]
    assert wall_jump["reason"] == "jumped_backwards"
    _ack_now(desk, publisher)
    assert desk.clock_guard.offset_s == pytest.approx(-3 * HOUR, abs=60)
    assert desk.clock_guard.doubt is not None


def test_desk_started_with_its_clock_behind_its_own_log_is_doubtful(tmp_path):
    db = DeviceDatabase(tmp_path / "device")
    try:
        outbox = Outbox(db)
        audit = AuditLog("desk-clock-01", outbox)
        audit.record("login", "officer", "ok")
        last = outbox.head_time()
        assert last is not None
        wall = Wall()
        wall.offset = -5 * HOUR  # a dead RTC battery: the desk starts five hours in the past
        guard = ClockGuard(last, wall=wall)
        assert guard.doubt is not None and "before the newest recorded event" in guard.doubt
        audit.watch_clock(guard.check)
        audit.record("login", "officer", "ok")
        told = [r.event for r in records(db) if isinstance(r, EventRecord) and r.event.type == "device_fault"]
        assert [(e.outcome, e.details["reason"]) for e in told] == [("clock_doubtful", "behind_log")]
        # A right clock after a restart is not doubtful.
        assert ClockGuard(outbox.head_time()).doubt is None
    finally:
        db.close()


def test_central_flags_a_desk_clock_hours_off_from_its_heartbeats(tmp_path):
    url = f"sqlite:///{tmp_path / 'central.db'}"
    registry, store, audit = RegistryStore(url), HealthStore(url), AuditStore(url)
    try:
        for device in ("desk-ahead-01", "desk-right-01"):
            raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            registry.register_device(device, raw.hex())
        ingest = HealthIngest(store, registry, audit)
        now = datetime.now(UTC)
        for device, skew in (("desk-ahead-01", timedelta(hours=3)), ("desk-right-01", timedelta(seconds=5))):
            beat = Heartbeat(device_id=device, sent_at=(now + skew).isoformat(timespec="milliseconds"),
                             interval_s=60, software_version="1", library_version=1, embedder_id=None,
                             disk_free_bytes=90, disk_total_bytes=100, memory_available_bytes=None,
                             memory_total_bytes=None, outbox_depth=0, since_last_sync_s=None, clock_offset_s=None,
                             key_protection="tpm")
            assert ingest.handle(health_topic(device), beat.to_bytes(), received_at=now)
        latest = store.latest_health()
        ahead = device_status("desk-ahead-01", latest["desk-ahead-01"], None, now=now, newest_library=1)
        right = device_status("desk-right-01", latest["desk-right-01"], None, now=now, newest_library=1)
        assert ahead.flags == ["clock skew"] and "+10800 s" in ahead.reasons[0]
        assert right.ok
    finally:
        for s in (registry, store, audit):
            s.close()
