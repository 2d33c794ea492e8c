"""The fleet CA, enrolment tokens, certificate issuing and installation on the device, including bad inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning import device, issue, tokens
from provisioning.ca import IssuingCa, init_ca, load_bundle
from provisioning.errors import BundleError, CaError, RequestError, TokenError
from provisioning.ledger import Ledger
from tests.provisioning.fleet import enrol


def _csr(key, name: str) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
    signed = builder.sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    return signed.public_bytes(serialization.Encoding.PEM)


def _ledger(ca_dir: Path) -> Ledger:
    return Ledger(IssuingCa.load(ca_dir).layout.ledger)


def test_init_ca_makes_a_root_an_issuing_ca_and_private_keys_only_the_owner_reads(ca_dir):
    ca = IssuingCa.load(ca_dir)
    issuing, root = load_bundle(ca.layout.bundle)
    issuing.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    assert issuing.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert isinstance(issuing.public_key(), ec.EllipticCurvePublicKey)
    assert ca.layout.root_key.parent.name == "offline-root"
    for key in (ca.layout.root_key, ca.layout.issuing_key, ca.layout.server_key, ca.layout.central_key):
        assert key.stat().st_mode & 0o777 == 0o600
    server = x509.load_pem_x509_certificate(ca.layout.server_cert.read_bytes())
    server.verify_directly_issued_by(issuing)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_init_ca_refuses_to_overwrite_an_existing_ca(ca_dir):
    before = (ca_dir / "issuing.key").read_bytes()
    with pytest.raises(CaError, match="already holds a fleet CA"):
        init_ca(ca_dir, organisation="Other", broker_names=["x"])
    assert (ca_dir / "issuing.key").read_bytes() == before


def test_a_good_request_gets_a_one_year_client_certificate_for_its_device(ca_dir, tmp_path):
    pki = enrol(ca_dir, tmp_path / "desk", "desk-01")
    cert = x509.load_pem_x509_certificate(pki.cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "desk-01"
    assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert timedelta(days=364) < cert.not_valid_after_utc - cert.not_valid_before_utc < timedelta(days=366)
    cert.verify_directly_issued_by(IssuingCa.load(ca_dir).cert)
    assert pki.key.stat().st_mode & 0o777 == 0o600  # no TPM given: the file fallback
    with _ledger(ca_dir) as ledger:
        assert [c.serial for c in ledger.certificates("desk-01")] == [cert.serial_number]


def test_tokens_are_stored_only_as_hashes(ca_dir):
    with _ledger(ca_dir) as ledger:
        token = tokens.new_token(ledger, "desk-01")
    assert token.encode() not in (ca_dir / "fleet.db").read_bytes()


def test_a_used_token_is_refused_and_issues_nothing(ca_dir, tmp_path):
    ca = IssuingCa.load(ca_dir)
    with _ledger(ca_dir) as ledger:
        token = tokens.new_token(ledger, "desk-01")
        pki, _ = device.keygen(tmp_path / "desk", "desk-01", None)
        issue.issue_device_certificate(ca, ledger, pki.csr.read_bytes(), token)
        with pytest.raises(TokenError, match="already used"):
            issue.issue_device_certificate(ca, ledger, pki.csr.read_bytes(), token)
        assert len(ledger.certificates("desk-01")) == 1


def test_an_expired_token_is_refused(ca_dir, tmp_path):
    ca = IssuingCa.load(ca_dir)
    made = datetime.now(UTC) - timedelta(hours=2)
    with _ledger(ca_dir) as ledger:
        token = tokens.new_token(ledger, "desk-01", valid_for=timedelta(hours=1), now=made)
        pki, _ = device.keygen(tmp_path / "desk", "desk-01", None)
        with pytest.raises(TokenError, match="expired"):
            issue.issue_device_certificate(ca, ledger, pki.csr.read_bytes(), token)
        assert ledger.certificates() == []


def test_an_unknown_token_and_a_token_for_centrals_name_are_refused(ca_dir, tmp_path):
    ca = IssuingCa.load(ca_dir)
    with _ledger(ca_dir) as ledger:
        pki, _ = device.keygen(tmp_path / "desk", "desk-01", None)
        with pytest.raises(TokenError, match="not known"):
            issue.issue_device_certificate(ca, ledger, pki.csr.read_bytes(), "made-up-token")
        with pytest.raises(TokenError, match="reserved"):
            tokens.new_token(ledger, "central", reserved=frozenset({ca.central_name}))


@pytest.mark.parametrize(("key", "message"), [
    (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RSAPublicKey"),
    (ed25519.Ed25519PrivateKey.generate(), "Ed25519PublicKey"),
    (ec.generate_private_key(ec.SECP384R1()), "EC secp384r1"),
])
def test_a_request_with_the_wrong_key_type_is_refused_and_the_token_survives(ca_dir, key, message):
    ca = IssuingCa.load(ca_dir)
    with _ledger(ca_dir) as ledger:
        token = tokens.new_token(ledger, "desk-01")
        with pytest.raises(RequestError, match=message):
            issue.issue_device_certificate(ca, ledger, _csr(key, "desk-01"), token)
        assert tokens.token_device(ledger, token) == "desk-01"  # not used up by a refused request
        assert ledger.certificates() == []


def test_a_request_for_another_device_id_is_refused(ca_dir):
    ca = IssuingCa.load(ca_dir)
    with _ledger(ca_dir) as ledger:
        token = tokens.new_token(ledger, "desk-01")
        with pytest.raises(RequestError, match="is for 'desk-02' but the token is for 'desk-01'"):
            issue.issue_device_certificate(ca, ledger, _csr(ec.generate_private_key(ec.SECP256R1()), "desk-02"),
                                           token)


def test_a_tampered_or_garbage_request_is_refused(ca_dir):
    ca = IssuingCa.load(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    good = x509.load_pem_x509_csr(_csr(key, "desk-01"))
    other = ec.generate_private_key(ec.SECP256R1())
    # Same subject and signature, someone else's public key: the signature no longer verifies.
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    mine = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    theirs = other.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    start = bytes(der).index(mine)
    der[start:start + len(mine)] = theirs
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with _ledger(ca_dir) as ledger:
        token = tokens.new_token(ledger, "desk-01")
        with pytest.raises(RequestError, match="signature does not verify"):
            issue.issue_device_certificate(ca, ledger, forged, token)
        with pytest.raises(RequestError, match="not a PEM CSR"):
            issue.issue_device_certificate(ca, ledger, b"-----BEGIN CERTIFICATE REQUEST-----\nxx\n", token)


def test_the_device_refuses_a_certificate_for_another_device(ca_dir, tmp_path):
    enrol(ca_dir, tmp_path / "desk-02", "desk-02")
    device.keygen(tmp_path / "desk-01", "desk-01", None)
    with pytest.raises(BundleError, match="is for 'desk-02', not this device"):
        device.install_bundle(tmp_path / "desk-01", "desk-01", tmp_path / "bundle-desk-02")
    assert not (tmp_path / "desk-01" / "pki" / "device.crt").exists()


def test_the_device_refuses_a_certificate_for_its_id_but_another_key(ca_dir, tmp_path):
    enrol(ca_dir, tmp_path / "desk-01", "desk-01")
    device.keygen(tmp_path / "desk-01", "desk-01", None)  # a new key: the installed certificate is for the old one
    with pytest.raises(BundleError, match="not for this device's key"):
        device.install_bundle(tmp_path / "desk-01", "desk-01", tmp_path / "bundle-desk-01")


def test_the_device_refuses_a_certificate_from_another_ca(ca_dir, tmp_path):
    rogue = init_ca(tmp_path / "rogue", organisation="Rogue", broker_names=["127.0.0.1"]).ca_dir
    enrol(rogue, tmp_path / "desk-01", "desk-01")
    (tmp_path / "bundle-desk-01" / "ca.pem").write_bytes((ca_dir / "ca.pem").read_bytes())
    with pytest.raises(BundleError, match="not issued by the fleet CA"):
        device.install_bundle(tmp_path / "desk-01", "desk-01", tmp_path / "bundle-desk-01")


@pytest.mark.parametrize("name", ["central", "central-ingest", "central-ingest-2", "central-ingest-command"])
def test_centrals_broker_identities_cannot_be_given_to_a_desk(ca_dir, name):
    # Without `reserved` (a caller other than the CLI) a desk could be enrolled as central's MQTT client id
    # and take over its persistent session on the broker.
    with _ledger(ca_dir) as ledger, pytest.raises(TokenError, match="reserved"):
        tokens.new_token(ledger, name)


def test_a_token_made_for_a_reserved_name_before_the_rule_issues_nothing(ca_dir, tmp_path):
    ca = IssuingCa.load(ca_dir)
    with _ledger(ca_dir) as ledger:
        moment = datetime.now(UTC)
        token = "old-token-for-central-ingest"
        with ledger.conn:  # as a ledger from before the rule would hold it
            ledger.conn.execute(
                "INSERT INTO tokens (token_hash, device_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (tokens._hash(token), "central-ingest", moment.isoformat(), (moment + timedelta(days=1)).isoformat()))
        pki, _ = device.keygen(tmp_path / "desk", "central-ingest", None)
        with pytest.raises(RequestError, match="reserved for central"):
            issue.issue_device_certificate(ca, ledger, pki.csr.read_bytes(), token)
        assert ledger.certificates() == []


def test_a_token_never_starts_with_a_hyphen_so_the_command_line_takes_it(ca_dir):
    # `issue --token -abc...` failed with "expected one argument" for about one token in 64.
    with _ledger(ca_dir) as ledger:
        made = [tokens.new_token(ledger, f"desk-{i:03d}") for i in range(400)]
    assert not [t for t in made if t.startswith("-")]
