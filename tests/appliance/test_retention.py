"""The end of a viable match's retention period: its images are destroyed, its record stays.

Real desk app, real pipeline and library, real SQLCipher device database. The
desk's clock is injected (the case service's and the retention job's), so
"91 days later" is a number, not a wait. The proof that the images are gone is
test_deletion's: every page of device.db and every frame of its WAL decrypted
and searched for byte runs of the uploaded JPEG and of its face thumbnail,
found before the purge (control), not after.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from flask import Flask

from appliance.__main__ import main as appliance_main
from appliance.services.retention import DAY_S, RetentionError, RetentionService, day
from appliance.storage.cases import BIOMETRIC_TABLES
from appliance.storage.desk_config import DeskConfigStore
from appliance.storage.device_db import DeviceDatabase
from core.desk_config import DeskConfig, config_digest, hash_password
from core.events import AuditEvent
from library import cipher
from tests.appliance.desk_helpers import CONFIRM, FEATURES, PASSWORD, Desk, add_users, approved_case, fast_kdf
from tests.appliance.test_deletion import places_holding, runs

MATCH_REPORT = {"probe_quality": "Good, frontal, sharp.", "reference_quality": "Good studio photo.",
                "time_lapse": "About 3 years.", "lighting": "Even in both.", "other_factors": "None seen.",
                "age_judgement": "Adult in both; little change expected.",
                "rationale": "Ear shape and the scar above the left eyebrow agree."}


def unique_probe(face_photo) -> bytes:
    """obama3.jpg with faint noise over the whole picture: its JPEG bytes and its face thumbnail are its own
    (test_deletion's corner nudge leaves the face, so the thumbnail, the same for every probe)."""
    image = cv2.imread(str(face_photo("obama3.jpg"))).astype(np.int16)
    image += np.random.default_rng().integers(-3, 4, image.shape, dtype=np.int16)
    return cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 93])[1].tobytes()


class Clock:
    """The desk's time, standing still at the moment the test started until the test moves it by days."""

    def __init__(self) -> None:
        self.start = self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def days_from_now(self, days: float) -> None:
        self.now = self.start + days * DAY_S


@functools.cache
def central_admin_hash() -> str:
    return hash_password(PASSWORD, n=2**14)


def signed_config(version: int, days: int) -> DeskConfig:
    """Central's configuration, as the desk stores it once verified (its own admin; test users untouched)."""
    return DeskConfig.parse(json.dumps({
        "version": version, "issued_at": datetime.now(UTC).isoformat(),
        "accounts": [{"username": "central-admin", "role": "device_admin", "password_hash": central_admin_hash()}],
        "thresholds": {"top_k": 5}, "retention": {"viable_match_days": days}}).encode())


def apply_config(store: DeskConfigStore, version: int, days: int) -> None:
    config = signed_config(version, days)
    store.apply(config, config_digest(config.to_bytes()), time.time())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def desk_app(app: Flask, monkeypatch, clock: Clock) -> Flask:
    """The desk with its users, the case service on the test clock and a retention job on the same clock."""
    fast_kdf(monkeypatch)
    add_users(app)
    rfr = app.extensions["desk"]
    rfr.cases._clock = clock  # the desk's clock: what closed_at is stamped with
    rfr.retention = RetentionService(rfr.cases.store, rfr.desk_config, rfr.audit, clock=clock)
    return app


def searched(app: Flask, jpeg: bytes) -> tuple[Desk, str, list[int]]:
    desk, case_id = approved_case(app)
    assert desk.upload(case_id, jpeg).status_code == 200
    assert desk.post(f"/cases/{case_id}/search").status_code == 302
    assert desk.get(f"/cases/{case_id}/candidates").status_code == 200
    ranks = [c.rank for c in app.extensions["desk"].cases.candidates(case_id)]
    assert ranks, "the demo library should give candidates for obama3.jpg"
    return desk, case_id, ranks


