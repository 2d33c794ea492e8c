"""``python -m appliance selftest``: the update agent's health check, against a real pipeline, library and broker.

A healthy desk passes every check and keeps its data byte for byte; a wrong expected subject, a missing
library and a broker that is down each fail with a line that says which and why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.runtime import open_desk
from appliance.services.selftest import CheckResult, run_selftest
from appliance.settings import ApplianceSettings
from appliance.storage.device_db import DB_NAME
from provisioning.ca import CaLayout, init_ca
from provisioning.ledger import Ledger
from testbed.ports import free_port
from tests.appliance.conftest import appliance_settings
from tests.provisioning.desks import copy_library
from tests.provisioning.fleet import TlsBroker, enrol

ROOT = Path(__file__).resolve().parents[2]


def write_config(path: Path, settings: ApplianceSettings) -> Path:
    """The settings as the TOML file a desk has in /etc/custody-rfr/appliance.toml."""
    lines = [f'device_id = "{settings.device_id}"', f'data_dir = "{settings.data_dir}"',
             f'fleet_command_public_key = "{settings.fleet_command_public_key}"', "",
             "[library]", f'path = "{settings.library.path}"', f'wrapped_key = "{settings.library.wrapped_key}"', "",
             "[mqtt]", f'host = "{settings.mqtt.host}"', f"port = {settings.mqtt.port}", "",
             "[web]", f'secret_key = "{settings.web.secret_key}"', ""]
    path.write_text("\n".join(lines))
    return path


def selftest_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", "selftest", "--config", str(config), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by relative path, with the sha256 of its bytes (new or removed files show)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def started_once(tmp_path: Path, demo_library, pipeline, **over: object) -> ApplianceSettings:
    """A desk that has run once (device database created, library installed into its store) and stopped."""
    settings = appliance_settings(tmp_path, copy_library(tmp_path, demo_library), **over)
    open_desk(settings, pipeline=pipeline).close()
    return settings


def run(settings: ApplianceSettings, pipeline, **kwargs: object) -> dict[str, CheckResult]:
    results = run_selftest(settings, load_pipeline=lambda: pipeline, report=lambda r: None,
                           mqtt_timeout_s=5.0, **kwargs)  # type: ignore[arg-type]
    return {r.name: r for r in results}


@pytest.mark.models
def test_healthy_desk_passes_and_its_database_and_library_are_unchanged(tmp_path, demo_library, pipeline,
                                                                       face_photo, mosquitto):
    settings = started_once(tmp_path, demo_library, pipeline, mqtt={"host": mosquitto.host, "port": mosquitto.port})
    config = write_config(tmp_path / "appliance.toml", settings)
    before = tree_digest(settings.data_dir)
    assert DB_NAME in before and any(name.startswith("library/national/versions/") for name in before)

    done = selftest_cli(config, "--probe", str(face_photo("obama3.jpg")), "--expect", "DEMO-OBAMA")

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["settings", "service", "models", "library", "search", "mqtt",
                                                      "selftest"]
    assert all(": ok (" in line for line in lines), lines
    assert "DEMO-OBAMA at rank 1" in done.stdout
    assert f"connected as {settings.device_id}-selftest (clean session)" in done.stdout
    assert tree_digest(settings.data_dir) == before


@pytest.mark.models
def test_without_a_probe_a_stored_template_finds_itself(tmp_path, demo_library, pipeline, mosquitto):
    settings = started_once(tmp_path, demo_library, pipeline, mqtt={"host": mosquitto.host, "port": mosquitto.port})
    results = run(settings, pipeline)
    assert all(r.ok for r in results.values()), results
    assert "self-consistency (no probe given): record 1 of DEMO-OBAMA at rank 1" in results["search"].detail


@pytest.mark.models
def test_running_desk_keeps_its_broker_session(tmp_path, demo_library, pipeline, mosquitto):
    settings = appliance_settings(tmp_path, copy_library(tmp_path, demo_library), mqtt_port=mosquitto.port)
    desk = open_desk(settings, pipeline=pipeline)
    desk.start()
    publisher = desk.mqtt
    try:
        assert publisher.wait_connected(10)
        results = run(settings, pipeline)
        assert results["mqtt"].ok, results["mqtt"]
        assert publisher.connected and publisher.sessions == 1  # not kicked off, not reconnected
    finally:
        desk.close()


@pytest.mark.models
def test_wrong_expected_subject_fails_the_search(tmp_path, demo_library, pipeline, face_photo, mosquitto):
    settings = started_once(tmp_path, demo_library, pipeline, mqtt={"host": mosquitto.host, "port": mosquitto.port})
    results = run(settings, pipeline, probe=face_photo("obama3.jpg"), expect="DEMO-BIDEN")
    search = results["search"]
    assert not search.ok
    assert search.line().startswith("search: FAILED: probe obama3.jpg: expected DEMO-BIDEN at rank 1, got DEMO-OBAMA")
    assert "DEMO-BIDEN is at rank" in search.detail
    assert results["models"].ok and results["library"].ok and results["mqtt"].ok


@pytest.mark.models
def test_missing_library_fails_clearly_and_search_does_not_run(tmp_path, demo_library, pipeline, mosquitto):
    shipped = copy_library(tmp_path, demo_library)
    shipped[0].unlink()  # never installed, and the provisioned file is gone
    settings = appliance_settings(tmp_path, shipped, mqtt_port=mosquitto.port, authorised=False)
    config = write_config(tmp_path / "appliance.toml", settings)

    done = selftest_cli(config)

    assert done.returncode == 1
    assert f"library: FAILED: The library file {shipped[0]} does not exist." in done.stdout.splitlines()
    assert "search: FAILED: not run: the library did not open" in done.stdout
    assert "selftest: FAILED: library, search" in done.stdout
    # The update agent quotes the last line of stderr when it refuses a version: it names the failure.
    assert done.stderr.splitlines()[-1].startswith(f"selftest FAILED: library: The library file {shipped[0]} does")
    assert not (settings.data_dir / DB_NAME).exists()  # the selftest created no device database


@pytest.mark.models
def test_installed_version_missing_from_the_store_fails(tmp_path, demo_library, pipeline, mosquitto):
    settings = started_once(tmp_path, demo_library, pipeline, mqtt={"host": mosquitto.host, "port": mosquitto.port})
    for version in (settings.data_dir / "library" / "national" / "versions").iterdir():
        version.unlink()
    results = run(settings, pipeline)
    assert not results["library"].ok
    assert "does not exist" in results["library"].detail


@pytest.mark.models
def test_broker_down_fails_the_mqtt_check(tmp_path, demo_library, pipeline):
    settings = started_once(tmp_path, demo_library, pipeline, mqtt={"host": "127.0.0.1", "port": free_port()})
    results = run(settings, pipeline)
    mqtt = results["mqtt"]
    assert not mqtt.ok
    assert mqtt.line().startswith(f"mqtt: FAILED: cannot reach the broker at 127.0.0.1:{settings.mqtt.port}")
    assert results["search"].ok


# --- the fleet broker: mutual TLS, client id pinned to the certificate ----------------------------------

@pytest.fixture(scope="module")
def fleet():
    """A fleet CA and the broker its generated configuration runs (as tests/provisioning does): in a
    world-readable temp folder, because Mosquitto drops root to the ``mosquitto`` user."""
    root = Path(tempfile.mkdtemp(prefix="rfr-selftest-fleet-"))
    os.chmod(root, 0o755)
    ca = init_ca(root / "ca", organisation="Test Constabulary", broker_names=["127.0.0.1"]).ca_dir
    server = TlsBroker(ca, root / "broker")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def tls_settings(tmp_path: Path, demo_library, pki, port: int, device_id: str) -> ApplianceSettings:
    return appliance_settings(tmp_path, copy_library(tmp_path, demo_library), device_id=device_id,
                              mqtt={"host": "127.0.0.1", "port": port, "ca_file": pki.ca, "cert_file": pki.cert,
                                    "key_file": pki.key})


@pytest.mark.models
def test_tls_checks_the_handshake_only_and_the_desk_keeps_its_session(tmp_path, demo_library, pipeline, fleet):
    pki = enrol(fleet.ca_dir, tmp_path / "device", "desk-tls-01")
    settings = tls_settings(tmp_path, demo_library, pki, fleet.devices.port, "desk-tls-01")
    desk = open_desk(settings, pipeline=pipeline)
    desk.start()
    publisher = desk.mqtt
    try:
        assert publisher.wait_connected(10)
        mqtt = run(settings, pipeline)["mqtt"]
        assert mqtt.ok, mqtt
        assert "handshake with the device certificate accepted; no MQTT CONNECT" in mqtt.detail
        assert publisher.connected and publisher.sessions == 1
    finally:
        desk.close()


@pytest.mark.models
def test_tls_with_a_revoked_certificate_fails(tmp_path, demo_library, pipeline, fleet):
    pki = enrol(fleet.ca_dir, tmp_path / "device", "desk-tls-02")
    with Ledger(CaLayout(fleet.ca_dir).ledger) as ledger:
        ledger.revoke_device("desk-tls-02", datetime.now(UTC))
    fleet.stop()
    fleet.start()  # writes the broker's CRL from the ledger again
    settings = tls_settings(tmp_path, demo_library, pki, fleet.devices.port, "desk-tls-02")
    mqtt = run(settings, pipeline)["mqtt"]
    assert not mqtt.ok
    assert mqtt.detail.startswith(f"TLS with the broker at 127.0.0.1:{fleet.devices.port} failed")
    assert "certificate revoked" in mqtt.detail  # the broker's alert, quoted
