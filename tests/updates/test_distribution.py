"""Authenticated distribution, end to end: ``python -m central serve`` (gunicorn, HTTPS, the fleet CA asked of
every client) publishes a library; a desk enrolled with ``provisioning`` hears the announcement over a real
Mosquitto, fetches ``/tuf`` with its fleet certificate and installs it. Once the desk is revoked (the CRL
re-signed, central not restarted), the next update gets nothing and the desk keeps its version."""

from __future__ import annotations

import time
from pathlib import Path

from appliance.runtime import open_desk
from appliance.settings import ApplianceSettings
from central.publish.announcer import ANNOUNCEMENT_FILE
from central.publish.describe import describe_full
from central.publish.repository import TufRepository, init_repository
from core.library_announce import LibraryAnnouncement
from library.snapshot import new_key, write_key_file
from testbed.ports import free_port
from tests.desk_keys import provision_library_key
from tests.fleet_key import write_command_key
from tests.fleet_tls import FleetPki, start_served, stop_served, wait_https
from tests.updates.test_desk_update import build


def announce(repo: TufRepository, path: Path, key: bytes) -> None:
    """Publish ``path`` and leave the announcement for the running central's announcer to retain."""
    info = describe_full(path, key)
    repo.publish(path, info)
    announcement = LibraryAnnouncement.now(info.library_version, info.name, info.kind, info.result_digest)
    (repo.repo_dir / ANNOUNCEMENT_FILE).write_bytes(announcement.to_bytes())


def test_an_enrolled_desk_updates_over_mutual_tls_and_a_revoked_one_gets_nothing(tmp_path, mosquitto, pipeline,
                                                                                 face_photo):
    pki = FleetPki.create(tmp_path)
    desk_pki = pki.enrol(tmp_path / "device", "desk-dist-01")
    repo = init_repository(tmp_path / "repo", tmp_path / "offline-root-keys")
    port = free_port()
    config = pki.central_config(tmp_path, mosquitto, port, repo.repo_dir, "central-dist")
    key = new_key()
    write_key_file(tmp_path / "lib.key", key)
    v1 = build(pipeline, face_photo, tmp_path / "v1.db", key, 1, [("DEMO-BIDEN", "biden.jpg")])
    v2 = build(pipeline, face_photo, tmp_path / "v2.db", key, 2,
               [("DEMO-BIDEN", "biden.jpg"), ("DEMO-OBAMA", "obama.jpg")])
    v3 = build(pipeline, face_photo, tmp_path / "v3.db", key, 3,
               [("DEMO-BIDEN", "biden.jpg"), ("DEMO-OBAMA", "obama.jpg"), ("DEMO-OBAMA", "obama2.jpg")])
    log = tmp_path / "central.log"
    central = start_served("central", config, log)
    desk = None
    try:
        url = f"https://127.0.0.1:{port}"
        wait_https(url + "/healthz", pki.trust(), central, log)
        settings = ApplianceSettings.model_validate({
            "device_id": "desk-dist-01", "data_dir": tmp_path / "device",
            "fleet_command_public_key": write_command_key(tmp_path / "central-key")[1],
            "library": {"path": v1, "wrapped_key": provision_library_key(tmp_path / "device", "desk-dist-01",
                                                                         tmp_path / "lib.key")},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "web": {"secret_key": "test-secret-key-0123456789"},
            "updates": {"central_url": url, "poll_interval_s": 0, "trusted_root": repo.metadata_dir / "1.root.json",
                        **pki.update_settings(desk_pki)},
        })
        desk = open_desk(settings, pipeline=pipeline)
        desk.start()
        assert desk.library.current.version == 1 and desk.mqtt.wait_connected(10)

        announce(repo, v2, key)
        deadline = time.monotonic() + 60
        while desk.library.current.version != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert desk.library.current.version == 2, log.read_text()

        pki.revoke("desk-dist-01")
        announce(repo, v3, key)
        result = desk.updater.check_now()
        assert (result.outcome, result.installed_version) == ("unavailable", 2), result
        assert "HTTP 403" in result.message
        assert desk.library.current.version == 2 and desk.library_store.current_version() == 2
        assert "desk-dist-01 is revoked" in log.read_text()
    finally:
        if desk is not None:
            desk.close()
        assert stop_served(central) == 0, log.read_text()
