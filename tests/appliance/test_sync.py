"""The outbox and the MQTT sender, against a real Mosquitto."""

from __future__ import annotations

import queue
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from appliance.comms.mqtt import AuditPublisher
from appliance.services.audit import AuditLog
from appliance.settings import MqttSettings
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox
from core.events import AuditEvent
from core.topics import audit_topic
from tests.broker import Broker, free_port


def wait_until(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def listener(mosquitto):
    """A plain subscriber standing in for central: collects what arrives on a device's audit topic."""
    received: queue.Queue[AuditEvent] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, msg: received.put(AuditEvent.from_bytes(msg.payload))
    client.connect(mosquitto.host, mosquitto.port)
    client.subscribe(audit_topic("desk-sync-01"), qos=1)
    client.loop_start()
    time.sleep(0.2)
    yield received
    client.loop_stop()
    client.disconnect()


def drain(q: queue.Queue, n: int, timeout: float = 15.0) -> list[AuditEvent]:
    return [q.get(timeout=timeout) for _ in range(n)]


def test_outbox_numbers_events_and_survives_reopening(tmp_path):
    db = DeviceDatabase(tmp_path)
    log = AuditLog("desk-sync-01", Outbox(db))
    first = log.record("search", "pc1", "no_candidates")
    second = log.record("search", "pc1", "candidates_shown")
    assert (first.seq, second.seq) == (1, 2)
    db.close()
    reopened = Outbox(DeviceDatabase(tmp_path))
    assert [p.seq for p in reopened.pending()] == [1, 2]
    assert b"desk-sync-01" not in (tmp_path / "device.db").read_bytes()


def test_events_reach_the_broker_and_leave_the_outbox(tmp_path, mosquitto, listener):
    outbox = Outbox(DeviceDatabase(tmp_path))
    log = AuditLog("desk-sync-01", outbox)
    publisher = AuditPublisher(MqttSettings(host=mosquitto.host, port=mosquitto.port), "desk-sync-01", outbox)
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        sent = [log.record("search", "pc1", "candidates_shown", candidates=i) for i in range(5)]
        got = drain(listener, 5)
        assert sorted(e.seq for e in got) == [e.seq for e in sent]
        assert wait_until(lambda: outbox.depth() == 0)
    finally:
        publisher.stop()


def test_events_made_while_the_broker_is_down_arrive_later(tmp_path):
    broker = Broker(host="127.0.0.1", port=free_port(), workdir=tmp_path / "broker")
    broker.workdir.mkdir()
    broker.workdir.chmod(0o777)
    outbox = Outbox(DeviceDatabase(tmp_path / "device"))
    log = AuditLog("desk-sync-01", outbox)
    publisher = AuditPublisher(MqttSettings(host=broker.host, port=broker.port), "desk-sync-01", outbox)
    publisher.start()
    try:
        for _ in range(3):
            log.record("search", "pc1", "no_candidates")
        time.sleep(1.0)
        assert not publisher.connected and outbox.depth() == 3  # nothing lost while offline
        broker.start()
        # The sender's reconnect back-off is at least 1 s, so this subscription is in place first.
        received: queue.Queue[AuditEvent] = queue.Queue()
        subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_message = lambda c, u, msg: received.put(AuditEvent.from_bytes(msg.payload))
        client.on_subscribe = lambda *args: subscribed.set()
        client.connect(broker.host, broker.port)
        client.subscribe(audit_topic("desk-sync-01"), qos=1)
        client.loop_start()
        try:
            assert subscribed.wait(5)
            assert publisher.wait_connected(40)
            assert sorted(e.seq for e in drain(received, 3, timeout=40)) == [1, 2, 3]
            assert wait_until(lambda: outbox.depth() == 0)
        finally:
            client.loop_stop()
            client.disconnect()
    finally:
        publisher.stop()
        broker.stop()
