"""Rotating central's fleet-command key (``python -m central devices rotate-command-key``), through real Mosquitto.

Central sends each desk a ``rekey`` signed with the old key, carrying the new public key; the desk stores it and
from then on believes only the new key: commands, and central's acks, which a running ingest signs with the new
key as soon as the key file is replaced. A desk that was off finds its rekey waiting at the broker. Forged,
replayed, stale and misaddressed rekeys are refused and recorded; a rotation the broker refused is not switched,
and the next run finishes the same rotation.
"""

from __future__ import annotations

import json
import queue
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from appliance.services.audit import AuditLog
from appliance.services.rekey import RekeyService
from appliance.storage.central_key import STORED, TrustedCentralKey
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox
from appliance.web import create_app
from central.__main__ import main as central_main
from central.fleet.command_key import FollowedCommandKey
from central.fleet.registry_store import RegistryStore
from central.fleet.revoke import load_command_key
from central.fleet.rotate import RotationLog, rotate_command_key
from central.ingest.mqtt import publish_once
from central.settings import CentralMqttSettings as CentralMqtt
from core.audit.checkpoint import public_key_from_bytes, public_key_hex
from core.errors import SettingsError
from core.fleet import REKEY_WINDOW, FleetCommand, key_fingerprint, public_key_raw_hex
from core.topics import fleet_command_topic
from testbed.ports import free_port
from tests.audit_support import wait_for
from tests.fleet_key import FORGER, write_command_key
from tests.provisioning.desks import live_desk, running_central

SECRET = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"


def _events(rfr) -> list[dict]:
    with rfr.db.lock:
        rows = rfr.db.conn.execute("SELECT payload FROM audit_log ORDER BY seq").fetchall()
    return [json.loads(bytes(r[0])) for r in rows]


def _of(rfr, kind: str, outcome: str | None = None) -> list[dict]:
    return [e for e in _events(rfr) if e["type"] == kind and (outcome is None or e["outcome"] == outcome)]


def _central_toml(tmp_path: Path, db: Path, port: int, key: Path, name: str = "central.toml") -> Path:
    config = tmp_path / name
    config.write_text(f'data_dir = "{tmp_path}"\ndatabase = "sqlite:///{db}"\n'
                      f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
                      f'[fleet]\ncommand_key = "{key}"\n[web]\nsecret_key = "{SECRET}"\n')
    return config


