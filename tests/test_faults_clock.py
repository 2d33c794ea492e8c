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

import appliance.services.clock_guard as clock_guard_module
from appliance.__main__ import main as appliance_main
from appliance.runtime import newest_signed
from appliance.services.audit import AuditLog
from appliance.services.clock_guard import ClockGuard, ClockNotedAudit
from appliance.services.retention import DAY_S, RetentionService
from appliance.services.wipe import is_withdrawn
from appliance.storage.accounts import SessionStore
from appliance.storage.audit_log import records
from appliance.storage.authorisation import AuthorisationStore
from appliance.storage.desk_config import DeskConfigStore
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox
from appliance.updates.authorisation import AuthorisationUpdater
from appliance.web import create_app
from central.audit.store import AuditStore
from central.fleet.health_store import HealthStore
from central.fleet.registry_store import RegistryStore
from central.fleet.status import device_status
from central.ingest.health import HealthIngest
from core.audit.verify import EventRecord
from core.desk_config import SearchAuthorisation
from core.fleet import FleetCommand, Heartbeat
from core.library_authorisation import AuthorisationManifest, AuthorisationTargetInfo, manifest_digest
from core.topics import ack_topic, fleet_command_topic, health_topic
from tests.appliance.conftest import appliance_settings
from tests.appliance.desk_helpers import Desk, add_users, fast_kdf
from tests.appliance.library_manifest import authorise, entry, hold
from tests.appliance.test_acks import signed_ack
from tests.appliance.test_library_search import OPERATION, OPERATION_NAME, operation_library  # noqa: F401
from tests.appliance.test_retention import apply_config, closed_viable, write_settings
from tests.audit_support import wait_for
from tests.fleet_key import COMMAND_KEY
from tests.provisioning.desks import copy_library
from websession.manager import ENDED_CLOCK, SessionManager

HOUR = 3600.0


class Wall:
    """The desk's wall clock: real time plus an offset the test sets (a jump)."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.mono: Wall | None = None  # the fixture's clock that never jumps

    def __call__(self) -> float:
        return time.time() + self.offset


class Mono(Wall):
    """The desk's clock that never jumps: real time since boot plus the time the test lets pass."""

    def __call__(self) -> float:
        return time.clock_gettime(time.CLOCK_BOOTTIME) + self.offset


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
    wall, mono = Wall(), Mono()
    wall.mono = mono  # the test lets time pass on both (a jump moves only the wall)
    monkeypatch.setattr(ClockGuard, "from_log", functools.partial(ClockGuard.from_log, wall=wall, monotonic=mono))
    # Its own copy: one test wipes the desk, and a wipe destroys the library file the desk was installed from.
    settings = appliance_settings(tmp_path, copy_library(tmp_path, demo_library), mqtt_port=mosquitto.port)
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
    officer, case_id = closed_viable(app, face_photo("obama3.jpg").read_bytes())
    wall.offset = 3 * HOUR
    desk.audit.check_clock()
    assert faults(desk)[-1]["outcome"] == "clock_doubtful"
    officer = Desk(app, "officer")  # signed in on the doubted clock, before the restart
    config = write_settings(tmp_path / "appliance.toml", app)
    settings = desk.settings
    desk.close()  # the service stops (a power cut, an update) before central's time confirmed the clock
    wall.offset = 0.0

    capsys.readouterr()
    assert appliance_main(["retention", "purge", "--config", str(config)]) == 1
    assert "clock is not trusted" in capsys.readouterr().err

    again_app = create_app(settings, pipeline=pipeline, start_sync=True)
    again = again_app.extensions["desk"]
    try:
        assert again.clock_guard.doubt is not None  # still doubtful after the restart...
        assert again.cases.probe(case_id) is not None  # ...so the purge at start destroyed nothing
        # ...and a session from before it, whose age this process never saw, is ended rather than kept.
        officer.client.application = again_app
        assert officer.get("/").status_code == 302
        ended = [e for e in _events(again) if e.type == "logout"][-1]
        assert (ended.actor, ended.outcome, ended.details["reason"]) == ("officer", "session_ended", "clock_doubtful")
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


