"""The ingest against a real Mosquitto: exactly-once storage, acks, refusals, shared subscriptions."""

from __future__ import annotations

import itertools
import json
import queue
from collections.abc import Iterator
from dataclasses import replace

import pytest
from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from central.audit.store import AuditStore
from central.fleet.registry_store import RegistryStore
from central.ingest.mqtt import AuditIngest
from central.settings import CentralMqttSettings
from core.audit.ack import Ack
from core.events import MAX_PAYLOAD_BYTES, AuditEvent
from core.topics import ack_topic, audit_topic, checkpoint_topic
from testbed.chain_writer import ChainWriter
from testbed.mosquitto import Broker
from testbed.ports import free_port
from tests.audit_support import wait_for
from tests.fleet_key import CENTRAL_PUBLIC, COMMAND_KEY

_ids = itertools.count(1)


@pytest.fixture
def mqtt_settings(mosquitto) -> CentralMqttSettings:
    # A fresh client id per test: the broker's persistent sessions outlive a single test.
    return CentralMqttSettings(host=mosquitto.host, port=mosquitto.port, client_id=f"central-test-{next(_ids)}")


@pytest.fixture
def ingest(mqtt_settings: CentralMqttSettings, store: AuditStore) -> Iterator[AuditIngest]:
    ingest = AuditIngest(mqtt_settings, store, command_key=COMMAND_KEY)
    ingest.start()
    assert ingest.wait_connected(10), "ingest did not connect to the test broker"
    yield ingest
    ingest.stop()


@pytest.fixture
def desk(registry: RegistryStore) -> ChainWriter:
    w = ChainWriter(f"desk-{next(_ids)}")
    registry.register_device(w.device_id, w.public_hex)
    return w


def test_event_published_twice_is_stored_once_and_acked(ingest, publisher, store, desk, mosquitto) -> None:
    acks: queue.Queue[Ack] = queue.Queue()
    sub = Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    sub.on_message = lambda c, u, m: acks.put(Ack.from_signed(m.payload, CENTRAL_PUBLIC))
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe(ack_topic(desk.device_id), qos=1)
    sub.loop_start()
    try:
        wait_for(lambda: False, 0.3)
        event = desk.event()
        publisher(audit_topic(desk.device_id), event.to_bytes())
        publisher(audit_topic(desk.device_id), event.to_bytes())  # a resend, or a replay
        assert wait_for(lambda: ingest.received == 2)
        assert store.count() == 1 and ingest.duplicates == 1 and ingest.rejected == 0
        ack = acks.get(timeout=10)
        assert (ack.device_id, ack.events_through, ack.head_hash) == (desk.device_id, 1, event.hash)
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_bad_messages_are_rejected_and_counted_and_good_ones_around_them_are_kept(
    ingest, publisher, store, registry, desk
) -> None:
    topic = audit_topic(desk.device_id)
    stranger = ChainWriter("desk-unregistered")
    other = ChainWriter("desk-other")
    registry.register_device(other.device_id, other.public_hex)
    good = [desk.event() for _ in range(3)]
    unsealed = AuditEvent(device_id=desk.device_id, seq=99, type="search", actor="pc1", outcome="x")
    forged_cp = replace(desk.checkpoint(), signature="0" * 128)
    bad: list[tuple[str, bytes, str]] = [
        (topic, b"{not json", "not valid JSON"),
        (topic, b"x" * (MAX_PAYLOAD_BYTES + 1), "limit"),
        (topic, other.event().to_bytes(), "was published by"),  # desk speaking for another device
        ("rfr/v1/devices/Desk_A/audit", good[0].to_bytes(), "is not valid"),
        (topic + "/extra", good[0].to_bytes(), "not an audit or checkpoint topic"),
        (topic, unsealed.to_bytes(), "unsigned"),
        (audit_topic(stranger.device_id), stranger.event().to_bytes(), "not registered"),
        (checkpoint_topic(desk.device_id), forged_cp.to_bytes(), "not signed by the device"),
        (topic, json.dumps({**good[0].to_dict(), "v": 7}).encode(), "schema version"),
    ]
    publisher(topic, good[0].to_bytes())
    for t, payload, _ in bad[:5]:
        publisher(t, payload)
    publisher(topic, good[1].to_bytes())
    for t, payload, _ in bad[5:]:
        publisher(t, payload)
    publisher(topic, good[2].to_bytes())
    publisher(topic, good[1].to_bytes())  # replayed: counted, never stored twice

    assert wait_for(lambda: store.count() == 3 and ingest.rejected == len(bad) and ingest.duplicates == 1)
    reasons = [r["reason"] for r in reversed(store.rejections())]
    for (_, _, expected), reason in zip(bad, reasons, strict=True):
        assert expected in reason
    assert store.rejections(limit=100)[-2]["size"] == MAX_PAYLOAD_BYTES + 1
    assert {r["event_id"] for r in store.query()} == {e.event_id for e in good}
    assert store.head(desk.device_id).contiguous_seq == 3


