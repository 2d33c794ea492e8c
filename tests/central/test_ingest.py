"""The ingest against a real Mosquitto: exactly-once storage, refusals, queued delivery."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from central.audit.store import AuditStore
from central.ingest.mqtt import AuditIngest
from central.settings import MqttSettings
from core.events import MAX_PAYLOAD_BYTES, AuditEvent
from core.topics import audit_topic
from tests.broker import Broker, free_port

_ids = itertools.count(1)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def mqtt_settings(mosquitto) -> MqttSettings:
    # A fresh client id per test: the broker's persistent sessions outlive a single test.
    return MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id=f"central-test-{next(_ids)}")


@pytest.fixture
def ingest(mqtt_settings: MqttSettings, store: AuditStore) -> Iterator[AuditIngest]:
    ingest = AuditIngest(mqtt_settings, store)
    ingest.start()
    assert ingest.wait_connected(10), "ingest did not connect to the test broker"
    yield ingest
    ingest.stop()


@pytest.fixture
def publisher(mosquitto) -> Iterator[Callable[[str, bytes], None]]:
    client = Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{next(_ids)}",
                    protocol=MQTTProtocolVersion.MQTTv5)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()

    def publish(topic: str, payload: bytes) -> None:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published()

    yield publish
    client.disconnect()
    client.loop_stop()


def test_event_published_twice_is_stored_once(ingest, publisher, store: AuditStore, make_event) -> None:
    event = make_event("desk-a")
    publisher(audit_topic("desk-a"), event.to_bytes())
    publisher(audit_topic("desk-a"), event.to_bytes())
    assert wait_for(lambda: ingest.received == 2)
    assert store.count() == 1
    assert ingest.duplicates == 1
    assert ingest.rejected == 0
    [row] = store.recent()
    assert row["event_id"] == event.event_id


def test_bad_messages_are_rejected_and_counted_and_ingest_carries_on(
    ingest, publisher, store: AuditStore, make_event
) -> None:
    impostor = make_event("desk-b")
    publisher(audit_topic("desk-a"), b"{not json")
    publisher(audit_topic("desk-a"), b"x" * (MAX_PAYLOAD_BYTES + 1))
    publisher(audit_topic("desk-a"), impostor.to_bytes())  # desk-a speaking for desk-b
    publisher("rfr/v1/devices/Desk_A/audit", make_event("desk-a").to_bytes())  # not a valid device id
    publisher("rfr/v1/devices/desk-a/audit/extra", make_event("desk-a").to_bytes())  # not matched: ignored
    good = make_event("desk-a")
    publisher(audit_topic("desk-a"), good.to_bytes())

    assert wait_for(lambda: store.count() == 1)
    assert ingest.rejected == 4
    assert store.rejection_count() == 4
    reasons = [r["reason"] for r in reversed(store.rejections())]
    assert "not valid JSON" in reasons[0]
    assert "limit" in reasons[1]
    assert "desk-b" in reasons[2] and "desk-a" in reasons[2]
    assert "Device id 'Desk_A' is not valid" in reasons[3]
    assert [r["size"] for r in reversed(store.rejections())][1] == MAX_PAYLOAD_BYTES + 1
    assert store.recent()[0]["event_id"] == good.event_id


def test_events_published_while_central_is_down_arrive_later(
    mqtt_settings: MqttSettings, publisher, tmp_path: Path, make_event
) -> None:
    store = AuditStore(tmp_path / "queued.db")
    first = AuditIngest(mqtt_settings, store)
    first.start()
    assert first.wait_connected(10)
    first.stop()

    queued = [make_event("desk-c") for _ in range(3)]
    for event in queued:
        publisher(audit_topic("desk-c"), event.to_bytes())

    second = AuditIngest(mqtt_settings, store)
    second.start()
    try:
        assert second.wait_connected(10)
        assert wait_for(lambda: store.count() == 3)
        assert {r["event_id"] for r in store.recent()} == {e.event_id for e in queued}
    finally:
        second.stop()
        store.close()


@pytest.fixture
def refusing_broker(tmp_path) -> Iterator[tuple[str, int]]:
    """A real Mosquitto that admits no anonymous client: it answers CONNECT with "Not authorized"."""
    tmp_path.chmod(0o777)
    broker = Broker(host="127.0.0.1", port=free_port(), workdir=tmp_path, allow_anonymous=False)
    broker.start()
    yield broker.host, broker.port
    broker.stop()


def test_refused_connection_is_not_connected(
    refusing_broker, store: AuditStore, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = refusing_broker
    ingest = AuditIngest(MqttSettings(host=host, port=port), store)
    ingest.start()
    try:
        assert ingest.wait_connected(2) is False
        assert ingest.connected is False
        assert "refused central's connection: Not authorized" in caplog.text
    finally:
        ingest.stop()


def test_event_round_trips_through_the_wire_format(make_event) -> None:
    event = make_event("desk-a", details={"candidates": 5})
    assert AuditEvent.from_bytes(event.to_bytes()) == event