def test_a_clock_set_back_keeps_no_session_alive_past_its_idle_timeout(clock_desk):
    """Twenty quiet minutes pass (the idle timeout is fifteen) while the clock is set back an hour: by the wall
    clock the officer was last seen forty minutes in the future; the monotonic clock ends the session."""
    app, desk, wall = clock_desk
    officer = Desk(app, "officer")
    assert officer.get("/").status_code == 200
    assert wall.mono is not None
    wall.mono.offset += 20 * 60
    wall.offset += 20 * 60 - HOUR
    response = officer.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    ended = [e for e in _events(desk) if e.type == "logout"][-1]
    assert (ended.actor, ended.outcome, ended.details["reason"]) == ("officer", "session_ended", "idle_timeout")


def test_a_clock_jumped_forwards_keeps_the_desk_searching_on_its_estimate_and_holds_destruction(
        clock_desk, operation_library, publisher):  # noqa: F811 (the fixture, imported)
    """A clock three hours ahead makes Operation Tango's library (two hours left) look expired. The guard still
    knows the time (its reading before the jump plus the monotonic time since): by it the library has two hours
    left, so it is neither destroyed (that would lose it for good) nor refused, and the officer still searches."""
    app, desk, wall = clock_desk
    hold(desk, OPERATION, operation_library)
    authorise(desk, entry(), entry(OPERATION, OPERATION_NAME, kind="temporary", default=False,
                                   expires_at=datetime.now(UTC) + timedelta(hours=2)))
    wall.offset = 3 * HOUR
    desk.audit.check_clock()
    assert desk.clock_guard.doubt is not None
    assert desk.expiry.sweep() == []
    assert OPERATION in dict(desk.libraries.held())
    assert [e for e in _events(desk) if e.type == "library_destroyed"] == []
    assert desk.libraries.refusal_code(OPERATION) is None  # two hours left by the estimate
    assert OPERATION in [c.library_id for c in desk.libraries.choices()]
    assert Desk(app, "officer").submit().status_code == 302

    wall.offset = 0.0  # set right, and confirmed by central's time
    desk.audit.check_clock()
    _ack_now(desk, publisher)
    assert wait_for(lambda: desk.clock_guard.doubt is None, 10)
    assert desk.libraries.refusal_code(OPERATION) is None and desk.expiry.sweep() == []


def _lapse_and_set_back(desk, wall, by_s: float) -> None:
    """Let ``by_s`` pass on both clocks (no jump: the guard takes a trusted reading then), then set the wall
    clock back by the same amount: by the wall clock nothing has passed."""
    assert wall.mono is not None
    wall.offset += by_s
    wall.mono.offset += by_s
    desk.audit.check_clock()
    assert desk.clock_guard.doubt is None
    wall.offset -= by_s


def test_a_clock_set_back_revives_no_expired_temporary_library(
        clock_desk, operation_library):  # noqa: F811 (the fixture, imported)
    _app, desk, wall = clock_desk
    hold(desk, OPERATION, operation_library)
    authorise(desk, entry(), entry(OPERATION, OPERATION_NAME, kind="temporary", default=False,
                                   expires_at=datetime.now(UTC) + timedelta(hours=1)))
    _lapse_and_set_back(desk, wall, 2 * HOUR)  # expired an hour ago; by the wall clock an hour is left
    # No event since the jump: the very next decision is already taken on the estimate, not the wall clock.
    assert desk.libraries.refusal_code(OPERATION) == "expired"
    assert OPERATION not in [c.library_id for c in desk.libraries.choices()]
    desk.audit.check_clock()
    assert faults(desk)[-1]["details"]["reason"] == "jumped_backwards"
    assert desk.libraries.refusal_code(OPERATION) == "expired"
    assert desk.expiry.sweep() == []  # and its destruction waits for the clock, as any on a doubted clock
    assert OPERATION in dict(desk.libraries.held())
    held = [e for e in _events(desk) if e.type == "library_destroyed"]
    assert [(e.outcome, e.details["held_because"]) for e in held] == [("held", "clock_doubtful")]


