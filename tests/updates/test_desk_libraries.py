"""A desk holding several governed libraries (issue #18): central's real TUF repository over HTTPS, the real
desk (``open_desk``: SQLCipher device database, real face pipeline), libraries as SQLCipher snapshots.

Each test checks what custody staff, an auditor or central's fleet page could observe: which libraries the
form offers, the plain-words refusal, the ``authorisation_*`` and ``library_destroyed`` audit events, the
files left on disk (decrypted page by page) and the heartbeat.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from securesystemslib.signer import CryptoSigner

from appliance.runtime import Desk, open_desk
from appliance.services.library import LibraryRefusedError
from appliance.services.selftest import check_library
from appliance.settings import ApplianceSettings
from appliance.storage.library_keys import open_library_keys
from central.publish.describe import describe_full
from central.publish.keys import publish_keys
from core.events import AuditEvent
from core.fleet import Heartbeat
from core.keywrap import KeysDocument
from core.library_authorisation import AuthorisationTargetInfo, manifest_digest
from core.topics import health_topic
from devicekeys.wrapping import public_path, read_public_key
from library.records import ReferenceRecord
from library.snapshot import SnapshotWriter, new_key, write_key_file
from library.store import LibraryStore
from tests.appliance.sqlcipher_scan import database_plaintext, wal_plaintext
from tests.desk_authorisation import entry, manifest
from tests.desk_keys import provision_library_key
from tests.fleet_key import write_command_key
from tests.updates.conftest import Central

DEVICE = "desk-test-01"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    """The desk's clock, moved by the test (a desk offline at the moment of expiry still sees time pass)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def vector(library_id: str, i: int, dim: int) -> np.ndarray:
    v = np.random.default_rng(abs(hash((library_id, i))) % 2**32).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def thumbnail(library_id: str, i: int) -> bytes:
    return b"\xff\xd8" + f"THUMB-{library_id}-{i:03d}-".encode() * 8 + os.urandom(64) + b"\xff\xd9"


def build(path: Path, key: bytes, library_id: str, pipeline, version: int = 1, n: int = 12) -> Path:
    with SnapshotWriter.create(path, key, embedder_id=pipeline.embedder_id, dim=pipeline.dim, version=version) as w:
        for i in range(n):
            w.add(ReferenceRecord(subject_ref=f"{library_id.upper()}-{i:03d}", source=f"{library_id}/{i}.jpg"),
                  vector(library_id, i, pipeline.dim), thumbnail(library_id, i))
    return path


class Fleet:
    """Central's side: libraries and manifests published for this one desk."""

    def __init__(self, central: Central, folder: Path, pipeline, settings: ApplianceSettings) -> None:
        self.central, self.folder, self.pipeline, self.settings = central, folder, pipeline, settings
        self.keys: dict[str, bytes] = {}
        self.files: dict[str, Path] = {}

    def library(self, library_id: str, version: int = 1) -> str:
        key = self.keys.setdefault(library_id, new_key())
        path = build(self.folder / f"{library_id}-{version}.db", key, library_id, self.pipeline, version)
        self.files[library_id] = path
        info = dataclasses.replace(describe_full(path, key), library_id=library_id)
        desk_public = read_public_key(public_path(self.settings.wrapping_key_path))
        publish_keys(self.central.repo, KeysDocument.build(key, {DEVICE: desk_public}, library_id))
        self.central.repo.publish(path, info)
        return info.name

    def manifest(self, document: bytes, info: AuthorisationTargetInfo | None = None) -> str:
        info = info or AuthorisationTargetInfo.of(document)
        path = self.folder / f"manifest-{info.manifest_version}-{len(list(self.folder.iterdir()))}.json"
        path.write_bytes(document)
        self.central.repo.add_target(path, info.name, info.to_dict())
        return info.name


