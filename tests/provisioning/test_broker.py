"""A real Mosquitto running the generated configuration: who may connect, publish and read what."""

from __future__ import annotations

import itertools
import ssl
import time

import pytest

from core.topics import (
    ack_topic,
    audit_topic,
    checkpoint_topic,
    fleet_command_topic,
    library_announce_topic,
    peer_review_outcome_topic,
    peer_review_request_topic,
)
from devicekeys.tls import client_context
from provisioning.__main__ import main
from provisioning.ca import CaLayout, init_ca
from provisioning.device import DevicePki
from tests.provisioning.fleet import Probe, TlsBroker, enrol

NOT_AUTHORIZED = 135
ACCEPTED = (0, 16)  # success; "no matching subscribers" is a success too
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def desks(fleet_broker: TlsBroker) -> dict[str, DevicePki]:
    root = fleet_broker.ca_dir.parent
    return {d: enrol(fleet_broker.ca_dir, root / d, d) for d in ("desk-a", "desk-b")}


def _device(broker: TlsBroker, pki: DevicePki, client_id: str | None = None) -> Probe:
    probe = Probe.for_files(broker.devices.port, pki.ca, pki.cert, pki.key, client_id or f"probe-{next(_ids)}")
    assert probe.connect(), broker.log[-2000:]
    return probe


@pytest.fixture
def central(fleet_broker: TlsBroker):
    layout = CaLayout(fleet_broker.ca_dir)
    probe = Probe.for_files(fleet_broker.central.port, layout.bundle, layout.central_cert, layout.central_key,
                            f"central-{next(_ids)}")
    assert probe.connect(), fleet_broker.log[-2000:]
    probe.subscribe("rfr/v1/devices/#")
    yield probe
    probe.close()


def test_a_device_publishes_under_its_own_topics_and_central_receives(fleet_broker, desks, central):
    a = _device(fleet_broker, desks["desk-a"])
    try:
        assert a.publish(audit_topic("desk-a"), b"event") == 0
        assert a.publish(checkpoint_topic("desk-a"), b"checkpoint") == 0
        assert central.received() == [(audit_topic("desk-a"), b"event"), (checkpoint_topic("desk-a"), b"checkpoint")]
    finally:
        a.close()


def test_device_a_cannot_publish_as_device_b_nor_write_acks(fleet_broker, desks, central):
    a = _device(fleet_broker, desks["desk-a"])
    try:
        assert a.publish(audit_topic("desk-b"), b"forged") == NOT_AUTHORIZED
        assert a.publish(ack_topic("desk-a"), b"self-ack") == NOT_AUTHORIZED
        assert a.publish(library_announce_topic(), b"fake library") == NOT_AUTHORIZED
        assert a.publish(peer_review_request_topic("desk-b"), b"b asks") == NOT_AUTHORIZED
        assert a.publish(peer_review_outcome_topic("desk-a"), b"approved myself") == NOT_AUTHORIZED
        assert central.received() == []
    finally:
        a.close()


def test_device_a_reads_its_own_acks_commands_and_the_announcement_but_never_bs(fleet_broker, desks, central):
    a = _device(fleet_broker, desks["desk-a"])
    try:
        a.subscribe(ack_topic("desk-a"), ack_topic("desk-b"), "rfr/v1/acks/#", "rfr/v1/devices/#",
                    "rfr/v1/peer-review/desk-b/#", peer_review_outcome_topic("desk-a"), library_announce_topic(),
                    fleet_command_topic("desk-b"), "rfr/v1/fleet/#")
        b = _device(fleet_broker, desks["desk-b"])
        try:
            assert b.publish(audit_topic("desk-b"), b"b's event") == 0
        finally:
            b.close()
        assert central.publish(ack_topic("desk-b"), b"ack for b") == 0
        assert central.publish(peer_review_outcome_topic("desk-b"), b"b's review") == 0
        assert central.publish(peer_review_outcome_topic("desk-a"), b"a's review") == 0
        assert central.publish(ack_topic("desk-a"), b"ack for a") == 0
        assert central.publish(library_announce_topic(), b"library v2") == 0
        assert central.publish(fleet_command_topic("desk-b"), b"wipe desk-b") == 0
        assert central.publish(fleet_command_topic("desk-a"), b"wipe desk-a") == 0
        got = a.received(wait=1.5)
        # Each of A's messages arrives once per matching subscription; B's command never arrives.
        assert sorted(got) == sorted([(ack_topic("desk-a"), b"ack for a")] * 2
                                     + [(peer_review_outcome_topic("desk-a"), b"a's review"),
                                        (library_announce_topic(), b"library v2"),
                                        (library_announce_topic(), b"library v2"),
                                        (fleet_command_topic("desk-a"), b"wipe desk-a")])
    finally:
        a.close()


