"""The device's audit log, outbox and MQTT sender against a real Mosquitto and central's real ingest."""

from __future__ import annotations

import itertools
import queue
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from appliance.comms.mqtt import CentralLink
from appliance.services.audit import AuditLog
from appliance.settings import DeskMqttSettings
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox
from central.audit.store import AuditStore
from central.fleet.registry_store import RegistryStore
from central.ingest.mqtt import AuditIngest
from central.settings import CentralMqttSettings as CentralMqtt
from core.audit.checkpoint import public_key_hex
from core.events import AuditEvent
from core.topics import audit_topic
from testbed.mosquitto import Broker
from testbed.ports import free_port
from tests.fleet_key import CENTRAL_PUBLIC, COMMAND_KEY

_ids = itertools.count(1)


def wait_until(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def device(tmp_path: Path, device_id: str = "desk-sync-01") -> tuple[Outbox, AuditLog]:
    outbox = Outbox(DeviceDatabase(tmp_path / "device"))
    return outbox, AuditLog(device_id, outbox)


def register(store: AuditStore, device_id: str, public_key: str) -> None:
    """Register the desk's key in the registry beside ``store``, as ``python -m central devices register`` does."""
    registry = RegistryStore(store.url)
    try:
        registry.register_device(device_id, public_key)
    finally:
        registry.close()


@pytest.fixture
def central(tmp_path, mosquitto):
    """Central's real ingest and store, on the session broker, with a fresh client id."""
    store = AuditStore(tmp_path / "central.db")
    ingest = AuditIngest(CentralMqtt(host=mosquitto.host, port=mosquitto.port,
                                     client_id=f"central-sync-{next(_ids)}"), store,
                         command_key=COMMAND_KEY)
    ingest.start()
    assert ingest.wait_connected(10)
    yield store, ingest
    ingest.stop()
    store.close()


def test_outbox_numbers_links_and_survives_reopening(tmp_path):
    _outbox, log = device(tmp_path)
    first = log.record("search", "pc1", "no_candidates")
    second = log.record("search", "pc1", "candidates_shown")
    assert (first.seq, second.seq) == (1, 2)
    assert second.prev_hash == first.hash
    reopened = Outbox(DeviceDatabase(tmp_path / "device"))
    assert [p.seq for p in reopened.pending()] == [1, 2]
    third = AuditLog("desk-sync-01", reopened).record("logout", "pc1", "ok")
    assert third.seq == 3 and third.prev_hash == second.hash
    assert reopened.verify().ok
    assert b"desk-sync-01" not in (tmp_path / "device" / "device.db").read_bytes()
    key_file = tmp_path / "device" / "audit-signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_a_checkpoint_is_signed_every_n_events_and_when_idle(tmp_path):
    outbox = Outbox(DeviceDatabase(tmp_path / "device"), checkpoint_every=3)
    log = AuditLog("desk-sync-01", outbox)
    for _ in range(4):
        log.record("search", "pc1", "no_candidates")
    assert [c.seq for c in outbox.pending_checkpoints()] == [3]
    assert outbox.sign_tail(min_idle_s=60) is None  # not idle yet
    assert outbox.sign_tail().seq == 4
    assert outbox.sign_tail() is None  # nothing new to sign


def test_events_are_stored_by_central_and_leave_the_outbox_only_when_central_acks(tmp_path, mosquitto, central):
    store, _ingest = central
    outbox, log = device(tmp_path)
    register(store, "desk-sync-01", public_key_hex(outbox.public_key))
    publisher = CentralLink(DeskMqttSettings(host=mosquitto.host, port=mosquitto.port), "desk-sync-01", outbox,
                            central_key=CENTRAL_PUBLIC)
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        sent = [log.record("search", "pc1", "candidates_shown", candidates=i) for i in range(5)]
        assert wait_until(lambda: outbox.depth() == 0)
        assert publisher.acked_through == 5
        rows = store.query(limit=10)
        assert sorted(r["seq"] for r in rows) == [e.seq for e in sent]
        # A second after the last event the idle tail is signed; central matches it to the chain.
        assert wait_until(lambda: store.head("desk-sync-01").checkpoint_seq == 5)
        assert wait_until(lambda: outbox.depth() == 0)
        assert store.findings() == []
    finally:
        publisher.stop()


def test_a_broker_puback_alone_does_not_empty_the_outbox(tmp_path, mosquitto):
    """With no central to ack, the broker accepts every event but the device keeps them all."""
    outbox, log = device(tmp_path)
    received: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, msg: received.put(msg.payload)
    client.connect(mosquitto.host, mosquitto.port)
    client.subscribe(audit_topic("desk-sync-01"), qos=1)
    client.loop_start()
    publisher = CentralLink(DeskMqttSettings(host=mosquitto.host, port=mosquitto.port), "desk-sync-01", outbox,
                            central_key=CENTRAL_PUBLIC)
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        for _ in range(3):
            log.record("search", "pc1", "no_candidates")
        got = [AuditEvent.from_bytes(received.get(timeout=10)) for _ in range(3)]
        assert [e.seq for e in got] == [1, 2, 3]
        time.sleep(0.5)
        assert outbox.first_pending() == 1  # still queued: only central's ack may remove them
    finally:
        publisher.stop()
        client.loop_stop()
        client.disconnect()


def test_events_made_while_the_broker_is_down_arrive_later(tmp_path):
    broker = Broker(host="127.0.0.1", port=free_port(), workdir=tmp_path / "broker")
    broker.workdir.mkdir()
    broker.workdir.chmod(0o777)
    outbox, log = device(tmp_path)
    store = AuditStore(tmp_path / "central.db")
    register(store, "desk-sync-01", public_key_hex(outbox.public_key))
    publisher = CentralLink(DeskMqttSettings(host=broker.host, port=broker.port), "desk-sync-01", outbox,
                            central_key=CENTRAL_PUBLIC)
    publisher.start()
    ingest = AuditIngest(CentralMqtt(host=broker.host, port=broker.port, client_id="central-late"), store,
                         command_key=COMMAND_KEY)
    try:
        for _ in range(3):
            log.record("search", "pc1", "no_candidates")
        time.sleep(1.0)
        assert not publisher.connected and outbox.first_pending() == 1  # nothing lost while offline
        broker.start()
        ingest.start()
        assert wait_until(lambda: outbox.depth() == 0, timeout=40)
        assert store.count() == 3 and store.head("desk-sync-01").contiguous_seq == 3
    finally:
        publisher.stop()
        ingest.stop()
        store.close()
        broker.stop()