def desk_settings(tmp_path: Path, central: Central, pipeline, mqtt_port: int = 1) -> ApplianceSettings:
    key = new_key()
    write_key_file(tmp_path / "national.key", key)
    shipped = build(tmp_path / "national-1.db", key, "national", pipeline)
    data_dir = tmp_path / "device"
    (tmp_path / "1.root.json").write_bytes(central.repo.root_bytes)
    return ApplianceSettings.model_validate({
        "device_id": DEVICE, "data_dir": data_dir,
        "library": {"path": shipped, "wrapped_key": provision_library_key(data_dir, DEVICE, tmp_path / "national.key")},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
        "web": {"secret_key": "test-secret-key-0123456789"},
        "health": {"interval_s": 0.2},
        "fleet_command_public_key": write_command_key(tmp_path / "central-key")[1],
        "updates": {"central_url": central.url, "poll_interval_s": 0, "trusted_root": tmp_path / "1.root.json",
                    **central.desk_settings},
    })


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(tmp_path, central, pipeline) -> ApplianceSettings:
    return desk_settings(tmp_path, central, pipeline)


@pytest.fixture
def rfr_team(tmp_path, central, pipeline, settings) -> Fleet:
    folder = tmp_path / "central-builds"
    folder.mkdir()
    return Fleet(central, folder, pipeline, settings)


@pytest.fixture
def desk(settings, pipeline, clock) -> Iterator[Desk]:
    d = open_desk(settings, pipeline=pipeline, clock=clock)
    yield d
    d.close()


def events(desk: Desk, type_: str) -> list[AuditEvent]:
    found = [AuditEvent.from_bytes(p.payload) for p in desk.outbox.pending(limit=5000)]
    return [e for e in found if e.type == type_]


def temporary(library_id: str, expires_at: datetime, **over) -> dict:
    return entry(library_id, kind="temporary", default=False, expires_at=expires_at,
                 authorised_on=(T0 - timedelta(days=2)).date().isoformat(), **over)


def authorised(library_id: str, **over) -> dict:
    return entry(library_id, authorised_on=(T0 - timedelta(days=30)).date().isoformat(),
                 review_due=(T0 + timedelta(days=180)).date(), **over)


def finds(snapshot, library_id: str, i: int, dim: int) -> bool:
    return snapshot.search(vector(library_id, i, dim), k=1)[0].record.subject_ref == f"{library_id.upper()}-{i:03d}"


# --- which libraries are searched -----------------------------------------------------------------


def test_the_desk_serves_its_authorised_libraries_and_refuses_expired_suspended_overdue_and_unlisted_ones(
        desk, rfr_team, clock, pipeline):
    # Before any manifest arrives nothing may be searched, and staff are told why and whom to ask.
    assert desk.libraries.choices() == []
    assert "not yet received its library authorisation" in desk.libraries.refusal("national")
    for library_id in ("op-kestrel", "suspended-lib", "overdue-lib", "unlisted-lib"):
        rfr_team.library(library_id)
    rfr_team.manifest(manifest(DEVICE, 1, [
        authorised("national"),
        temporary("op-kestrel", T0 + timedelta(hours=2), name="Operation Kestrel"),
        authorised("suspended-lib", status="suspended", default=False),
        entry("overdue-lib", authorised_on="2025-01-01", review_due=(T0 - timedelta(days=1)).date(), default=False)]))

    desk.updater.check_now()

    assert desk.authorisation.applied_version() == 1
    applied = events(desk, "authorisation_applied")[-1]
    assert applied.details["manifest_version"] == 1 and applied.details["suspended"] == ["suspended-lib"]
    # Listed libraries are fetched (even a suspended one, so it is ready when reinstated); an unlisted one never.
    held = dict(desk.libraries.held())
    assert held == {"national": 1, "op-kestrel": 1, "suspended-lib": 1, "overdue-lib": 1}
    assert not (desk.settings.library_store_dir / "unlisted-lib").exists()
    choices = desk.libraries.choices()
    assert [(c.library_id, c.name, c.kind, c.default) for c in choices] == [
        ("national", "National custody images", "substantive", True),
        ("op-kestrel", "Operation Kestrel", "temporary", False)]
    assert choices[1].expires_at == T0 + timedelta(hours=2)
    assert "has been suspended by the RFR team" in desk.libraries.refusal("suspended-lib")
    assert "was due for review by 1 March 2026" in desk.libraries.refusal("overdue-lib")
    assert "is not authorised for this desk" in desk.libraries.refusal("unlisted-lib")
    for library_id, code in (("suspended-lib", "suspended"), ("overdue-lib", "review_overdue"),
                             ("unlisted-lib", "not_listed")):
        with pytest.raises(LibraryRefusedError) as refused:
            desk.libraries.current(library_id)
        assert refused.value.refusal == code and "Ask the RFR team" in str(refused.value)
    assert finds(desk.libraries.current("op-kestrel"), "op-kestrel", 4, pipeline.dim)

    clock.now = T0 + timedelta(hours=2, seconds=1)  # the temporary library's authorisation ends

    with pytest.raises(LibraryRefusedError) as refused:
        desk.libraries.current("op-kestrel")
    assert refused.value.refusal == "expired"
    assert "authorisation ended on 2 March 2026" in str(refused.value)
    assert [c.library_id for c in desk.libraries.choices()] == ["national"]
    assert finds(desk.libraries.current("national"), "national", 3, pipeline.dim)  # the others are still served