def test_a_device_cannot_take_over_another_devices_session_by_client_id(fleet_broker, desks):
    b = _device(fleet_broker, desks["desk-b"], client_id="appliance-desk-b")
    try:
        a = _device(fleet_broker, desks["desk-a"], client_id="appliance-desk-b")
        try:
            time.sleep(1.0)
            assert not b.disconnected.is_set()  # the broker named A's session "desk-a", not B's
            assert b.publish(audit_topic("desk-b"), b"still here") in ACCEPTED
        finally:
            a.close()
    finally:
        b.close()


def test_a_certificate_from_an_unknown_ca_cannot_connect(fleet_broker, tmp_path):
    rogue = init_ca(tmp_path / "rogue", organisation="Rogue", broker_names=["127.0.0.1"]).ca_dir
    pki = enrol(rogue, tmp_path / "desk-a", "desk-a")  # same name as a real desk
    context = client_context(CaLayout(fleet_broker.ca_dir).bundle, pki.cert, pki.key)  # trusts the real broker
    probe = Probe(fleet_broker.devices.port, context, "rogue")
    try:
        assert not probe.connect(timeout=3)
        assert not probe.connected.is_set()
    finally:
        probe.close()


def test_no_certificate_cannot_connect(fleet_broker):
    context = ssl.create_default_context(cafile=str(CaLayout(fleet_broker.ca_dir).bundle))
    probe = Probe(fleet_broker.devices.port, context, "anonymous")
    try:
        assert not probe.connect(timeout=3)
    finally:
        probe.close()


def test_a_revoked_device_cannot_connect_after_the_crl_is_reloaded(fleet_broker, capsys):
    pki = enrol(fleet_broker.ca_dir, fleet_broker.ca_dir.parent / "desk-gone", "desk-gone")
    first = _device(fleet_broker, pki)
    first.close()
    assert fleet_broker.process is not None
    code = main(["revoke", "--ca-dir", str(fleet_broker.ca_dir), "--device-id", "desk-gone",
                 "--broker-dir", str(fleet_broker.workdir), "--reload-pid", str(fleet_broker.process.pid)])
    assert code == 0
    assert "Revoked 1 certificate(s) of desk-gone" in capsys.readouterr().out
    time.sleep(0.5)  # SIGHUP is handled in the broker's next loop
    again = Probe.for_files(fleet_broker.devices.port, pki.ca, pki.cert, pki.key, "desk-gone-again")
    try:
        assert not again.connect(timeout=3)
    finally:
        again.close()
    # The rest of the fleet is unaffected (the CRL is valid, not expired).
    other = enrol(fleet_broker.ca_dir, fleet_broker.ca_dir.parent / "desk-stays", "desk-stays")
    _device(fleet_broker, other).close()


def test_a_desk_with_a_tpm_sealed_key_syncs_its_audit_log_to_central_over_mutual_tls(
        fleet_broker, swtpm, tmp_path, monkeypatch):
    """The real appliance sender and central ingest, configured only through their settings' TLS fields."""
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
    from tests.appliance.test_sync import wait_until
    from tests.fleet_key import CENTRAL_PUBLIC, COMMAND_KEY

    monkeypatch.setenv("TPM2TOOLS_TCTI", swtpm.tcti)  # how the desk finds its TPM
    pki = enrol(fleet_broker.ca_dir, fleet_broker.ca_dir.parent / "desk-tpm", "desk-tpm", tpm=swtpm)
    assert not pki.key.exists()  # sealed: no key file for paho; it is unsealed into memory
    layout = CaLayout(fleet_broker.ca_dir)
    store = AuditStore(tmp_path / "central.db")
    ingest = AuditIngest(CentralMqtt(host="127.0.0.1", port=fleet_broker.central.port, client_id="central-e2e",
                                     ca_file=layout.bundle, cert_file=layout.central_cert,
                                     key_file=layout.central_key), store, command_key=COMMAND_KEY)
    outbox = Outbox(DeviceDatabase(tmp_path / "device"))
    registry = RegistryStore(store.url)
    registry.register_device("desk-tpm", public_key_hex(outbox.public_key))
    registry.close()
    publisher = CentralLink(DeskMqttSettings(host="127.0.0.1", port=fleet_broker.devices.port, ca_file=pki.ca,
                                            cert_file=pki.cert, key_file=pki.key), "desk-tpm", outbox,
                            central_key=CENTRAL_PUBLIC)
    ingest.start()
    publisher.start()
    try:
        assert ingest.wait_connected(10), fleet_broker.log[-2000:]
        assert publisher.wait_connected(10), fleet_broker.log[-2000:]
        log = AuditLog("desk-tpm", outbox)
        for i in range(3):
            log.record("search", "pc1", "candidates_shown", candidates=i)
        assert wait_until(lambda: outbox.depth() == 0)
        assert sorted(r["seq"] for r in store.query(limit=10)) == [1, 2, 3]
    finally:
        publisher.stop()
        ingest.stop()
        store.close()


def test_tls_settings_must_come_together():
    from pydantic import ValidationError

    from appliance.settings import DeskMqttSettings

    with pytest.raises(ValidationError, match="give ca_file, cert_file and key_file together"):
        DeskMqttSettings(ca_file="ca.pem")
