"""The desk believes only acks central signed for it that match its own log; nothing pending is ever lost.

A real Mosquitto, the desk's real outbox and ``CentralLink``, and central's real ingest. While
central is away, acks are published on the desk's ack topic by someone who can publish there
(what a stolen central certificate or the broker's administrator could do): unsigned, signed by
another key, signed for another desk, past what the desk has logged, with the wrong chain hash,
a replay of an older one, and junk. None deletes anything or stops the link; when central comes
back, its real ack empties the outbox.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from pydantic import ValidationError

from appliance.comms.mqtt import CentralLink
from appliance.services.audit import AuditLog
from appliance.settings import ApplianceSettings, DeskMqttSettings
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox
from central.audit.store import AuditStore
from central.fleet.registry_store import RegistryStore
from central.ingest.mqtt import AuditIngest
from central.settings import CentralMqttSettings
from core.audit.ack import Ack
from core.audit.checkpoint import public_key_hex
from core.topics import ack_topic
from tests.audit_support import wait_for
from tests.fleet_key import CENTRAL_PUBLIC, COMMAND_KEY, FORGER

_ids = itertools.count(1)


@pytest.fixture
def publisher(mosquitto) -> Iterator[Client]:
    client = Client(CallbackAPIVersion.VERSION2, client_id=f"ack-forger-{next(_ids)}",
                    protocol=MQTTProtocolVersion.MQTTv5)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    yield client
    client.disconnect()
    client.loop_stop()


def send(client: Client, topic: str, payload: bytes) -> None:
    info = client.publish(topic, payload, qos=1)
    info.wait_for_publish(timeout=10)
    assert info.is_published()


def signed_ack(device: str, events_through: int, checkpoint_through: int, head_hash: str, *, key=COMMAND_KEY,
               issued: datetime | None = None) -> bytes:
    moment = (issued or datetime.now(UTC)).isoformat(timespec="microseconds")
    return Ack(device, events_through, checkpoint_through, head_hash, moment).signed(key)


def test_forged_out_of_range_and_replayed_acks_delete_nothing_and_central_acks_everything_later(
        tmp_path: Path, mosquitto, publisher) -> None:
    device = f"desk-acks-{next(_ids)}"
    outbox = Outbox(DeviceDatabase(tmp_path / "device"), checkpoint_every=1000)
    log = AuditLog(device, outbox)
    store = AuditStore(tmp_path / "central.db")
    registry = RegistryStore(store.url)
    registry.register_device(device, public_key_hex(outbox.public_key))
    central_settings = CentralMqttSettings(host=mosquitto.host, port=mosquitto.port, client_id=f"central-{device}")
    central = AuditIngest(central_settings, store, command_key=COMMAND_KEY)
    link = CentralLink(DeskMqttSettings(host=mosquitto.host, port=mosquitto.port), device, outbox,
                       central_key=CENTRAL_PUBLIC, resend_after_s=600, checkpoint_idle_s=0.2)
    central.start()
    link.start()
    try:
        assert central.wait_connected(10) and link.wait_connected(10)
        first = [log.record("search", "pc1", "candidates_shown") for _ in range(3)]
        assert wait_for(lambda: outbox.depth() == 0, timeout=15)  # central's signed acks are taken
        old_ack_at, old_through = link.last_ack_at, link.acked_through
        assert old_through == 3
        central.stop()  # from here, only the forger speaks on the ack topic

        pending = [log.record("search", "pc1", "candidates_shown") for _ in range(3)]
        assert wait_for(lambda: link.sent >= 6 and outbox.signed_seq == 6, timeout=10)
        depth = outbox.depth()  # three events and the idle checkpoint at 6
        head = pending[-1].hash
        assert head is not None
        topic = ack_topic(device)
        forged = [
            # What the desk used to believe: unsigned, "everything up to a million is stored".
            json.dumps({"v": 1, "device_id": device, "events_through": 10**6, "checkpoint_through": 10**6}).encode(),
            Ack.now(device, 6, 6, head).to_bytes(),  # the right numbers and hash, but unsigned
            signed_ack(device, 6, 6, head, key=FORGER),
            signed_ack("desk-someone-else", 6, 6, head),
            signed_ack(device, 10**6, 6, head),  # past what the desk has logged
            signed_ack(device, 6, 10**6, head),  # past what it has signed
            signed_ack(device, 6, 6, "0" * 64),  # central does not hold the events this desk logged
            signed_ack(device, 5, 6, head),  # the hash is of event 6, not 5
            b"[" * 16384,
            b"{not json",
        ]
        for payload in forged:
            send(publisher, topic, payload)
        # Replayed: an older ack central really signed (events 1-3). Harmless, and no sign of contact.
        send(publisher, topic, signed_ack(device, 3, 0, first[-1].hash or "", issued=datetime.now(UTC)
                                          - timedelta(hours=1)))
        assert wait_for(lambda: link.refused == len(forged), timeout=10), link.refused
        time.sleep(0.5)
        assert outbox.depth() == depth and [p.seq for p in outbox.pending()] == [4, 5, 6]
        assert (link.acked_through, link.last_ack_at) == (old_through, old_ack_at)
        assert link.connected

        # Central comes back (its persistent session held the events): its real ack empties the outbox.
        central = AuditIngest(central_settings, store, command_key=COMMAND_KEY)
        central.start()
        assert wait_for(lambda: outbox.depth() == 0, timeout=20)
        assert link.acked_through == 6 and link.last_ack_at is not None and link.last_ack_at > old_ack_at
        assert sorted(int(r["seq"]) for r in store.query(limit=10)) == [1, 2, 3, 4, 5, 6]
        assert outbox.verify().ok
    finally:
        link.stop()
        central.stop()
        registry.close()
        store.close()


def test_a_desk_without_centrals_public_key_does_not_start(tmp_path: Path, demo_library) -> None:
    with pytest.raises(ValidationError, match="fleet_command_public_key"):
        ApplianceSettings.model_validate({
            "device_id": "desk-nokey-01", "data_dir": tmp_path / "device",
            "library": {"path": demo_library[0], "key_file": demo_library[1]},
            "web": {"secret_key": "test-secret-key-0123456789"}})