# --- manifests the desk refuses -------------------------------------------------------------------


def test_a_manifest_signed_by_the_wrong_key_is_refused(desk, rfr_team, central):
    central.repo._signers["targets"] = CryptoSigner.generate_ed25519()  # an attacker's key
    rfr_team.manifest(manifest(DEVICE, 1, [authorised("national")]))

    desk.updater.check_now()

    result = desk.updater.authorisation.last_result
    assert (result.outcome, result.reason) == ("refused", "bad_signature")
    refused = events(desk, "authorisation_refused")
    assert refused and refused[-1].details["reason"] == "bad_signature"
    assert desk.authorisation.applied() is None and desk.libraries.choices() == []


def test_an_older_manifest_is_a_rollback_and_refused(desk, rfr_team, central):
    rfr_team.library("op-kestrel")
    rfr_team.manifest(manifest(DEVICE, 1, [authorised("national"), temporary("op-kestrel", T0 + timedelta(days=5))]))
    newest = rfr_team.manifest(manifest(DEVICE, 2, [authorised("national"),
                                                 temporary("op-kestrel", T0 + timedelta(days=5), status="suspended")]))
    desk.updater.check_now()
    assert desk.authorisation.applied_version() == 2
    assert desk.libraries.refusal_code("op-kestrel") == "suspended"

    central.repo.remove_target(newest)  # validly re-signed, offers v1 only: it would re-authorise op-kestrel
    desk.updater.check_now()

    result = desk.updater.authorisation.last_result
    assert (result.outcome, result.reason) == ("refused", "rollback")
    assert "older than the applied version 2" in result.message
    assert events(desk, "authorisation_refused")[-1].details["reason"] == "rollback"
    assert desk.authorisation.applied_version() == 2
    assert desk.libraries.refusal_code("op-kestrel") == "suspended"


def test_a_manifest_for_another_desk_is_refused_and_other_desks_manifests_are_ignored(desk, rfr_team):
    rfr_team.manifest(manifest("desk-other", 1, [authorised("national")]))  # another desk's, rightly named: not ours
    desk.updater.check_now()
    assert desk.updater.authorisation.last_result.outcome == "up_to_date"
    assert events(desk, "authorisation_refused") == []

    other = manifest("desk-other", 3, [authorised("national")])  # signed under this desk's name
    rfr_team.manifest(other, AuthorisationTargetInfo(DEVICE, 3, manifest_digest(other)))
    desk.updater.check_now()

    result = desk.updater.authorisation.last_result
    assert (result.outcome, result.reason) == ("refused", "not_for_this_desk")
    assert "library authorisation of desk 'desk-other'" in result.message
    assert desk.authorisation.applied() is None and desk.libraries.choices() == []