def closed_viable(app: Flask, jpeg: bytes) -> tuple[Desk, str]:
    """A case closed with candidate 1 viable and a Match Report."""
    desk, case_id, _ = searched(app, jpeg)
    # One decision per person (their best image's rank): the best-scoring person viable, everyone else not.
    people = app.extensions["desk"].cases.people(case_id)
    decisions = {f"decision-{p.lead_rank}": "viable" if p.number == 1 else "not_viable" for p in people}
    assert desk.post(f"/cases/{case_id}/adjudicate", decisions).status_code == 302
    report = {"rank": "1", **MATCH_REPORT, **FEATURES, "checked_prefill": "yes"}
    assert desk.post(f"/cases/{case_id}/match-report", report).status_code == 302
    assert app.extensions["desk"].cases.get(case_id).state == "closed_viable"
    return desk, case_id


def closed_no_match(app: Flask, jpeg: bytes) -> tuple[Desk, str]:
    desk, case_id, ranks = searched(app, jpeg)
    assert desk.post(f"/cases/{case_id}/adjudicate",
                     {f"decision-{r}": "not_viable" for r in ranks} | CONFIRM).status_code == 302
    assert app.extensions["desk"].cases.get(case_id).state == "closed_no_match"
    return desk, case_id


def events(app: Flask, type_: str, case_id: str) -> list[AuditEvent]:
    found = [AuditEvent.from_bytes(p.payload) for p in app.extensions["desk"].outbox.pending(limit=1000)]
    return [e for e in found if e.type == type_ and e.details.get("case_id") == case_id]


def biometric_rows(app: Flask, case_id: str) -> dict[str, int]:
    conn = app.extensions["desk"].db.conn
    return {t: conn.execute(f"SELECT count(*) FROM {t} WHERE case_id = ?", (case_id,)).fetchone()[0]
            for t in BIOMETRIC_TABLES}