def test_a_clock_set_back_revives_no_lapsed_authorisation_to_search(clock_desk):
    app, desk, wall = clock_desk
    today = desk.cases.authority.today()
    desk.accounts.set_authorisation("officer", SearchAuthorisation(
        trained_on=today - timedelta(days=30), authorised_until=today, business_area="Custody"))
    _lapse_and_set_back(desk, wall, 2 * DAY_S)  # lapsed yesterday; by the wall clock today is its last day
    response = Desk(app, "officer").submit()
    assert response.status_code in (403, 409), response.status_code
    assert "lapsed on" in response.get_data(as_text=True)
    assert faults(desk)[-1]["details"]["reason"] == "jumped_backwards"


def test_after_a_reboot_under_a_doubt_nothing_with_an_end_is_searched(clock_desk, pipeline, monkeypatch):
    """A new boot's clock since boot starts again, so the reading kept from before the doubt cannot be counted
    on: no estimate, and whatever has an end is refused, in plain words."""
    _app, desk, wall = clock_desk
    wall.offset = 3 * HOUR
    desk.audit.check_clock()
    settings = desk.settings
    desk.close()
    monkeypatch.setattr(clock_guard_module, "current_boot_id", lambda: "the-next-boot")
    again_app = create_app(settings, pipeline=pipeline, start_sync=True)
    again = again_app.extensions["desk"]
    try:
        assert again.clock_guard.doubt is not None and again.clock_guard.limits_now() is None
        assert again.libraries.refusal_code(again.libraries.primary_id) == "clock_doubtful"
        assert "clock is in doubt" in (again.libraries.refusal(again.libraries.primary_id) or "")
        response = Desk(again_app, "officer").submit()
        assert response.status_code in (403, 409) and "clock is in doubt" in response.get_data(as_text=True)
        refused = [e for e in _events(again) if e.type == "request_refused"][-1]
        assert (refused.outcome, refused.details["refusal"]) == ("not_authorised_user", "clock_doubtful")
    finally:
        again.close()


def test_a_service_restart_under_a_doubt_keeps_the_estimate_and_the_desk_searching(clock_desk, pipeline):
    """The service restarts (an update, a crash) while the clock is doubted, in the same boot: the last trusted
    reading was kept in the device database and the time since boot still counts from it, so the new process
    tests ends against the same estimate as the old one and the desk goes on serving."""
    _app, desk, wall = clock_desk
    wall.offset = 3 * HOUR
    desk.audit.check_clock()
    before = desk.clock_guard.limits_now()
    assert before is not None and before < wall() - HOUR  # the estimate, not the jumped clock
    settings = desk.settings
    desk.close()
    again_app = create_app(settings, pipeline=pipeline, start_sync=True)
    again = again_app.extensions["desk"]
    try:
        assert again.clock_guard.doubt is not None
        after = again.clock_guard.limits_now()
        assert after is not None and before <= after < before + 60 and after < wall() - HOUR
        assert again.libraries.refusal_code(again.libraries.primary_id) is None
        response = Desk(again_app, "officer").submit()
        assert response.status_code < 400, response.get_data(as_text=True)[:500]
        assert "clock is in doubt" not in response.get_data(as_text=True)
    finally:
        again.close()


def test_a_temporary_library_is_destroyed_within_moments_of_its_expiry(
        clock_desk, operation_library):  # noqa: F811 (the fixture, imported)
    _app, desk, _wall = clock_desk
    hold(desk, OPERATION, operation_library)
    authorise(desk, entry(), entry(OPERATION, OPERATION_NAME, kind="temporary", default=False,
                                   expires_at=datetime.now(UTC) + timedelta(seconds=2)))
    desk.expiry.reschedule()  # as applying a manifest does
    assert wait_for(lambda: OPERATION not in dict(desk.libraries.held()), 30), "not destroyed at its expiry"
    assert wait_for(lambda: any(e.type == "library_destroyed" for e in _events(desk)), 10)
    destroyed = [e for e in _events(desk) if e.type == "library_destroyed"][-1]
    # (its proof is another test's: this copy was opened from a folder outside the desk's store)
    assert (destroyed.details["library_id"], destroyed.details["reason"]) == (OPERATION, "expired")