def _desk_copy(public: Path, folder: Path) -> Path:
    """The desk's own copy of central's public key, as provisioning installs it (central's file moves on)."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(public, folder / "fleet-command.pub"))


def _fp(key: Ed25519PrivateKey) -> str:
    return key_fingerprint(key.public_key())


class CommandWatch:
    """The fleet commands published to some desks, as the broker delivers them."""

    def __init__(self, port: int, devices: list[str]) -> None:
        self.payloads: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = Client(CallbackAPIVersion.VERSION2, client_id=f"rekey-watch-{time.monotonic_ns()}",
                             protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = lambda c, u, m: self.payloads.put((m.topic, m.payload))
        self.client.connect("127.0.0.1", port)
        for device in devices:
            self.client.subscribe(fleet_command_topic(device), qos=1)
        self.client.loop_start()
        time.sleep(0.3)  # the subscriptions are in place before anything is published

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_live_desk_follows_the_rotation_trusts_only_the_new_key_and_keeps_it_across_a_restart(
        tmp_path, demo_library, pipeline, mosquitto):
    key_path, public = write_command_key(tmp_path / "central")
    old = load_command_key(key_path)
    old_pem = key_path.read_bytes()
    mqtt = CentralMqtt(host="127.0.0.1", port=mosquitto.port)
    with running_central(tmp_path, mosquitto.port, command_key=FollowedCommandKey(key_path)) as central:
        config = _central_toml(tmp_path, central.db, mosquitto.port, key_path)
        (tmp_path / "a").mkdir()
        app, device = live_desk(tmp_path / "a", demo_library, pipeline, mosquitto.port, central,
                                fleet_command_public_key=_desk_copy(public, tmp_path / "a" / "etc"))
        rfr = app.extensions["desk"]
        topic = fleet_command_topic(device)
        watch = CommandWatch(mosquitto.port, [device])
        try:
            assert rfr.mqtt.wait_connected(10)
            assert wait_for(lambda: rfr.outbox.depth() == 0, timeout=10)  # acked: the broker has its subscriptions
            assert central_main(["devices", "rotate-command-key", "--config", str(config), "--by", "Sgt Keys"]) == 0

            # Central: the new key signs from now on, the old one is kept for the record, the rotation recorded.
            new = load_command_key(key_path)
            old_fp, new_fp = _fp(old), _fp(new)
            assert old_fp != new_fp
            assert (key_path.parent / f"fleet-command.pem.retired-{old_fp}").read_bytes() == old_pem
            assert public_key_hex(public_key_from_bytes(public.read_bytes())) == public_key_hex(new.public_key())
            log = RotationLog(central.db)
            try:
                [rotation] = log.rotations()
                assert (rotation["rotated_by"], rotation["old_fingerprint"], rotation["new_fingerprint"]) == (
                    "Sgt Keys", old_fp, new_fp) and rotation["switched_at"]
                assert [(r["device_id"], r["sent"]) for r in log.rekeys()] == [(device, 1)]
            finally:
                log.close()

            # The desk: trusts the new key, recorded it, and takes central's acks signed with it.
            # (the desk records the rotation just after it switches: wait for both)
            assert wait_for(lambda: rfr.central_key.fingerprint == new_fp and _of(rfr, "command_key_rotated"), 10)
            [rotated] = _of(rfr, "command_key_rotated")
            assert (rotated["details"]["old_key"], rotated["details"]["new_key"]) == (old_fp, new_fp)
            # (an ack central signed with the old key just before the switch is refused; the desk sends again)
            assert wait_for(lambda: rfr.outbox.depth() == 0, timeout=30), "central's new-key acks were refused"
            assert any(e["type"] == "command_key_rotated" for e in central.store.query() if e["device_id"] == device)
            assert json.loads((rfr.settings.data_dir / STORED).read_text())["key"] == public_key_raw_hex(
                new.public_key())

            # A command signed with the old key is refused; one signed with the new key is carried out.
            since = datetime.now(UTC) - timedelta(minutes=5)
            assert publish_once(mqtt, topic, FleetCommand.sign(old, device, "resend", since=since).to_bytes())
            assert wait_for(lambda: any("not signed" in e["details"]["reason"]
                                        for e in _of(rfr, "request_refused", "fleet_command_refused")), timeout=10)
            assert publish_once(mqtt, topic, FleetCommand.sign(new, device, "resend", since=since).to_bytes())
            assert wait_for(lambda: len(_of(rfr, "events_resent", "requeued")) == 1, timeout=10)

            # Rekeys that must change nothing: the real one replayed (its key no longer counts), a forgery, one
            # signed with the trusted key but stale, one for another desk.
            _topic, real = watch.payloads.get(timeout=10)  # the first command on the topic: the rotation's rekey
            assert FleetCommand.from_bytes(real).command == "rekey"
            stale = datetime.now(UTC) - REKEY_WINDOW - timedelta(hours=1)
            for payload in (real,
                            FleetCommand.sign(FORGER, device, "rekey", new_key=FORGER.public_key()).to_bytes(),
                            FleetCommand.sign(new, device, "rekey", now=stale, new_key=FORGER.public_key()).to_bytes(),
                            FleetCommand.sign(new, "desk-someone-else", "rekey",
                                              new_key=FORGER.public_key()).to_bytes()):
                assert publish_once(mqtt, topic, payload)
            assert wait_for(lambda: len(rfr.rekey.refused) == 4, timeout=10)
            reasons = " | ".join(rfr.rekey.refused)
            assert reasons.count("not signed") == 2 and "stale" in reasons and "not this device" in reasons
            assert rfr.central_key.fingerprint == new_fp and len(_of(rfr, "command_key_rotated")) == 1
        finally:
            watch.close()
            rfr.close()

        # Restarted (appliance.toml still names the provisioned key): the desk still trusts only the new key.
        again = create_app(rfr.settings, pipeline=pipeline, start_sync=False)
        desk = again.extensions["desk"]
        desk.mqtt.start()
        try:
            assert desk.central_key.fingerprint == new_fp
            assert desk.mqtt.wait_connected(10)
            assert wait_for(lambda: desk.outbox.depth() == 0, timeout=15)  # new-key acks taken after the restart
            assert publish_once(mqtt, topic, FleetCommand.sign(old, device, "wipe").to_bytes())
            assert wait_for(lambda: len(desk.wipe.refused) == 1, timeout=10)
            assert "not signed" in desk.wipe.refused[0] and not desk.wipe.withdrawn.is_set()
            assert publish_once(mqtt, topic, FleetCommand.sign(new, device, "resend", since=since).to_bytes())
            assert wait_for(lambda: len(_of(desk, "events_resent", "requeued")) == 2, timeout=10)
        finally:
            desk.close()


def test_a_desk_that_was_off_finds_its_rekey_at_the_broker_and_then_obeys_only_the_new_key(
        tmp_path, demo_library, pipeline, mosquitto):
    key_path, public = write_command_key(tmp_path / "central")
    old = load_command_key(key_path)
    mqtt = CentralMqtt(host="127.0.0.1", port=mosquitto.port)
    with running_central(tmp_path, mosquitto.port, command_key=FollowedCommandKey(key_path)) as central:
        config = _central_toml(tmp_path, central.db, mosquitto.port, key_path)
        (tmp_path / "b").mkdir()
        app, device = live_desk(tmp_path / "b", demo_library, pipeline, mosquitto.port, central,
                                fleet_command_public_key=_desk_copy(public, tmp_path / "b" / "etc"))
        rfr = app.extensions["desk"]
        assert rfr.mqtt.wait_connected(10)
        assert wait_for(lambda: rfr.outbox.depth() == 0, timeout=10)
        rfr.close()  # the desk is off; its persistent session stays at the broker
        assert central_main(["devices", "rotate-command-key", "--config", str(config)]) == 0
        new = load_command_key(key_path)

        again = create_app(rfr.settings, pipeline=pipeline, start_sync=False)
        desk = again.extensions["desk"]
        assert desk.central_key.fingerprint == _fp(old)  # nothing has reached it yet
        desk.mqtt.start()
        try:
            assert wait_for(lambda: desk.central_key.fingerprint == _fp(new), timeout=15)
            # Its events reach central and are acked, the record of the rotation among them.
            assert wait_for(lambda: any(e["type"] == "command_key_rotated" for e in central.store.query()
                                        if e["device_id"] == device) and desk.outbox.depth() == 0, timeout=15)
            assert publish_once(mqtt, fleet_command_topic(device), FleetCommand.sign(old, device, "wipe").to_bytes())
            assert wait_for(lambda: len(desk.wipe.refused) == 1, timeout=10)
            assert not desk.wipe.withdrawn.is_set()
            assert publish_once(mqtt, fleet_command_topic(device), FleetCommand.sign(new, device, "wipe").to_bytes())
            assert desk.wipe.withdrawn.wait(15)
        finally:
            desk.mqtt.stop()


def test_a_rotation_the_broker_refused_is_not_switched_and_the_next_run_finishes_the_same_one(tmp_path, mosquitto):
    key_path, _ = write_command_key(tmp_path / "central")
    old = load_command_key(key_path)
    db = tmp_path / "central.db"
    registry = RegistryStore(f"sqlite:///{db}")
    for device in ("desk-rot-live", "desk-rot-gone"):
        registry.register_device(device, public_key_hex(Ed25519PrivateKey.generate().public_key()))
    registry.revoke_device("desk-rot-gone", "Sgt Test", "stolen")
    registry.close()
    down = _central_toml(tmp_path, db, free_port(), key_path, "down.toml")  # nothing listens there
    assert central_main(["devices", "rotate-command-key", "--config", str(down)]) == 1
    following = key_path.with_name(key_path.name + ".next")
    assert _fp(load_command_key(key_path)) == _fp(old) and following.exists()  # still signing with the old key
    pending = _fp(load_command_key(following))

    watch = CommandWatch(mosquitto.port, ["desk-rot-live", "desk-rot-gone"])
    try:
        up = _central_toml(tmp_path, db, mosquitto.port, key_path)
        assert central_main(["devices", "rotate-command-key", "--config", str(up)]) == 0
        topic, payload = watch.payloads.get(timeout=10)
        time.sleep(0.5)
        assert watch.payloads.empty()  # the revoked desk is told nothing
    finally:
        watch.close()
    new = load_command_key(key_path)
    assert _fp(new) == pending and not following.exists()  # the same rotation, finished
    assert topic == fleet_command_topic("desk-rot-live")
    command = FleetCommand.from_bytes(payload)
    command.verify(old.public_key(), device_id="desk-rot-live", window=REKEY_WINDOW)
    assert command.command == "rekey" and command.new_key == public_key_raw_hex(new.public_key())
    log = RotationLog(f"sqlite:///{db}")
    try:
        assert [(r["old_fingerprint"], r["new_fingerprint"], bool(r["switched_at"])) for r in log.rotations()] == [
            (_fp(old), pending, True)]
        assert sorted((r["device_id"], r["sent"]) for r in log.rekeys()) == [("desk-rot-live", 0),
                                                                             ("desk-rot-live", 1)]
    finally:
        log.close()


def test_the_desk_keeps_its_rotated_key_refuses_a_replayed_nonce_and_a_damaged_record(tmp_path):
    """Below the broker: the stored key overrides appliance.toml's retired one after a restart, a key appliance.toml
    names that the desk never trusted (re-provisioned by hand) is used, and a nonce is never taken twice."""
    k0, k1, k2 = (Ed25519PrivateKey.generate() for _ in range(3))
    data = tmp_path / "desk"
    db = DeviceDatabase(data)
    audit = AuditLog("desk-unit", Outbox(db))
    trusted = TrustedCentralKey(k0.public_key(), data)
    service = RekeyService("desk-unit", trusted, audit, data)
    rekey = FleetCommand.sign(k0, "desk-unit", "rekey", new_key=k1.public_key()).to_bytes()
    assert not service.handle(FleetCommand.sign(k0, "desk-unit", "rekey", new_key=k0.public_key()).to_bytes())
    assert "already trusts" in service.refused[-1]
    assert service.handle(rekey) and trusted.fingerprint == _fp(k1)
    # The signature checks in every service go to the key trusted now.
    trusted.verify(k1.sign(b"x"), b"x")
    with pytest.raises(InvalidSignature):
        trusted.verify(k0.sign(b"x"), b"x")
    # Even the key trusted now cannot move the desk back to a key it rotated away from (a leaked one, say).
    assert not service.handle(FleetCommand.sign(k1, "desk-unit", "rekey", new_key=k0.public_key()).to_bytes())
    assert "rotated away from" in service.refused[-1] and trusted.fingerprint == _fp(k1)

    assert TrustedCentralKey(k0.public_key(), data).fingerprint == _fp(k1)  # restart: appliance.toml names k0
    assert TrustedCentralKey(k2.public_key(), data).fingerprint == _fp(k2)  # re-provisioned by hand to k2

    # Re-provisioned by hand to the old key (the stored record removed): the real rekey cannot be used again.
    (data / STORED).unlink()
    back = RekeyService("desk-unit", TrustedCentralKey(k0.public_key(), data), audit, data)
    assert not back.handle(rekey) and "already used" in back.refused[-1]

    (data / STORED).write_text("{damaged")
    with pytest.raises(SettingsError, match="Re-provision the desk"):
        TrustedCentralKey(k0.public_key(), data)
    kinds = [json.loads(bytes(r[0]))["type"] for r in db.conn.execute("SELECT payload FROM audit_log ORDER BY seq")]
    assert kinds == ["request_refused", "command_key_rotated", "request_refused", "request_refused"]
    db.close()


def test_a_rotation_the_broker_took_for_some_desks_switches_and_the_next_run_brings_the_rest(tmp_path, mosquitto):
    """A desk that took its rekey trusts only the new key, so central switches at once (its acks and a wipe for that
    desk must be signed with the new key); the desk whose rekey the broker refused is sent its own by the next run,
    signed with the retired key it still trusts. The broker's refusal is the one part not real here: the rekey for
    desk-part-b is dropped before it reaches the real broker."""
    key_path, _ = write_command_key(tmp_path / "central")
    old = load_command_key(key_path)
    url = f"sqlite:///{tmp_path / 'central.db'}"
    registry, log = RegistryStore(url), RotationLog(url)
    for device in ("desk-part-a", "desk-part-b"):
        registry.register_device(device, public_key_hex(Ed25519PrivateKey.generate().public_key()))
    mqtt = CentralMqtt(host="127.0.0.1", port=mosquitto.port)
    broker_takes_b = [False]

    def send(topic: str, payload: bytes) -> bool:
        if topic == fleet_command_topic("desk-part-b") and not broker_takes_b[0]:
            return False
        return publish_once(mqtt, topic, payload)

    watch = CommandWatch(mosquitto.port, ["desk-part-a", "desk-part-b"])
    try:
        first = rotate_command_key(key_path, registry, log, rotated_by="Sgt Keys", send=send)
        new = load_command_key(key_path)
        assert (first.switched, first.sent, first.not_sent) == (True, ["desk-part-a"], ["desk-part-b"])
        assert _fp(new) == first.new_fingerprint != _fp(old)  # central signs with the new key already
        assert "run the same command again" in first.summary().lower()
        assert log.behind(first.new_fingerprint) == ["desk-part-b"]

        broker_takes_b[0] = True
        again = rotate_command_key(key_path, registry, log, rotated_by="Sgt Keys", send=send)
        assert (again.switched, again.sent, again.not_sent, again.resumed) == (True, ["desk-part-b"], [], True)
        assert _fp(load_command_key(key_path)) == _fp(new) and log.behind(first.new_fingerprint) == []
        received = dict(watch.payloads.get(timeout=10) for _ in range(2))
    finally:
        watch.close()
        registry.close()
        log.close()
    for device in ("desk-part-a", "desk-part-b"):
        command = FleetCommand.from_bytes(received[fleet_command_topic(device)])
        command.verify(old.public_key(), device_id=device, window=REKEY_WINDOW)  # the key the desk trusted then
        assert command.command == "rekey" and command.new_key == public_key_raw_hex(new.public_key())
    assert _fp(load_command_key(first.retired)) == _fp(old)  # the retired key, kept for the desks behind
