"""No single message can stop central's ingest, and a store failure still acknowledges nothing.

Against a real Mosquitto and both databases: poison messages from one desk, between its good
ones and another desk's, are each refused with a recorded rejection and acknowledged once, and
every good event from every desk is stored. With the database locked, nothing is acknowledged,
to the broker or to the desk, and everything arrives once the lock is gone.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from central.__main__ import main as central_main
from central.audit.store import AuditStore
from central.fleet.registry_store import RegistryStore
from central.ingest.mqtt import AuditIngest
from central.settings import CentralMqttSettings
from core.audit import chain
from core.audit.ack import Ack
from core.events import AuditEvent
from core.topics import ack_topic, audit_topic, checkpoint_topic, health_topic, peer_review_request_topic
from testbed.chain_writer import ChainWriter
from tests.audit_support import wait_for
from tests.fleet_key import CENTRAL_PUBLIC, COMMAND_KEY

_ids = itertools.count(1)
NESTED = b"[" * 16384  # raised RecursionError in the strict decoder before it capped nesting


class AckSpy:
    """Listens on devices' ack topics as the desks would, keeping each device's newest ack (checked as central's)."""

    def __init__(self, broker) -> None:
        self.newest: dict[str, Ack] = {}
        self.count = 0
        self._client = Client(CallbackAPIVersion.VERSION2, client_id=f"ack-spy-{next(_ids)}",
                              protocol=MQTTProtocolVersion.MQTTv5)
        self._client.on_message = lambda c, u, m: self._take(m.payload)
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()

    def _take(self, payload: bytes) -> None:
        ack = Ack.from_signed(payload, CENTRAL_PUBLIC)
        self.newest[ack.device_id] = ack
        self.count += 1

    def watch(self, device: str) -> None:
        self._client.subscribe(ack_topic(device), qos=1)
        wait_for(lambda: False, 0.3)  # the subscription is in place before anything is published

    def through(self, device: str) -> int:
        ack = self.newest.get(device)
        return -1 if ack is None else ack.events_through

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def acks(mosquitto) -> Iterator[AckSpy]:
    spy = AckSpy(mosquitto)
    yield spy
    spy.close()


def heartbeat(device: str, **over: object) -> bytes:
    values: dict[str, object] = dict(
        v=1, device_id=device, sent_at=datetime.now(UTC).isoformat(), interval_s=60.0, software_version="0.1.0",
        library_version=1, embedder_id="mobilefacenet@1", disk_free_bytes=5, disk_total_bytes=100,
        memory_available_bytes=None, memory_total_bytes=None, outbox_depth=0, since_last_sync_s=None,
        clock_offset_s=None, key_protection="file")
    values.update(over)
    return json.dumps(values).encode()


def seq_too_big(writer: ChainWriter) -> bytes:
    """A sealed-looking event whose sequence number no database column holds: the store raised on it (an
    OverflowError in SQLite, a DataError in PostgreSQL) and the whole batch came back for ever."""
    event = chain.seal(AuditEvent(device_id=writer.device_id, seq=2**63, type="search", actor="pc1",
                                  outcome="candidates_shown"), writer.head)
    return event.to_bytes()


def test_poison_messages_are_refused_once_and_every_good_event_from_every_desk_is_stored(
        database_url, mosquitto, publisher, acks) -> None:
    store = AuditStore(database_url)
    registry = RegistryStore(database_url)
    desk_a, desk_b = ChainWriter(f"desk-poison-a{next(_ids)}"), ChainWriter(f"desk-poison-b{next(_ids)}")
    for writer in (desk_a, desk_b):
        registry.register_device(writer.device_id, writer.public_hex)
    acks.watch(desk_a.device_id)
    ingest = AuditIngest(CentralMqttSettings(host=mosquitto.host, port=mosquitto.port,
                                             client_id=f"central-poison-{next(_ids)}"), store, command_key=COMMAND_KEY)
    ingest.start()
    try:
        assert ingest.wait_connected(10)
        a, b = desk_a.device_id, desk_b.device_id
        poison = [
            (audit_topic(a), seq_too_big(desk_a)),
            (audit_topic(a), NESTED),
            (health_topic(a), heartbeat(a, disk_free_bytes=2**64)),  # a number no column holds
            (health_topic(a), NESTED),
            (peer_review_request_topic(a), NESTED),
        ]
        good = []
        for topic, payload in poison:
            for writer in (desk_a, desk_b):
                event = writer.event()
                good.append(event)
                publisher(audit_topic(writer.device_id), event.to_bytes())
            publisher(topic, payload)
        for writer in (desk_a, desk_b):
            event = writer.event()
            good.append(event)
            publisher(audit_topic(writer.device_id), event.to_bytes())
            publisher(checkpoint_topic(writer.device_id), writer.checkpoint().to_bytes())
        publisher(health_topic(b), heartbeat(b))

        assert wait_for(lambda: store.count() == len(good), timeout=30), store.rejections()
        assert {r["event_id"] for r in store.query(limit=100)} == {e.event_id for e in good}
        heads = sorted([(a, 6, 6), (b, 6, 6)])
        assert wait_for(lambda: [(h.device_id, h.contiguous_seq, h.checkpoint_seq) for h in store.heads()] == heads)
        assert wait_for(lambda: ingest.rejected == len(poison))
        # Acknowledged to the broker: a poison message is not delivered (and refused) a second time.
        wait_for(lambda: False, 1.5)
        reasons = [r["reason"] for r in store.rejections()]
        assert len(reasons) == len(poison) == ingest.rejected, reasons
        assert sum("could not be handled" in r for r in reasons) == 2  # the too-big seq and the heartbeat
        assert sum("nested more than" in r or "the limit is" in r for r in reasons) == 3
        # The desk's chain ack covers all its good events.
        assert wait_for(lambda: acks.through(a) == 6, timeout=10)
    finally:
        ingest.stop()
        registry.close()
        store.close()


def test_a_locked_database_acknowledges_nothing_and_everything_arrives_once_it_is_free(
        tmp_path: Path, mosquitto, publisher, acks) -> None:
    path = tmp_path / "central.db"
    store = AuditStore(path)
    store._db.execute("PRAGMA busy_timeout = 200")  # fail fast while locked, instead of waiting 30 s
    registry = RegistryStore(path)
    desk = ChainWriter(f"desk-locked-{next(_ids)}")
    registry.register_device(desk.device_id, desk.public_hex)
    acks.watch(desk.device_id)
    ingest = AuditIngest(CentralMqttSettings(host=mosquitto.host, port=mosquitto.port,
                                             client_id=f"central-locked-{next(_ids)}"), store, command_key=COMMAND_KEY)
    lock = sqlite3.connect(path, isolation_level=None)
    ingest.start()
    try:
        assert ingest.wait_connected(10)
        lock.execute("BEGIN IMMEDIATE")  # another writer holds the database: every write by the ingest fails
        events = [desk.event() for _ in range(3)]
        publisher(audit_topic(desk.device_id), events[0].to_bytes())
        publisher(audit_topic(desk.device_id), seq_too_big(desk))
        for event in events[1:]:
            publisher(audit_topic(desk.device_id), event.to_bytes())
        wait_for(lambda: False, 3.0)
        assert store.count() == 0 and store.rejection_count() == 0
        assert acks.count == 0, "an ack was sent for events that were not stored"
        lock.execute("ROLLBACK")
        # Unacknowledged, the broker delivers the batch again: stored now, the poison refused once.
        assert wait_for(lambda: store.count() == 3, timeout=20)
        assert wait_for(lambda: acks.through(desk.device_id) == 3, timeout=10)
        assert acks.newest[desk.device_id].head_hash == events[-1].hash
        wait_for(lambda: False, 1.5)
        assert store.rejection_count() == 1 and "could not be handled" in store.rejections()[0]["reason"]
    finally:
        lock.close()
        ingest.stop()
        registry.close()
        store.close()


def test_central_refuses_to_start_ingest_without_its_command_key(tmp_path: Path, capsys) -> None:
    config = tmp_path / "central.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[mqtt]\nhost = "127.0.0.1"\nport = 1\n'
                      '[web]\nsecret_key = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"\n')
    assert central_main(["ingest", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("central: [fleet] command_key is not set") and "\n" not in err