def test_viable_match_past_the_period_is_destroyed_everywhere_and_audited(desk_app, face_photo, clock, caplog,
                                                                           tmp_path):
    caplog.set_level(logging.DEBUG)
    since = time.time() - 1
    data_dir = tmp_path / "device"
    key = cipher.read_key_file(data_dir / "device.key")
    rfr = desk_app.extensions["desk"]
    service, retention = rfr.cases, rfr.retention
    apply_config(rfr.desk_config, 2, days=90)

    # Day 0: a viable match closes. Day 60: another viable match, and a case with no viable match.
    old_jpeg, new_jpeg = unique_probe(face_photo), unique_probe(face_photo)
    desk, old = closed_viable(desk_app, old_jpeg)
    old_thumbnail = service.probe(old).thumbnail
    old_closed_at = service.get(old).closed_at
    clock.days_from_now(60)
    _, new = closed_viable(desk_app, new_jpeg)
    new_probe = service.probe(new)
    _, no_match = closed_no_match(desk_app, unique_probe(face_photo))
    no_match_before = service.get(no_match).row
    old_needles = runs(old_jpeg, 48) + runs(old_thumbnail, 32)
    new_needles = runs(new_jpeg, 48) + runs(new_probe.thumbnail, 32)
    candidates = len(service.candidates(old))

    # Before the period ends: nothing to purge, and the page says when the images will go.
    assert retention.purge() == []
    page = desk.get(f"/cases/{old}").get_data(as_text=True)
    assert f"These images will be destroyed on {day(old_closed_at + 90 * DAY_S)}" in page
    # Control: the retained images are in the decrypted database, so the scanner can see them.
    rfr.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert "device.db (decrypted pages)" in places_holding(old_needles, data_dir, key, caplog.text, since)

    # Day 91: the first viable match is past 90 days; the second (31 days) is not.
    clock.days_from_now(91)
    purge_at = clock()
    purged = retention.purge()
    assert [p.case_id for p in purged] == [old]
    assert purged[0].destroyed == ["probe image", "probe face thumbnail", f"candidate list ({candidates} candidates)"]

    # Gone from every decrypted page of device.db and its WAL, the data folder, temp files and the log.
    assert places_holding(old_needles, data_dir, key, caplog.text, since) == []
    assert biometric_rows(desk_app, old) == {t: 0 for t in BIOMETRIC_TABLES}
    assert service.probe(old) is None and service.candidates(old) == []
    # The record stays: the case, its outcome and dates, the Match Report's text.
    case = service.get(old)
    assert (case.state, case.outcome, case.closed_at) == ("closed_viable", "viable_match", old_closed_at)
    assert case.biometrics_destroyed_at == purge_at
    report = service.match_report(old)
    assert report is not None and report["rank"] == 1 and report["fields"] == MATCH_REPORT
    # One audit event, by the system, naming the case and what was destroyed; the chain still verifies.
    [event] = [e for e in events(desk_app, "deletion", old) if e.details.get("why") == "retention period ended"]
    assert (event.actor, event.outcome) == ("system", "destroyed")
    assert event.details["destroyed"] == purged[0].destroyed
    assert event.details["viable_match_days"] == 90 and event.details["config_version"] == 2
    assert "Match Report text" in event.details["retained"]
    assert rfr.audit.verify().ok

    # The case page says plainly what happened and when; the images are not served, with the reason.
    page = desk.get(f"/cases/{old}").get_data(as_text=True)
    assert f"the retained images were destroyed on {day(purge_at)}" in page
    assert "These images will be destroyed" not in page
    image = desk.get(f"/cases/{old}/probe.jpg")
    assert image.status_code == 404
    assert "destroyed at the end of the retention period" in image.get_data(as_text=True)
    assert desk.get(f"/cases/{old}/candidates/1.jpg").status_code == 404
    summary = desk.get(f"/cases/{old}/summary").get_data(as_text=True)
    assert MATCH_REPORT["rationale"] in summary and f"destroyed on {day(purge_at)}" in summary
    assert Desk(desk_app, "auditor").get(f"/cases/{old}").status_code == 200

    # The viable match inside the period is untouched, in the database and on its page.
    assert service.probe(new) == new_probe and service.get(new).biometrics_destroyed_at is None
    assert "device.db (decrypted pages)" in places_holding(new_needles, data_dir, key, caplog.text, since)
    assert desk.get(f"/cases/{new}/probe.jpg").data == new_probe.thumbnail
    # The no-match case is unaffected: its record as it was, still only its closing deletion event.
    assert service.get(no_match).row == no_match_before
    assert [e.outcome for e in events(desk_app, "deletion", no_match)] == ["destroyed"]

    # Idempotent: a second run finds nothing and records nothing.
    deletions = len(events(desk_app, "deletion", old))
    assert retention.purge() == []
    assert len(events(desk_app, "deletion", old)) == deletions

    # Day 151: the second one's period has ended too.
    clock.days_from_now(151)
    assert [p.case_id for p in retention.purge()] == [new]
    assert places_holding(new_needles, data_dir, key, caplog.text, since) == []


def test_without_a_configuration_nothing_is_purged_and_the_desk_says_so(desk_app, face_photo, clock, caplog):
    rfr = desk_app.extensions["desk"]
    desk, case_id = closed_viable(desk_app, unique_probe(face_photo))
    clock.days_from_now(3650)
    with caplog.at_level(logging.WARNING, logger="appliance.services.retention"):
        assert rfr.retention.purge() == []
    assert "no retention period has been applied" in caplog.text
    assert rfr.cases.probe(case_id).image
    assert events(desk_app, "deletion", case_id)[-1].outcome == "partial_viable_match_retained"
    page = desk.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "kept with the Match Report" in page and "No retention period has been set on this desk" in page

    # A configuration arrives: the next run destroys what is already past its period.
    apply_config(rfr.desk_config, 1, days=30)
    assert [p.case_id for p in rfr.retention.purge()] == [case_id]
    assert rfr.cases.probe(case_id) is None