def test_a_replayed_wipe_is_held_on_a_clock_set_back_and_refused_once_the_clock_is_trusted(clock_desk, publisher):
    """A wipe central signed three hours ago, replayed to a desk whose clock was set back three hours: on that
    clock it looks fresh. It is held instead, and refused as stale once central's time confirms the clock."""
    _app, desk, wall = clock_desk
    old = FleetCommand.sign(COMMAND_KEY, desk.settings.device_id, "wipe",
                            now=datetime.now(UTC) - timedelta(seconds=3 * HOUR))
    wall.offset = -3 * HOUR
    desk.audit.check_clock()
    assert desk.clock_guard.doubt is not None
    publisher(fleet_command_topic(desk.settings.device_id), old.to_bytes())
    assert wait_for(lambda: any(e.outcome == "fleet_command_held" for e in _events(desk)), 20), desk.wipe.refused
    assert not desk.wipe.pending and not desk.wipe.withdrawn.is_set()

    wall.offset = 0.0
    desk.audit.check_clock()
    _ack_now(desk, publisher)
    assert wait_for(lambda: any(e.outcome == "fleet_command_refused" for e in _events(desk)), 20)
    assert "stale or replayed" in desk.wipe.refused[-1]
    assert not desk.wipe.pending and not desk.wipe.withdrawn.is_set()


def test_a_wipe_held_on_a_doubted_clock_survives_a_restart_and_is_carried_out_once_the_clock_is_trusted(
        clock_desk, pipeline, publisher):
    """Central revokes a desk and signs a wipe while the desk's clock is in doubt: held, not judged. The service
    restarts (an update, a crash) before central's time confirms the clock. A revoked desk is kept off the broker
    by the CRL and would never be sent it again, so the hold must outlive the restart, and the wipe happen."""
    _app, desk, wall = clock_desk
    wall.offset = -3 * HOUR
    desk.audit.check_clock()
    fresh = FleetCommand.sign(COMMAND_KEY, desk.settings.device_id, "wipe", now=datetime.now(UTC))
    publisher(fleet_command_topic(desk.settings.device_id), fresh.to_bytes())
    assert wait_for(lambda: any(e.outcome == "fleet_command_held" for e in _events(desk)), 20), desk.wipe.refused
    settings = desk.settings
    desk.close()

    again_app = create_app(settings, pipeline=pipeline, start_sync=True)
    again = again_app.extensions["desk"]
    try:
        assert again.clock_guard.doubt is not None and not again.wipe.withdrawn.is_set()
        assert again.mqtt.wait_connected(20)
        wall.offset = 0.0
        again.audit.check_clock()
        _ack_now(again, publisher)
        assert wait_for(lambda: again.wipe.withdrawn.is_set(), 30), again.wipe.refused
        assert is_withdrawn(settings.data_dir)
    finally:
        again.close()


def test_a_desk_started_with_its_clock_ahead_is_doubted_from_centrals_ack_for_its_own_event(tmp_path):
    """At start only the log is known, and a clock ahead of it looks fine. Central signs an ack after the event
    it covers was logged, so an event logged three hours after the ack's signed time says the clock is ahead;
    a late ack only narrows that gap, so a right clock is never accused by one (the acks of the tests above,
    on a right clock, leave it trusted)."""
    db = DeviceDatabase(tmp_path / "device")
    try:
        outbox = Outbox(db)
        audit = AuditLog("desk-clock-02", outbox)
        audit.record("login", "officer", "ok")
        wall = Wall()
        wall.offset = 3 * HOUR  # the RTC three hours ahead when the desk starts
        guard = ClockGuard.from_log(outbox, wall=wall)
        assert guard.doubt is None  # nothing offline can tell
        audit.watch_clock(guard.check)
        audit.record("login", "officer", "ok")  # logged at the desk's (wrong) time
        # Central's ack for it, signed just after it was logged (however long it then waits at the broker).
        guard.observe_central(datetime.now(UTC), outbox.head_seq)
        assert guard.doubt is not None and "ahead" in guard.doubt
        audit.check_clock()
        told = [r.event for r in records(db) if isinstance(r, EventRecord) and r.event.type == "device_fault"]
        assert [(e.outcome, e.details["reason"]) for e in told] == [("clock_doubtful", "ahead_of_central")]
    finally:
        db.close()


