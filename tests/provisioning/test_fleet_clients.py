"""Central's /tuf client check on its own: which certificates and CRLs let a desk in (provisioning.fleet_clients)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from provisioning import crl
from provisioning.ca import IssuingCa
from provisioning.fleet_clients import ClientRefused, FleetClients
from provisioning.ledger import Ledger
from tests.fleet_tls import FleetPki


@pytest.fixture
def fleet(tmp_path):
    pki = FleetPki.create(tmp_path)
    return pki, pki.enrol(tmp_path / "desk", "desk-07", web=True)


def test_an_enrolled_desk_is_named_and_a_revoked_one_refused(fleet):
    pki, desk = fleet
    clients = FleetClients(pki.bundle, pki.crl)
    assert clients.check(desk.cert.read_text()) == "desk-07"
    pki.revoke("desk-07")
    with pytest.raises(ClientRefused, match="desk-07 is revoked"):
        clients.check(desk.cert.read_text())


def test_no_certificate_and_a_server_certificate_are_refused(fleet):
    pki, desk = fleet
    clients = FleetClients(pki.bundle, pki.crl)
    with pytest.raises(ClientRefused, match="no client certificate"):
        clients.check(None)
    with pytest.raises(ClientRefused, match="does not verify"):
        clients.check(desk.web_cert.read_text())  # the desk's web server certificate is not a client identity


def test_an_expired_or_foreign_crl_refuses_everyone(fleet, tmp_path):
    pki, desk = fleet
    clients = FleetClients(pki.bundle, pki.crl)
    ca = IssuingCa.load(pki.ca_dir)
    with Ledger(ca.layout.ledger) as ledger:
        crl.write_crl(ca, ledger, now=datetime.now(UTC) - timedelta(days=30))
    with pytest.raises(ClientRefused, match="expired"):
        clients.check(desk.cert.read_text())
    other = FleetPki.create(tmp_path / "other")
    pki.crl.write_bytes(other.crl.read_bytes())
    with pytest.raises(ClientRefused, match="not signed by the fleet CA"):
        clients.check(desk.cert.read_text())
    pki.crl.unlink()
    with pytest.raises(ClientRefused, match="cannot be read"):
        clients.check(desk.cert.read_text())


def test_a_desk_web_key_sealed_to_the_tpm_serves_https(tmp_path, swtpm, monkeypatch):
    """The desk's web key sealed to a (software) TPM is unsealed into memory for the server, as the broker key is."""
    import ssl

    from devicekeys.keys import protection
    from devicekeys.tls import server_context
    from tests.fleet_tls import handshake

    pki = FleetPki.create(tmp_path)
    desk = pki.enrol(tmp_path / "desk", "desk-08", web=True, tpm=swtpm)
    assert protection(desk.web_key).mode == "tpm" and not desk.web_key.exists()
    monkeypatch.setenv("TPM2TOOLS_TCTI", swtpm.tcti)  # how the desk's service finds its TPM
    handshake(server_context(desk.web_cert, desk.web_key), ssl.create_default_context(cafile=str(pki.bundle)))
