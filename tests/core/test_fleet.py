"""The fleet wire models: strict heartbeats, and signed commands a desk can check on its own."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.errors import WireFormatError
from core.fleet import CommandRefused, FleetCommand, Heartbeat, NonceLedger
from core.topics import device_from_health_topic, fleet_command_topic, health_topic

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def beat(**over) -> Heartbeat:
    values = dict(device_id="desk-01", sent_at=NOW.isoformat(), interval_s=60.0, software_version="0.1.0",
                  library_version=3, embedder_id="arcface-r100@1", disk_free_bytes=5, disk_total_bytes=100,
                  memory_available_bytes=None, memory_total_bytes=None, outbox_depth=0, since_last_sync_s=1.5,
                  clock_offset_s=None, key_protection="tpm")
    values.update(over)
    return Heartbeat(**values)


def test_a_heartbeat_round_trips_and_parsing_is_strict():
    b = beat()
    assert Heartbeat.from_bytes(b.to_bytes()) == b
    assert b.disk_free_fraction == 0.05
    obj = json.loads(b.to_bytes())
    with pytest.raises(WireFormatError, match="fields wrong"):
        Heartbeat.from_bytes(json.dumps({**obj, "image": "x"}).encode())
    with pytest.raises(WireFormatError, match="Key protection"):
        Heartbeat.from_bytes(json.dumps({**obj, "key_protection": "none"}).encode())
    with pytest.raises(WireFormatError, match="non-negative integer"):
        Heartbeat.from_bytes(json.dumps({**obj, "outbox_depth": -1}).encode())
    with pytest.raises(WireFormatError, match="limit"):
        Heartbeat.from_bytes(b" " * 10000)
    with pytest.raises(WireFormatError, match="not valid JSON"):
        Heartbeat.from_bytes(b'{"v": NaN}')


def test_health_and_command_topics():
    assert health_topic("desk-01") == "rfr/v1/devices/desk-01/health"
    assert device_from_health_topic("rfr/v1/devices/desk-01/health") == "desk-01"
    with pytest.raises(WireFormatError):
        device_from_health_topic("rfr/v1/devices/desk-01/audit")
    assert fleet_command_topic("desk-01") == "rfr/v1/fleet/commands/desk-01"


def test_a_signed_wipe_verifies_only_for_its_device_its_key_and_its_time():
    central, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    cmd = FleetCommand.from_bytes(FleetCommand.sign(central, "desk-01", "wipe", now=NOW).to_bytes())
    cmd.verify(central.public_key(), device_id="desk-01", now=NOW + timedelta(minutes=1))
    with pytest.raises(CommandRefused, match="not this device"):
        cmd.verify(central.public_key(), device_id="desk-02", now=NOW)
    with pytest.raises(CommandRefused, match="not signed by central"):
        FleetCommand.sign(forger, "desk-01", "wipe", now=NOW).verify(central.public_key(), device_id="desk-01",
                                                                     now=NOW)
    with pytest.raises(CommandRefused, match="stale or replayed"):
        cmd.verify(central.public_key(), device_id="desk-01", now=NOW + timedelta(hours=1))
    tampered = FleetCommand(**{**cmd.__dict__, "device_id": "desk-02"})
    with pytest.raises(CommandRefused, match="not signed"):
        tampered.verify(central.public_key(), device_id="desk-02", now=NOW)
    ledger = NonceLedger()
    ledger.check_and_add(cmd, NOW)
    with pytest.raises(CommandRefused, match="already used"):
        ledger.check_and_add(cmd, NOW + timedelta(seconds=5))


def test_a_nonce_ledger_on_disk_refuses_a_replay_after_a_restart(tmp_path):
    key = Ed25519PrivateKey.generate()
    command = FleetCommand.sign(key, "desk-01", "wipe")
    NonceLedger(path=tmp_path / "nonces.json").check_and_add(command)
    with pytest.raises(CommandRefused, match="already used"):
        NonceLedger(path=tmp_path / "nonces.json").check_and_add(command)


def test_an_unreadable_nonce_file_is_started_afresh_rather_than_refusing_every_command(tmp_path):
    (tmp_path / "nonces.json").write_text("{not json")
    command = FleetCommand.sign(Ed25519PrivateKey.generate(), "desk-01", "wipe")
    NonceLedger(path=tmp_path / "nonces.json").check_and_add(command)
    assert command.nonce in (tmp_path / "nonces.json").read_text()


def test_a_heartbeat_names_the_libraries_held_and_an_old_heartbeat_without_them_still_reads() -> None:
    from core.fleet import Heartbeat

    body = {"device_id": "desk-001", "sent_at": "2026-12-04T00:00:00+00:00", "interval_s": 60.0,
            "software_version": "1", "library_version": 3, "embedder_id": "e@1", "disk_free_bytes": 1,
            "disk_total_bytes": 2, "memory_available_bytes": None, "memory_total_bytes": None, "outbox_depth": 0,
            "since_last_sync_s": None, "clock_offset_s": None, "key_protection": "file"}
    held = Heartbeat(**body, libraries=(("national", 3), ("op-kestrel", 1)))
    assert Heartbeat.from_bytes(held.to_bytes()) == held
    old = Heartbeat(**body).to_dict()
    del old["libraries"]
    assert Heartbeat.from_bytes(json.dumps(old).encode()).libraries == ()
    with pytest.raises(WireFormatError):
        Heartbeat(**body, libraries=(("../x", 1),))


def test_a_rekey_carries_the_new_key_under_the_signature_and_only_a_rekey_carries_one():
    from core.fleet import REKEY_WINDOW, key_fingerprint, public_key_raw_hex

    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    rekey = FleetCommand.sign(old, "desk-01", "rekey", now=NOW, new_key=new.public_key())
    assert FleetCommand.from_bytes(rekey.to_bytes()) == rekey
    assert rekey.new_key == public_key_raw_hex(new.public_key()) and len(key_fingerprint(new.public_key())) == 16
    rekey.verify(old.public_key(), device_id="desk-01", now=NOW + REKEY_WINDOW - timedelta(minutes=1),
                 window=REKEY_WINDOW)
    swapped = json.loads(rekey.to_bytes())
    swapped["new_key"] = public_key_raw_hex(Ed25519PrivateKey.generate().public_key())  # another key slipped in
    with pytest.raises(CommandRefused, match="not signed"):
        FleetCommand.from_bytes(json.dumps(swapped).encode()).verify(old.public_key(), device_id="desk-01", now=NOW)
    for wrong in ({"command": "wipe"}, {"new_key": None}, {"new_key": "AB" * 32},
                  {"since": NOW.isoformat()}):
        body = {**json.loads(rekey.to_bytes()), **wrong}
        with pytest.raises(WireFormatError):
            FleetCommand.from_bytes(json.dumps({k: v for k, v in body.items() if v is not None}).encode())
    # A wipe's and a resend's wire form and signed statement are unchanged: no new_key field.
    assert "new_key" not in json.loads(FleetCommand.sign(old, "desk-01", "wipe", now=NOW).to_bytes())
