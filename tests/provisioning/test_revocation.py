"""Revocation: central marks the desk, a connected desk obeys only central's signed wipe, the broker
refuses the desk's certificate after the CRL reload, and whatever the desk still sends is refused and flagged."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.services.audit import AuditLog
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox
from appliance.web import create_app
from central.__main__ import main as central_main
from central.audit.store import AuditStore
from central.fleet.registry_store import RegistryStore
from central.fleet.revoke import PkiTarget, generate_command_key, load_command_key, revoke_device
from central.ingest.handler import Incoming, MessageHandler
from central.ingest.mqtt import publish_once
from central.settings import CentralMqttSettings as CentralMqtt
from central.web import close_stores
from central.web import create_app as create_central
from core.audit.checkpoint import public_key_hex
from core.fleet import FleetCommand
from core.topics import audit_topic, fleet_command_topic
from provisioning.ca import CaLayout
from tests.audit_support import wait_for
from tests.central_signin import signed_in
from tests.fleet_key import write_command_key
from tests.fleet_tls import FleetPki, desk_web_toml, power_cut, start_served, wait_https
from tests.provisioning.desks import live_desk, running_central
from tests.provisioning.fleet import Probe, enrol


def _audit_types(app) -> list[tuple[str, str]]:
    db = app.extensions["desk"].db
    with db.lock:
        rows = db.conn.execute("SELECT payload FROM audit_log ORDER BY seq").fetchall()
    return [(e["type"], e["outcome"]) for e in (json.loads(bytes(r[0])) for r in rows)]


def test_revoking_a_live_desk_wipes_it_and_its_report_reaches_central(tmp_path, demo_library, pipeline, mosquitto):
    command_key, public = write_command_key(tmp_path / "central")  # the key the running central signs with
    with running_central(tmp_path, mosquitto.port) as central:
        app, device = live_desk(tmp_path, demo_library, pipeline, mosquitto.port, central,
                                fleet_command_public_key=public)
        rfr = app.extensions["desk"]
        data = rfr.settings.data_dir
        try:
            assert rfr.mqtt.wait_connected(10)
            assert wait_for(lambda: rfr.outbox.depth() == 0, timeout=10)  # library_loaded is at central
            config = tmp_path / "central.toml"
            config.write_text(f'data_dir = "{tmp_path}"\ndatabase = "sqlite:///{central.db}"\n'
                              f'[mqtt]\nhost = "127.0.0.1"\nport = {mosquitto.port}\n'
                              f'[fleet]\ncommand_key = "{command_key}"\n'
                              '[web]\nsecret_key = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"\n')
            assert central_main(["devices", "revoke", "--id", device, "--config", str(config),
                                 "--by", "Sgt Test", "--reason", "stolen"]) == 0
            assert rfr.wipe.withdrawn.wait(15)
            for gone in ("device.db", "device.key", "audit-signing.key", "library"):
                assert not (data / gone).exists(), gone
            assert not rfr.settings.library.path.exists() and not rfr.settings.library.wrapped_key.exists()
            assert not list((data / "pki").glob("library-wrap.key*")), "the key-wrapping key outlived the wipe"
            page = app.test_client().get("/login")
            assert page.status_code == 410 and "This device has been withdrawn" in page.get_data(as_text=True)
            assert wait_for(lambda: not rfr.mqtt.connected, timeout=10)  # went silent
            wiped = central.store.query()
            assert next(e["type"] for e in wiped if e["device_id"] == device) == "device_wiped"
            fleet = signed_in(central.web).get(f"/fleet/{device}").get_data(as_text=True)
            assert "revoked" in fleet and "Sgt Test: stolen" in fleet
        finally:
            rfr.mqtt.stop()
    # Restarted, the desk serves only the withdrawn page: nothing is left to open.
    again = create_app(rfr.settings, pipeline=pipeline, start_sync=False)
    assert again.test_client().get("/").status_code == 410


def test_forged_wrong_device_and_stale_wipes_are_refused_and_the_desk_is_intact(
        tmp_path, demo_library, pipeline, mosquitto):
    real, public = write_command_key(tmp_path / "central")  # the key the running central signs with
    key, forger = load_command_key(real), Ed25519PrivateKey.generate()
    with running_central(tmp_path, mosquitto.port) as central:
        app, device = live_desk(tmp_path, demo_library, pipeline, mosquitto.port, central,
                                fleet_command_public_key=public)
        rfr = app.extensions["desk"]
        try:
            assert rfr.mqtt.wait_connected(10)
            # An ack back means the broker has processed the desk's subscriptions (sent before its events).
            assert wait_for(lambda: rfr.outbox.depth() == 0, timeout=10)
            mqtt = CentralMqtt(host="127.0.0.1", port=mosquitto.port)
            topic = fleet_command_topic(device)
            for command in (FleetCommand.sign(forger, device, "wipe"),
                            FleetCommand.sign(key, "desk-someone-else", "wipe"),
                            FleetCommand.sign(key, device, "wipe", now=datetime.now(UTC) - timedelta(hours=2))):
                assert publish_once(mqtt, topic, command.to_bytes())
            assert wait_for(lambda: len(rfr.wipe.refused) == 3, timeout=10)
            assert [r.split(" ")[-1] for r in rfr.wipe.refused[:1]] == ["key."]
            assert "not this device" in rfr.wipe.refused[1] and "stale" in rfr.wipe.refused[2]
            time.sleep(0.5)
            assert not rfr.wipe.withdrawn.is_set()
            data = rfr.settings.data_dir
            assert (data / "device.db").exists() and (data / "device.key").exists() and (data / "library").is_dir()
            assert app.test_client().get("/login").status_code == 200
            assert _audit_types(app).count(("request_refused", "fleet_command_refused")) == 3
            # A genuine command that is not a wipe (a resend request) never wipes, even handed to the wipe.
            assert not rfr.wipe.handle(FleetCommand.sign(key, device, "resend", since=datetime.now(UTC)).to_bytes())
            assert "not a wipe" in rfr.wipe.refused[-1] and not rfr.wipe.withdrawn.is_set()
            # A valid command accepted once is not accepted again (replay of the same nonce).
            valid = FleetCommand.sign(key, device, "wipe").to_bytes()
            assert rfr.wipe.handle(valid) and not rfr.wipe.handle(valid)
        finally:
            rfr.mqtt.stop()


def test_events_from_a_revoked_desk_are_rejected_and_flagged_on_the_audit_page(tmp_path):
    outbox = Outbox(DeviceDatabase(tmp_path / "desk"))
    log = AuditLog("desk-gone", outbox)
    log.record("search", "PC 1", "candidates_shown")
    log.record("device_wiped", "central", "wipe_accepted")
    payloads = [p.payload for p in outbox.pending(limit=10, from_seq=1)]
    store, registry = AuditStore(tmp_path / "central.db"), RegistryStore(tmp_path / "central.db")
    registry.register_device("desk-gone", public_key_hex(outbox.public_key))
    registry.revoke_device("desk-gone", "Sgt Test", "stolen")
    MessageHandler(store, registry).handle([Incoming(audit_topic("desk-gone"), p) for p in payloads])
    assert [e["type"] for e in store.query()] == ["device_wiped"]  # only its wipe report is kept
    assert store.rejections()[0]["reason"].startswith("device revoked: desk-gone sent a search event")
    registry.close()
    store.close()
    web = create_central(test_config={"TESTING": True, "SECRET_KEY": "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k",
                                      "DATABASE": str(tmp_path / "central.db")})
    try:
        page = signed_in(web).get("/audit").get_data(as_text=True)
    finally:
        close_stores(web)
    assert "revoked_device_message" in page and "device revoked: desk-gone sent a search event" in page


def test_central_revocation_sends_the_wipe_then_the_broker_refuses_the_desk(fleet_broker, tmp_path):
    root = fleet_broker.ca_dir.parent
    pki = enrol(fleet_broker.ca_dir, root / "desk-revoked", "desk-revoked")
    desk = Probe.for_files(fleet_broker.devices.port, pki.ca, pki.cert, pki.key, "desk-revoked")
    assert desk.connect(), fleet_broker.log[-2000:]
    desk.subscribe(fleet_command_topic("desk-revoked"))
    layout = CaLayout(fleet_broker.ca_dir)
    mqtt = CentralMqtt(host="127.0.0.1", port=fleet_broker.central.port, ca_file=layout.bundle,
                       cert_file=layout.central_cert, key_file=layout.central_key)
    assert fleet_broker.process is not None
    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(str(fleet_broker.process.pid))
    registry = RegistryStore(tmp_path / "central.db")
    registry.register_device("desk-revoked", "00" * 32)
    key = Ed25519PrivateKey.generate()
    try:
        result = revoke_device(registry, "desk-revoked", revoked_by="Sgt Test", reason="stolen", command_key=key,
                               send=lambda t, p: publish_once(mqtt, t, p),
                               pki=PkiTarget(fleet_broker.ca_dir, fleet_broker.workdir, pid_file))
        assert result.wipe_sent and len(result.certificates) == 1 and result.broker_reloaded
        got = desk.received(wait=2)
        assert [t for t, _ in got] == [fleet_command_topic("desk-revoked")]  # still connected: it got the wipe
        FleetCommand.from_bytes(got[0][1]).verify(key.public_key(), device_id="desk-revoked")
        desk.close()
        time.sleep(0.5)  # SIGHUP is handled in the broker's next loop
        again = Probe.for_files(fleet_broker.devices.port, pki.ca, pki.cert, pki.key, "desk-revoked-2")
        try:
            assert not again.connect(timeout=3)
        finally:
            again.close()
    finally:
        registry.close()
    assert Path(layout.crl).exists()


def test_the_fleet_pages_revoke_button_needs_its_csrf_token_and_the_typed_desk_id(tmp_path):
    registry = RegistryStore(tmp_path / "central.db")
    registry.register_device("desk-07", "00" * 32)
    registry.close()
    web = create_central(test_config={"TESTING": True, "SECRET_KEY": "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k",
                                      "DATABASE": str(tmp_path / "central.db")})
    client = signed_in(web, "sgt.test", ["fleet_admin"])
    try:
        form = {"reason": "decommissioned", "confirm": "desk-07"}
        assert client.post("/fleet/desk-07/revoke", data=form).status_code == 400  # no CSRF token
        page = client.get("/fleet/desk-07").get_data(as_text=True)
        token = page.split('name="csrf_token" value="')[1].split('"')[0]
        wrong = client.post("/fleet/desk-07/revoke", data={**form, "confirm": "desk-7", "csrf_token": token})
        assert wrong.status_code == 422 and "Type the desk id desk-07" in wrong.get_data(as_text=True)
        assert web.extensions["central.registry"].revocations() == {}
        done = client.post("/fleet/desk-07/revoke", data={**form, "csrf_token": token}, follow_redirects=True)
        assert done.status_code == 200
        assert "desk-07 revoked, no wipe sent, the next library publication re-keys" in done.get_data(as_text=True)
        assert web.extensions["central.registry"].revocations()["desk-07"]["revoked_by"] == "sgt.test"
        assert "Revoke desk-07" not in done.get_data(as_text=True)
    finally:
        close_stores(web)


def test_a_wipe_accepted_before_a_power_cut_is_finished_at_the_next_start(tmp_path, demo_library, pipeline, mosquitto):
    """kill -9 in the grace period used to leave keys and data in place for good (the CRL then keeps the command
    from arriving again); the acceptance is now durable and the next start finishes the wipe before serving."""
    from appliance.settings import load as load_appliance_settings
    from testbed.ports import free_port
    from tests.desk_keys import provision_library_key
    from tests.provisioning.desks import copy_library

    real = tmp_path / "fleet-command.pem"
    public = generate_command_key(real)
    library, key = copy_library(tmp_path, demo_library)
    data, port, device = tmp_path / "device", free_port(), "desk-powercut"
    wrapped = provision_library_key(data, device, key)
    config = tmp_path / "appliance.toml"
    fleet = FleetPki.create(tmp_path / "fleet")
    web = desk_web_toml(fleet.enrol(data, device, web=True))
    config.write_text(
        f'device_id = "{device}"\ndata_dir = "{data}"\nfleet_command_public_key = "{public}"\n'
        f'[library]\npath = "{library}"\nwrapped_key = "{wrapped}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {mosquitto.port}\n'
        f'[web]\nport = {port}\nsecret_key = "test-secret-key-0123456789"\n' + web)
    desk = start_served("appliance", config, tmp_path / "desk.log")
    try:
        # No central here, so nothing acknowledges the wipe report: the desk waits out its grace period.
        wait_https(f"https://127.0.0.1:{port}/login", fleet.trust(), desk, tmp_path / "desk.log", timeout=90)
        command = FleetCommand.sign(load_command_key(real), device, "wipe").to_bytes()
        mqtt = CentralMqtt(host="127.0.0.1", port=mosquitto.port)
        assert wait_for(lambda: publish_once(mqtt, fleet_command_topic(device), command) and
                        (data / "WIPE-PENDING").exists(), timeout=20)
        power_cut(desk)  # inside the grace period: the server and its worker
    finally:
        if desk.poll() is None:
            power_cut(desk)
    assert (data / "device.key").exists() and (data / "device.db").exists(), "the cut came before the wipe"
    settings = load_appliance_settings(config)  # the desk's own settings file, as its next start reads it
    again = create_app(settings, pipeline=pipeline, start_sync=False)
    assert again.test_client().get("/login").status_code == 410
    for gone in ("device.db", "device.key", "audit-signing.key", "library", "WIPE-PENDING", "pki/library-wrap.key",
                 "tpm-auth.secret"):
        assert not (data / gone).exists(), gone
    assert not wrapped.exists() and not library.exists() and (data / "WITHDRAWN").exists()
    # Every later start stays withdrawn: the WITHDRAWN marker is checked before anything is opened.
    assert create_app(settings, pipeline=pipeline, start_sync=False).test_client().get("/").status_code == 410