def test_events_published_while_central_is_down_arrive_later(mqtt_settings, publisher, tmp_path, desk) -> None:
    store = AuditStore(tmp_path / "queued.db")
    registry = RegistryStore(store.url)
    registry.register_device(desk.device_id, desk.public_hex)
    registry.close()
    first = AuditIngest(mqtt_settings, store, command_key=COMMAND_KEY)
    first.start()
    assert first.wait_connected(10)
    first.stop()
    queued = [desk.event() for _ in range(3)]
    for event in queued:
        publisher(audit_topic(desk.device_id), event.to_bytes())
    second = AuditIngest(mqtt_settings, store, command_key=COMMAND_KEY)
    second.start()
    try:
        assert wait_for(lambda: store.count() == 3)
        assert {r["event_id"] for r in store.query()} == {e.event_id for e in queued}
    finally:
        second.stop()
        store.close()


def test_shared_subscription_workers_store_each_event_once(database_url, mosquitto, publisher) -> None:
    group = f"g{next(_ids)}"
    stores = [AuditStore(database_url) for _ in range(3)]
    writers = [ChainWriter(f"desk-share-{i}") for i in range(4)]
    registry = RegistryStore(database_url)
    for w in writers:
        registry.register_device(w.device_id, w.public_hex)
    registry.close()
    workers = [AuditIngest(CentralMqttSettings(host=mosquitto.host, port=mosquitto.port, client_id=f"{group}-{i}"),
                           s, command_key=COMMAND_KEY, shared_group=group) for i, s in enumerate(stores)]
    for w in workers:
        w.start()
    try:
        assert all(w.wait_connected(10) for w in workers)
        events = [w.event(n=i) for i in range(50) for w in writers]
        for e in events:
            publisher(audit_topic(e.device_id), e.to_bytes())
        for e in events[::7]:  # some resent: they may land on another worker
            publisher(audit_topic(e.device_id), e.to_bytes())
        for w in writers:
            publisher(checkpoint_topic(w.device_id), w.checkpoint().to_bytes())
        assert wait_for(lambda: stores[0].count() == 200, timeout=30)
        assert wait_for(lambda: sum(w.received for w in workers) == 200 + len(events[::7]) + 4)
        assert sum(w.stored for w in workers) == 200
        assert sum(1 for w in workers if w.stored) >= 2  # the load really was shared
        heads = stores[0].heads()
        assert [(h.contiguous_seq, h.checkpoint_seq) for h in heads] == [(50, 50)] * 4
        assert stores[0].findings() == []
    finally:
        for w in workers:
            w.stop()
        for s in stores:
            s.close()


@pytest.fixture
def refusing_broker(tmp_path) -> Iterator[tuple[str, int]]:
    """A real Mosquitto that admits no anonymous client: it answers CONNECT with "Not authorized"."""
    tmp_path.chmod(0o777)
    broker = Broker(host="127.0.0.1", port=free_port(), workdir=tmp_path, allow_anonymous=False)
    broker.start()
    yield broker.host, broker.port
    broker.stop()


def test_refused_connection_is_not_connected(refusing_broker, store, caplog: pytest.LogCaptureFixture) -> None:
    host, port = refusing_broker
    ingest = AuditIngest(CentralMqttSettings(host=host, port=port), store, command_key=COMMAND_KEY)
    ingest.start()
    try:
        assert ingest.wait_connected(2) is False
        assert ingest.connected is False
        assert "refused central's connection: Not authorized" in caplog.text
    finally:
        ingest.stop()