# --- expiry and retirement ------------------------------------------------------------------------


def ciphertext_slices(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return [data[p * 4096 + 200:p * 4096 + 264] for p in range(1, len(data) // 4096)]


def test_an_expired_temporary_library_is_destroyed_on_an_offline_desk_with_proof(desk, rfr_team, central, clock,
                                                                                 settings, pipeline):
    rfr_team.library("op-kestrel")
    rfr_team.manifest(manifest(DEVICE, 1, [authorised("national"), temporary("op-kestrel", T0 + timedelta(hours=1))]))
    desk.updater.check_now()
    folder = settings.library_store_dir / "op-kestrel"
    installed = next((folder / "versions").glob("*.db"))
    secret = [rfr_team.keys["op-kestrel"], *[thumbnail_marker(desk, "op-kestrel", i) for i in range(3)]]
    cipher = ciphertext_slices(installed)
    assert desk.health.build().libraries == (("national", 1), ("op-kestrel", 1))

    central.server.shutdown()  # the desk is offline when the library expires
    clock.now = T0 + timedelta(hours=1, minutes=5)
    assert desk.updater.check_now().outcome == "unavailable"
    destroyed = desk.expiry.sweep()  # the hourly sweep, on the desk's own clock and the manifest it holds

    assert [(d.library_id, d.reason, d.kind, d.version) for d in destroyed] == [
        ("op-kestrel", "expired", "temporary", 1)]
    event = events(desk, "library_destroyed")[-1]
    assert event.outcome == "destroyed"
    proof = event.details["proof"]
    assert (event.details["library_id"], event.details["reason"], event.details["kind"]) == (
        "op-kestrel", "expired", "temporary")
    assert proof["scan"]["found"] == 0 and proof["scan"]["pages"] > 0 and proof["scan"]["databases"] >= 2
    assert proof["left_on_disk"] == [] and len(proof["keys_destroyed"]) == 1
    assert any(f["name"].startswith("library/op-kestrel/versions/") for f in proof["files"])
    # What the test sees for itself: no folder, no key, and nothing of it in any file, decrypted or not.
    assert not folder.exists() and not (settings.data_dir / "library-keys" / "op-kestrel").exists()
    device_key = desk.db.page_key()
    with desk.db.lock:
        desk.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    plain = database_plaintext(desk.db.path, device_key) + wal_plaintext(Path(f"{desk.db.path}-wal"), device_key)
    assert not any(m in plain for m in secret)
    for path in settings.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(m in data for m in secret + cipher), path
    with pytest.raises(LibraryRefusedError):
        desk.libraries.current("op-kestrel")
    assert finds(desk.libraries.current("national"), "national", 1, pipeline.dim)
    assert desk.health.build().libraries == (("national", 1),)
    assert desk.expiry.sweep() == []  # once


def thumbnail_marker(desk: Desk, library_id: str, record_id: int) -> bytes:
    thumb = desk.libraries.snapshot(library_id).thumbnail(record_id + 1)
    return thumb[10:42]


def test_a_retired_library_is_destroyed_when_the_manifest_arrives_and_not_installed_again(desk, rfr_team, settings,
                                                                                        pipeline, clock):
    rfr_team.library("op-heron")
    rfr_team.manifest(manifest(DEVICE, 1, [authorised("national"), temporary("op-heron", T0 + timedelta(days=30))]))
    desk.updater.check_now()
    assert dict(desk.libraries.held())["op-heron"] == 1
    rfr_team.manifest(manifest(DEVICE, 2, [authorised("national")], retired=["op-heron"]))

    desk.updater.check_now()  # applies v2, whose sweep destroys op-heron at once

    event = events(desk, "library_destroyed")[-1]
    assert (event.details["library_id"], event.details["reason"], event.outcome) == ("op-heron", "retired",
                                                                                   "destroyed")
    assert dict(desk.libraries.held()) == {"national": 1}
    desk.updater.check_now()  # still published at central, but not listed: never fetched again
    assert dict(desk.libraries.held()) == {"national": 1}
    assert not (settings.library_store_dir / "op-heron").exists()


# --- the heartbeat over the real broker -----------------------------------------------------------


def test_the_heartbeat_lists_the_libraries_held(tmp_path, central, pipeline, mosquitto, clock):
    settings = desk_settings(tmp_path, central, pipeline, mqtt_port=mosquitto.port)
    fleet_ = Fleet(central, tmp_path / "builds", pipeline, settings)
    fleet_.folder.mkdir()
    fleet_.library("op-kestrel")
    fleet_.manifest(manifest(DEVICE, 1, [authorised("national"), temporary("op-kestrel", T0 + timedelta(days=1))]))
    beats: list[Heartbeat] = []
    got = threading.Event()
    client = Client(CallbackAPIVersion.VERSION2, client_id="test-fleet-page", protocol=MQTTProtocolVersion.MQTTv5)

    def on_message(_c, _u, message) -> None:
        beats.append(Heartbeat.from_bytes(message.payload))
        if beats[-1].libraries == (("national", 1), ("op-kestrel", 1)):
            got.set()

    client.on_message = on_message
    client.connect(mosquitto.host, mosquitto.port)
    client.subscribe(health_topic(DEVICE), qos=1)
    client.loop_start()
    desk = open_desk(settings, pipeline=pipeline, clock=clock)
    try:
        desk.updater.check_now()
        desk.start()
        assert got.wait(20), beats[-3:]
    finally:
        desk.close()
        client.loop_stop()
        client.disconnect()


# --- restarts ---------------------------------------------------------------------------------------

_KILLED_DESK = """
import os, sys
from datetime import datetime, UTC
from appliance.runtime import open_desk
from appliance.settings import ApplianceSettings
from appliance.storage.library_keys import open_library_keys
settings = ApplianceSettings.model_validate_json(open(sys.argv[1]).read())
desk = open_desk(settings, clock=lambda: datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
desk.updater.check_now()
print(sorted(desk.libraries.held()), flush=True)
os.kill(os.getpid(), 9)
"""


def test_a_desk_killed_after_receiving_a_library_keeps_its_set_when_restarted(settings, rfr_team, pipeline, clock,
                                                                               tmp_path):
    rfr_team.library("op-kestrel")
    rfr_team.manifest(manifest(DEVICE, 1, [authorised("national"), temporary("op-kestrel", T0 + timedelta(days=1))]))
    config = tmp_path / "settings.json"
    config.write_text(settings.model_dump_json())
    done = subprocess.run([sys.executable, "-c", _KILLED_DESK, str(config)], capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == -9, done.stderr[-2000:]
    assert "('op-kestrel', 1)" in done.stdout

    desk = open_desk(settings, pipeline=pipeline, clock=clock)
    try:
        assert dict(desk.libraries.held()) == {"national": 1, "op-kestrel": 1}
        assert [c.library_id for c in desk.libraries.choices()] == ["national", "op-kestrel"]
        assert finds(desk.libraries.current("op-kestrel"), "op-kestrel", 7, pipeline.dim)
    finally:
        desk.close()


def test_a_single_library_desk_keeps_its_library_when_it_moves_to_one_folder_per_library(settings, pipeline,
                                                                                        clock):
    old = LibraryStore(settings.library_store_dir)  # the layout before several libraries: versions/ and current
    keys = open_library_keys(settings, None)
    old.install_full(settings.library.path, keys.require(keys.provisioned), key_id=keys.provisioned)
    pointer = json.loads((settings.library_store_dir / "current").read_text())

    desk = open_desk(settings, pipeline=pipeline, clock=clock)
    try:
        assert dict(desk.libraries.held()) == {"national": 1}
        moved = settings.library_store_dir / "national"
        assert json.loads((moved / "current").read_text()) == pointer
        assert not (settings.library_store_dir / "current").exists()
        assert finds(desk.library.current, "national", 2, pipeline.dim)
    finally:
        desk.close()



def test_a_retired_provisioned_library_is_destroyed_with_its_shipped_files_and_the_desk_restarts_without_it(
        settings, rfr_team, pipeline, clock):
    rfr_team.library("regional")
    desk = open_desk(settings, pipeline=pipeline, clock=clock)
    try:
        rfr_team.manifest(manifest(DEVICE, 1, [authorised("national"), authorised("regional", default=False)]))
        desk.updater.check_now()
        rfr_team.manifest(manifest(DEVICE, 2, [authorised("regional")], retired=["national"]))
        desk.updater.check_now()
        event = events(desk, "library_destroyed")[-1]
        assert (event.details["library_id"], event.details["reason"], event.outcome) == ("national", "retired",
                                                                                       "destroyed")
        assert not settings.library.path.exists() and not settings.library.wrapped_key.exists()
        assert desk.libraries.refusal_code("national") == "not_listed"
    finally:
        desk.close()

    desk = open_desk(settings, pipeline=pipeline, clock=clock)  # the shipped files are gone: it starts all the same
    try:
        assert dict(desk.libraries.held()) == {"regional": 1}
        assert desk.health.build().libraries == (("regional", 1),)
        assert finds(desk.libraries.current("regional"), "regional", 5, pipeline.dim)
        assert len(events(desk, "library_destroyed")) == 1, events(desk, "library_destroyed")  # once, not at start
    finally:
        desk.close()
    checked, snapshot = check_library(settings, pipeline.embedder_id)  # the update agent's health check still passes
    assert checked.ok, checked.detail
    assert snapshot is not None and snapshot.count == 12
    snapshot.close()


_KILLED_MID_DESTRUCTION = """
import os, sys
from datetime import datetime, UTC
import appliance.services.library_expiry as expiry
from appliance.runtime import open_desk
from appliance.settings import ApplianceSettings
real = expiry.shred_file
def dying(path, base):
    if str(path).endswith(".wrapped"):  # the library's files are gone, its keys not yet
        os.kill(os.getpid(), 9)
    return real(path, base)
expiry.shred_file = dying
settings = ApplianceSettings.model_validate_json(open(sys.argv[1]).read())
desk = open_desk(settings, clock=lambda: datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
desk.updater.check_now()
"""


def test_a_destruction_cut_by_a_kill_is_finished_at_the_next_start(settings, rfr_team, pipeline, clock, tmp_path):
    rfr_team.library("op-kestrel")
    rfr_team.manifest(manifest(DEVICE, 1, [authorised("national"), temporary("op-kestrel", T0 + timedelta(days=1))]))
    desk = open_desk(settings, pipeline=pipeline, clock=clock)
    desk.updater.check_now()
    desk.close()
    keys_folder = settings.data_dir / "library-keys" / "op-kestrel"
    assert list(keys_folder.glob("*.wrapped"))
    rfr_team.manifest(manifest(DEVICE, 2, [authorised("national")], retired=["op-kestrel"]))
    config = tmp_path / "settings.json"
    config.write_text(settings.model_dump_json())

    done = subprocess.run([sys.executable, "-c", _KILLED_MID_DESTRUCTION, str(config)], capture_output=True,
                          text=True, timeout=600, cwd=Path(__file__).resolve().parents[2])

    assert done.returncode == -9, done.stderr[-2000:]
    assert not (settings.library_store_dir / "op-kestrel").exists() and list(keys_folder.glob("*.wrapped"))
    desk = open_desk(settings, pipeline=pipeline, clock=clock)  # the sweep at start finishes the destruction
    try:
        event = events(desk, "library_destroyed")[-1]
        assert (event.details["library_id"], event.details["reason"], event.outcome) == ("op-kestrel", "retired",
                                                                                       "destroyed")
        assert len(event.details["proof"]["keys_destroyed"]) == 1 and event.details["proof"]["scan"]["found"] == 0
        assert not keys_folder.exists()
        assert dict(desk.libraries.held()) == {"national": 1}
        assert desk.authorisation.pending_destructions() == []
    finally:
        desk.close()