def write_settings(path: Path, app: Flask) -> Path:
    """The desk's settings as its TOML file (what ``--config`` names)."""
    s = app.extensions["desk"].settings
    path.write_text("\n".join([
        f'device_id = "{s.device_id}"', f'data_dir = "{s.data_dir}"',
        f'fleet_command_public_key = "{s.fleet_command_public_key}"', "",
        "[library]", f'path = "{s.library.path}"', f'wrapped_key = "{s.library.wrapped_key}"', "",
        "[mqtt]", f'host = "{s.mqtt.host}"', f"port = {s.mqtt.port}", "",
        "[web]", f'secret_key = "{s.web.secret_key}"', ""]))
    return path


def test_the_command_purges_once_and_says_what_it_did(desk_app, face_photo, clock, capsys, tmp_path):
    rfr = desk_app.extensions["desk"]
    settings = rfr.settings
    config = write_settings(tmp_path / "appliance.toml", desk_app)
    clock.days_from_now(-100)  # the case closed 100 days ago
    _, case_id = closed_viable(desk_app, unique_probe(face_photo))
    closed_at = rfr.cases.get(case_id).closed_at
    capsys.readouterr()

    # While the desk service runs it purges by itself: the command refuses and changes nothing.
    assert appliance_main(["retention", "purge", "--config", str(config)]) == 1
    assert "the desk service is running" in capsys.readouterr().err
    assert rfr.cases.probe(case_id) is not None

    rfr.close()  # the service stops
    assert appliance_main(["retention", "purge", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("nothing to purge: no retention period has been applied")

    db = DeviceDatabase(settings.data_dir)
    apply_config(DeskConfigStore(db), 3, days=90)
    db.close()
    assert appliance_main(["retention", "purge", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"purged case {case_id} (custody record CR-2025-00123, closed {day(closed_at)}, retention 90 days): "
        "destroyed probe image, probe face thumbnail, candidate list (")
    assert appliance_main(["retention", "purge", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "nothing to purge (retention period 90 days)\n"

    db = DeviceDatabase(settings.data_dir)
    try:
        payloads = [bytes(r[0]) for r in db.conn.execute("SELECT payload FROM audit_log ORDER BY seq")]
        purges = [e for e in map(AuditEvent.from_bytes, payloads)
                  if e.type == "deletion" and e.details.get("why") == "retention period ended"]
        assert [(e.details["case_id"], e.actor) for e in purges] == [(case_id, "system")]
        assert db.conn.execute("SELECT count(*) FROM case_probes WHERE case_id = ?", (case_id,)).fetchone()[0] == 0
        assert db.conn.execute("SELECT count(*) FROM match_reports WHERE case_id = ?", (case_id,)).fetchone()[0] == 1
    finally:
        db.close()


class BrokenAudit:
    """An audit log that fails as the event is written (a full disk, say)."""

    def record(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")


def test_a_purge_that_cannot_be_audited_destroys_nothing(desk_app, face_photo, clock):
    rfr = desk_app.extensions["desk"]
    _, case_id = closed_viable(desk_app, unique_probe(face_photo))
    apply_config(rfr.desk_config, 1, days=30)
    clock.days_from_now(31)
    broken = RetentionService(rfr.cases.store, rfr.desk_config, BrokenAudit(), clock=clock)  # type: ignore[arg-type]
    with pytest.raises(RetentionError, match=f"not: {case_id} .OSError: disk full"):
        broken.purge()
    assert rfr.cases.probe(case_id).image and rfr.cases.candidates(case_id)
    assert rfr.cases.get(case_id).biometrics_destroyed_at is None
    assert [p.case_id for p in rfr.retention.purge()] == [case_id]  # the next run does it, audited
    assert len([e for e in events(desk_app, "deletion", case_id) if e.actor == "system"]) == 1
