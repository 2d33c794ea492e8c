"""Key rotation on a live fleet: a new issuing CA from the offline root, and new broker and central certificates,
against the real Mosquitto with mutual TLS. No desk is re-enrolled; revocation keeps working for both issuers."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from devicekeys.tls import client_context
from provisioning.__main__ import main
from provisioning.ca import CaLayout, IssuingCa, init_ca, load_bundle
from provisioning.crl import load_crls
from provisioning.device import DevicePki
from provisioning.fleet_clients import ClientRefused, FleetClients
from provisioning.ledger import Ledger
from testbed.mosquitto import MOSQUITTO, wait_listening
from tests.provisioning.fleet import Probe, TlsBroker, enrol

_ids = itertools.count(1)


@pytest.fixture
def fleet() -> Iterator[TlsBroker]:
    """A fleet CA of its own (renewal changes it) and a broker started from broker-config's files.

    The folders are world-readable so the ``mosquitto`` user (the broker drops root) reaches them.
    """
    root = Path(tempfile.mkdtemp(prefix="rfr-renew-"))
    os.chmod(root, 0o755)
    ca = init_ca(root / "ca", organisation="Test Constabulary", broker_names=["127.0.0.1", "localhost"]).ca_dir
    server = TlsBroker(ca, root / "broker")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def _offline_root_key(fleet: TlsBroker) -> Path:
    """The root key as the team keeps it: moved off the CA folder to offline media."""
    layout = CaLayout(fleet.ca_dir)
    media = fleet.ca_dir.parent / "usb-stick"
    media.mkdir()
    moved = media / "root.key"
    shutil.move(layout.root_key, moved)
    return moved


def _connects(fleet: TlsBroker, pki: DevicePki) -> bool:
    probe = Probe.for_files(fleet.devices.port, pki.ca, pki.cert, pki.key, f"probe-{next(_ids)}")
    try:
        return probe.connect(timeout=3)
    finally:
        probe.close()


def _central_connects(fleet: TlsBroker) -> bool:
    layout = CaLayout(fleet.ca_dir)
    probe = Probe.for_files(fleet.central.port, layout.bundle, layout.central_cert, layout.central_key,
                            f"central-{next(_ids)}")
    try:
        return probe.connect(timeout=3)
    finally:
        probe.close()


def _issuer(pki: DevicePki) -> x509.Name:
    return x509.load_pem_x509_certificate(pki.cert.read_bytes()).issuer


def _served_serial(fleet: TlsBroker, pki: DevicePki) -> int:
    """The serial of the certificate the broker shows a desk (verified with the desk's own ca.pem)."""
    context = client_context(pki.ca, pki.cert, pki.key)
    with socket.create_connection(("127.0.0.1", fleet.devices.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _pid(fleet: TlsBroker) -> str:
    assert fleet.process is not None
    return str(fleet.process.pid)


def test_desks_enrolled_before_and_after_a_renewal_connect_and_revoked_ones_of_either_issuer_do_not(
        fleet, capsys):
    root = fleet.ca_dir.parent
    before, before_gone = (enrol(fleet.ca_dir, root / d, d) for d in ("desk-before", "desk-before-gone"))
    old_bundle = before.ca.read_bytes()
    root_key = _offline_root_key(fleet)

    assert main(["renew-issuing-ca", "--ca-dir", str(fleet.ca_dir), "--root-key", str(root_key),
                 "--broker-dir", str(fleet.workdir), "--reload-pid", _pid(fleet)]) == 0
    out = capsys.readouterr().out
    assert "desks enrolled before need nothing" in out and "reissue-server-certs" in out
    time.sleep(0.5)  # SIGHUP is handled in the broker's next loop
    after, after_gone = (enrol(fleet.ca_dir, root / d, d) for d in ("desk-after", "desk-after-gone"))

    assert _issuer(after) != _issuer(before)  # the new issuing CA signs new desks
    assert before.ca.read_bytes() == old_bundle  # the earlier desks were not touched
    assert len(load_bundle(after.ca)) == 3  # new issuing CA, the old one, the root
    for pki in (before, before_gone, after, after_gone):
        assert _connects(fleet, pki), (pki.cert, fleet.log[-2000:])
    assert _central_connects(fleet)  # central's certificate is still the old issuer's

    with Ledger(CaLayout(fleet.ca_dir).ledger) as ledger:
        ledger.revoke_device("desk-before-gone", datetime.now(UTC))
        ledger.revoke_device("desk-after-gone", datetime.now(UTC))
    assert main(["crl", "--ca-dir", str(fleet.ca_dir), "--broker-dir", str(fleet.workdir),
                 "--reload-pid", _pid(fleet)]) == 0
    time.sleep(0.5)
    crls = load_crls((fleet.workdir / "crl.pem").read_bytes())
    assert sorted(c.issuer.rfc4514_string() for c in crls) == sorted(
        n.rfc4514_string() for n in (_issuer(before), _issuer(after)))
    assert not _connects(fleet, before_gone)
    assert not _connects(fleet, after_gone)
    assert _connects(fleet, before) and _connects(fleet, after), fleet.log[-2000:]
    assert _central_connects(fleet)


def test_the_broker_refuses_desks_of_an_issuer_without_a_crl_in_the_file(fleet):
    """Why the old issuing key is kept: with only the new CA's CRL, Mosquitto refuses every earlier desk."""
    before = enrol(fleet.ca_dir, fleet.ca_dir.parent / "desk-before", "desk-before")
    assert main(["renew-issuing-ca", "--ca-dir", str(fleet.ca_dir), "--root-key", str(_offline_root_key(fleet)),
                 "--broker-dir", str(fleet.workdir), "--reload-pid", _pid(fleet)]) == 0
    time.sleep(0.5)
    assert _connects(fleet, before), fleet.log[-2000:]
    crl_file = fleet.workdir / "crl.pem"
    new_only = crl_file.read_bytes().split(b"-----END X509 CRL-----")[0] + b"-----END X509 CRL-----\n"
    assert len(load_crls(new_only)) == 1 and load_crls(new_only)[0].issuer != _issuer(before)
    crl_file.write_bytes(new_only)
    os.kill(int(_pid(fleet)), signal.SIGHUP)
    time.sleep(0.5)
    assert not _connects(fleet, before)


def test_reissued_broker_and_central_certificates_are_served_and_desks_of_both_issuers_verify_them(fleet, capsys):
    root = fleet.ca_dir.parent
    before = enrol(fleet.ca_dir, root / "desk-before", "desk-before")
    layout = CaLayout(fleet.ca_dir)
    old_server = x509.load_pem_x509_certificate(layout.server_cert.read_bytes())
    old_central = x509.load_pem_x509_certificate(layout.central_cert.read_bytes())
    assert main(["renew-issuing-ca", "--ca-dir", str(fleet.ca_dir), "--root-key", str(_offline_root_key(fleet)),
                 "--broker-dir", str(fleet.workdir), "--reload-pid", _pid(fleet)]) == 0
    time.sleep(0.5)
    after = enrol(fleet.ca_dir, root / "desk-after", "desk-after")

    assert main(["reissue-server-certs", "--ca-dir", str(fleet.ca_dir), "--broker-dir", str(fleet.workdir),
                 "--valid-days", "731"]) == 0  # a day longer than init-ca's: the test runs within its second
    assert "Desks need nothing" in capsys.readouterr().out
    server = x509.load_pem_x509_certificate(layout.server_cert.read_bytes())
    central = x509.load_pem_x509_certificate(layout.central_cert.read_bytes())
    assert server.subject == old_server.subject and central.subject == old_central.subject  # same names
    assert server.extensions.get_extension_for_class(x509.SubjectAlternativeName) == \
        old_server.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert server.not_valid_after_utc - old_server.not_valid_after_utc >= timedelta(days=1)
    assert server.issuer == IssuingCa.load(fleet.ca_dir).cert.subject != old_server.issuer
    assert server.public_key() != old_server.public_key()

    # The broker restarts on the same configuration with the new files.
    fleet.stop()
    fleet.process = subprocess.Popen([MOSQUITTO, "-c", str(fleet.workdir / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_listening(fleet.process, "127.0.0.1", [fleet.devices.port, fleet.central.port], lambda: fleet.log)
    # A desk enrolled before the renewal holds only the old issuing CA and the root: the broker's chain bridges.
    assert _served_serial(fleet, before) == server.serial_number
    assert _served_serial(fleet, after) == server.serial_number
    assert _connects(fleet, before) and _connects(fleet, after), fleet.log[-2000:]
    assert _central_connects(fleet), fleet.log[-2000:]


def test_reissued_certificates_are_loaded_on_sighup_without_a_restart(fleet):
    desk = enrol(fleet.ca_dir, fleet.ca_dir.parent / "desk-a", "desk-a")
    old = _served_serial(fleet, desk)
    assert main(["reissue-server-certs", "--ca-dir", str(fleet.ca_dir), "--broker-dir", str(fleet.workdir),
                 "--reload-pid", _pid(fleet)]) == 0
    time.sleep(0.5)
    new = x509.load_pem_x509_certificate(CaLayout(fleet.ca_dir).server_cert.read_bytes()).serial_number
    assert new != old and _served_serial(fleet, desk) == new
    assert _connects(fleet, desk) and _central_connects(fleet), fleet.log[-2000:]


def test_a_missing_or_wrong_root_key_changes_nothing_and_says_what_to_give(tmp_path, capsys):
    ca = init_ca(tmp_path / "ca", organisation="Test Constabulary", broker_names=["127.0.0.1"]).ca_dir
    other = init_ca(tmp_path / "other", organisation="Test Constabulary", broker_names=["127.0.0.1"]).ca_dir
    layout = CaLayout(ca)
    files = {p: p.read_bytes() for p in (layout.issuing_cert, layout.issuing_key, layout.bundle, layout.crl)
             if p.exists()}
    not_a_key = tmp_path / "notes.txt"
    not_a_key.write_text("root key is in the safe")
    cases = [(tmp_path / "nowhere" / "root.key", "does not exist: connect the offline media"),
             (CaLayout(other).root_key, "is not this fleet's root key"),
             (layout.issuing_key, "is not this fleet's root key"),
             (not_a_key, "is not a private key file")]
    for key, message in cases:
        code = main(["renew-issuing-ca", "--ca-dir", str(ca), "--root-key", str(key)])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert {p: p.read_bytes() for p in files} == files
    assert not layout.previous_dir.exists()


def test_central_lets_in_desks_of_both_issuers_and_refuses_the_revoked_of_each(tmp_path, capsys):
    ca = init_ca(tmp_path / "ca", organisation="Test Constabulary", broker_names=["127.0.0.1"]).ca_dir
    layout = CaLayout(ca)
    before = [enrol(ca, tmp_path / d, d) for d in ("desk-1", "desk-1-gone")]
    assert main(["renew-issuing-ca", "--ca-dir", str(ca), "--root-key", str(layout.root_key)]) == 0
    after = [enrol(ca, tmp_path / d, d) for d in ("desk-2", "desk-2-gone")]
    with Ledger(layout.ledger) as ledger:
        for gone in ("desk-1-gone", "desk-2-gone"):
            ledger.revoke_device(gone, datetime.now(UTC))
    assert main(["crl", "--ca-dir", str(ca)]) == 0
    clients = FleetClients(layout.bundle, layout.crl)  # what central's /tuf checks, read after the renewal
    for pki in (before[0], after[0]):
        assert clients.check(pki.cert.read_text()) == pki.cert.parent.parent.name
    for pki in (before[1], after[1]):
        with pytest.raises(ClientRefused, match="is revoked"):
            clients.check(pki.cert.read_text())
