"""The whole update path on a running desk: central publishes a signed library, retains its
announcement on a real Mosquitto, the desk hears it, fetches over HTTPS with its fleet certificate
through TUF, verifies, installs and swaps the new version in while it keeps serving, and audits the
installed version."""

from __future__ import annotations

import json
import time
from pathlib import Path

from appliance.runtime import open_desk
from appliance.settings import ApplianceSettings
from central.audit.store import AuditStore
from central.ingest.mqtt import AuditIngest
from central.publish.announcer import ANNOUNCEMENT_FILE, Announcer
from central.publish.describe import describe_full
from central.settings import CentralMqttSettings
from core.library_announce import LibraryAnnouncement
from library.records import ReferenceRecord
from library.snapshot import SnapshotWriter, new_key, write_key_file
from tests.desk_keys import provision_library_key
from tests.fleet_key import COMMAND_KEY, write_command_key


def build(pipeline, face_photo, path: Path, key: bytes, version: int, photos: list[tuple[str, str]]) -> Path:
    with SnapshotWriter.create(path, key, embedder_id=pipeline.embedder_id, dim=pipeline.dim, version=version) as w:
        for subject, name in photos:
            result = pipeline.process(face_photo(name).read_bytes())
            w.add(ReferenceRecord(subject_ref=subject, source=f"{subject}/{name}"), result.template, result.thumbnail)
    return path


def test_announced_library_is_installed_and_swapped_in(tmp_path, central, mosquitto, pipeline, face_photo):
    key = new_key()
    write_key_file(tmp_path / "lib.key", key)
    v1 = build(pipeline, face_photo, tmp_path / "v1.db", key, 1, [("DEMO-BIDEN", "biden.jpg")])
    v2 = build(pipeline, face_photo, tmp_path / "v2.db", key, 2,
               [("DEMO-BIDEN", "biden.jpg"), ("DEMO-OBAMA", "obama.jpg")])
    settings = ApplianceSettings.model_validate({
        "device_id": "desk-update-01", "data_dir": tmp_path / "device",
        "library": {"path": v1, "wrapped_key": provision_library_key(tmp_path / "device", "desk-update-01",
                                                                     tmp_path / "lib.key")},
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
        "web": {"secret_key": "test-secret-key-0123456789"},
        "fleet_command_public_key": write_command_key(tmp_path / "central-key")[1],
        "updates": {"central_url": central.url, "poll_interval_s": 0, **central.desk_settings,
                    "trusted_root": central.repo.metadata_dir / "1.root.json"},
    })
    desk = open_desk(settings, pipeline=pipeline)
    desk.start()
    store = AuditStore(tmp_path / "central.db")
    ingest = AuditIngest(CentralMqttSettings(host=mosquitto.host, port=mosquitto.port), store,
                         command_key=COMMAND_KEY, client_id="central-upd")
    ingest.start()
    try:
        assert desk.library.current.version == 1
        assert desk.mqtt.wait_connected(10) and ingest.wait_connected(10)

        info = describe_full(v2, key)
        central.repo.publish(v2, info)
        announcement = LibraryAnnouncement.now(info.library_version, info.name, info.kind, info.result_digest)
        (central.repo.repo_dir / ANNOUNCEMENT_FILE).write_bytes(announcement.to_bytes())
        assert Announcer(central.repo.repo_dir, central.repo.settings, ingest.publish_retained,
                         command_key=COMMAND_KEY).check_once()

        deadline = time.monotonic() + 30
        while desk.library.current.version != 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert desk.library.current.version == 2
        subjects = {c.record.subject_ref for c in desk.library.current.search(
            pipeline.process(face_photo("obama2.jpg").read_bytes()).template, k=2)}
        assert subjects == {"DEMO-OBAMA", "DEMO-BIDEN"}
        assert desk.library_store.current_version() == 2
        # This desk is not registered at central, so its events stay queued in its outbox to be read here.
        events = [json.loads(p.payload) for p in desk.outbox.pending(limit=1000)]
        updates = [e for e in events if e["type"] == "library_update"]
        assert updates and updates[-1]["details"]["library_version"] == 2
    finally:
        desk.close()
        ingest.stop()
        store.close()