def test_a_desk_started_with_its_clock_behind_a_document_central_signed_is_doubtful(tmp_path):
    """A desk with an empty log (or an old one) started five hours in the past: the library authorisation it
    holds was signed by central at a time the clock has not reached yet, so true time is at least that."""
    db = DeviceDatabase(tmp_path / "device")
    try:
        authorisation = AuthorisationStore(db)
        manifest = AuthorisationManifest(version=1, device_id="desk-clock-03", issued_at=datetime.now(UTC),
                                         libraries=[entry()])
        document = manifest.to_bytes()
        authorisation.apply(document, manifest, manifest_digest(document), time.time())
        wall = Wall()
        wall.offset = -5 * HOUR
        signed = newest_signed(authorisation, DeskConfigStore(db))
        guard = ClockGuard.from_log(Outbox(db), wall=wall, signed_at=signed)
        assert guard.doubt is not None and "before central signed a document" in guard.doubt
        assert ClockGuard.from_log(Outbox(db), signed_at=signed).doubt is None  # a right clock
        # A newer manifest applied on that clock (after TUF's expiry check, which read it) says so in the audit.
        outbox = Outbox(db)
        audit = AuditLog("desk-clock-03", outbox)
        audit.watch_clock(guard.check)
        newer = AuthorisationManifest(version=2, device_id="desk-clock-03", issued_at=datetime.now(UTC),
                                      libraries=[entry()])
        document = newer.to_bytes()
        updater = AuthorisationUpdater(authorisation, ClockNotedAudit(audit, lambda: guard.doubt), "desk-clock-03")
        updater.apply_verified(document, AuthorisationTargetInfo("desk-clock-03", 2, manifest_digest(document)),
                               "authorisation-2.json")
        applied = [r.event for r in records(db) if isinstance(r, EventRecord)][-1]
        assert applied.type == "authorisation_applied" and applied.details["clock_doubtful"] == guard.doubt
    finally:
        db.close()


def test_a_session_written_before_the_clock_went_back_is_ended_by_a_process_that_did_not_see_it(tmp_path):
    """Used at 10:00; the service stops; the clock is set back an hour (too little for a doubt at start: the log's
    newest event is older). By that clock the session was last used an hour in the future, and would outlive its
    idle timeout by an hour: a process with no reading of its own ends it and says why."""
    db = DeviceDatabase(tmp_path / "device")
    try:
        wall = Wall()
        first = SessionManager(SessionStore(db), idle_s=15 * 60, absolute_s=8 * HOUR, clock=wall)
        token = first.create({"username": "officer"})
        assert first.load(token) == {"username": "officer"}
        wall.offset = -HOUR
        ended: list[str] = []
        after_restart = SessionManager(SessionStore(db), idle_s=15 * 60, absolute_s=8 * HOUR, clock=wall,
                                       monotonic=Mono(), on_ended=lambda _data, why: ended.append(why))
        assert after_restart.load(token) is None and ended == [ENDED_CLOCK]
        assert SessionStore(db).get(token) is None
    finally:
        db.close()



def test_small_set_backs_that_add_up_past_the_tolerance_are_doubted_and_revive_nothing() -> None:
    """A clock set back a minute at a time: no single move passes the 120 s tolerance, the sum does. The guard
    doubts the clock once the sum passes it, and the time it tests ends against is the last reading before the
    steps began plus the time since, never the set-back clock."""
    wall, mono = Wall(), Mono()
    guard = ClockGuard(wall=wall, monotonic=mono)
    guard.check()
    notes = []
    for _ in range(3):
        wall.offset -= 60  # each step half the tolerance
        notes += guard.check()
        if notes:
            break
    assert wall.offset == -180 and [n["reason"] for n in notes] == ["stepped_backwards"]
    assert notes[0]["jump_s"] == pytest.approx(-180, abs=5) and guard.doubt is not None
    estimate = guard.limits_now()
    assert estimate is not None and estimate >= time.time()  # a set-back clock revives nothing
    assert wall() < time.time() - 170


def test_a_clock_moved_back_and_forth_in_small_steps_is_not_doubted() -> None:
    """Steps that cancel out (NTP nudging a clock either way) never add up to a doubt."""
    wall, mono = Wall(), Mono()
    guard = ClockGuard(wall=wall, monotonic=mono)
    for step in (-60, 60, -60, 60, -90, 90):
        wall.offset += step
        assert guard.check() == []
    assert guard.doubt is None
