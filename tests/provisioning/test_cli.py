"""The technician's commands end to end: each step succeeds, says what to do next, and errors are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from provisioning.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_enrolment_from_new_ca_to_installed_certificate(tmp_path, capsys):
    ca, desk, bundle, brokerdir = tmp_path / "ca", tmp_path / "desk", tmp_path / "bundle", tmp_path / "broker"
    tuf_root = tmp_path / "1.root.json"
    tuf_root.write_text('{"signed": {"_type": "root"}}')

    code, out, _ = run(capsys, "init-ca", "--ca-dir", ca, "--organisation", "Test Constabulary",
                       "--broker-name", "broker.example", "--broker-name", "10.0.0.5")
    assert code == 0 and "Next: move" in out and "offline media" in out

    code, out, err = run(capsys, "new-token", "--ca-dir", ca, "--device-id", "desk-07", "--valid-hours", "2")
    token = out.strip()
    assert code == 0 and len(token) >= 32 and "device-keygen" in err

    code, out, _ = run(capsys, "device-keygen", "--data-dir", desk, "--device-id", "desk-07", "--no-tpm")
    assert code == 0 and "mode: file" in out and "send" in out
    assert (desk / "pki" / "device.key").stat().st_mode & 0o777 == 0o600

    code, out, _ = run(capsys, "issue", "--ca-dir", ca, "--csr", desk / "pki" / "device.csr", "--token", token,
                       "--tuf-root", tuf_root, "--out", bundle)
    assert code == 0 and "Issued certificate" in out and "device-install" in out
    assert sorted(p.name for p in bundle.iterdir()) == ["ca.pem", "device.crt", "tuf-root.json"]
    assert not list(bundle.glob("*.key"))  # the private key never left the desk

    code, out, _ = run(capsys, "device-install", "--data-dir", desk, "--device-id", "desk-07", "--bundle", bundle)
    assert code == 0 and 'cert_file = "' in out and "trusted_root" in out
    cert = x509.load_pem_x509_certificate((desk / "pki" / "device.crt").read_bytes())
    assert "CN=desk-07" in cert.subject.rfc4514_string()
    assert (desk / "pki" / "tuf-root.json").read_text() == tuf_root.read_text()

    code, out, _ = run(capsys, "broker-config", "--ca-dir", ca, "--out", brokerdir,
                       "--device-listener", "0.0.0.0:8883", "--central-listener", "127.0.0.1:8884", "--owner", "")
    assert code == 0 and "expired CRL locks out" in out
    conf = (brokerdir / "mosquitto.conf").read_text()
    for line in ("require_certificate true", "use_identity_as_username true", "allow_anonymous false",
                 f"crlfile {brokerdir / 'crl.pem'}", f"acl_file {brokerdir / 'acl'}", "listener 8883 0.0.0.0"):
        assert line in conf
    acl = (brokerdir / "acl").read_text()
    assert "pattern write rfr/v1/devices/%u/#" in acl and "user central" in acl

    code, out, _ = run(capsys, "key-protection", "--path", desk / "pki" / "device.key")
    assert code == 0 and "file (weaker than a TPM)" in out

    code, out, _ = run(capsys, "revoke", "--ca-dir", ca, "--device-id", "desk-07", "--broker-dir", brokerdir)
    assert code == 0 and "Revoked 1 certificate(s)" in out
    crl = x509.load_pem_x509_crl((brokerdir / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None


def test_errors_are_one_actionable_line_and_exit_2(tmp_path, capsys):
    ca, desk = tmp_path / "ca", tmp_path / "desk"
    run(capsys, "init-ca", "--ca-dir", ca, "--organisation", "T", "--broker-name", "127.0.0.1")
    _, out, _ = run(capsys, "new-token", "--ca-dir", ca, "--device-id", "desk-01")
    token = out.strip()
    run(capsys, "device-keygen", "--data-dir", desk, "--device-id", "desk-01", "--no-tpm")
    args = ("issue", "--ca-dir", ca, "--csr", desk / "pki" / "device.csr", "--token", token, "--out", tmp_path / "b")
    assert run(capsys, *args)[0] == 0

    code, out, err = run(capsys, *args)
    assert (code, out) == (2, "") and err.count("\n") == 1 and "already used" in err

    code, _, err = run(capsys, "new-token", "--ca-dir", tmp_path / "nowhere", "--device-id", "desk-02")
    assert code == 2 and "run `init-ca` first" in err

    code, _, err = run(capsys, "new-token", "--ca-dir", ca, "--device-id", "Desk/01")
    assert code == 2 and "is not valid" in err

    code, _, err = run(capsys, "revoke", "--ca-dir", ca, "--device-id", "desk-99")
    assert code == 2 and "no certificate was ever issued to desk-99" in err


def test_seal_key_moves_a_file_key_and_unseal_key_checks_it(tmp_path, capsys):
    source = tmp_path / "old.key"
    source.write_text("ab" * 32 + "\n")
    code, out, _ = run(capsys, "seal-key", "--path", tmp_path / "device.key", "--from", source, "--no-tpm",
                       "--remove-source")
    assert code == 0 and "protection file (weaker: no TPM)" in out and not source.exists()
    code, out, _ = run(capsys, "unseal-key", "--path", tmp_path / "device.key")
    assert code == 0 and "opens (file)" in out


def test_the_module_runs_as_a_command():
    result = subprocess.run([sys.executable, "-m", "provisioning", "--help"], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0 and "device-keygen" in result.stdout


def test_the_desk_web_certificate_is_issued_with_its_enrolment_and_serves_https(tmp_path, capsys):
    """device-keygen --web-name, issue --web-csr, device-install: the desk ends with a server certificate for its
    names, on a key of its own, that a client trusting the fleet CA accepts for those names only."""
    import ssl

    from devicekeys.tls import server_context
    from tests.fleet_tls import handshake

    ca, desk = tmp_path / "ca", tmp_path / "desk"
    run(capsys, "init-ca", "--ca-dir", ca, "--organisation", "T", "--broker-name", "127.0.0.1")
    token = run(capsys, "new-token", "--ca-dir", ca, "--device-id", "desk-07")[1].strip()
    code, out, _ = run(capsys, "device-keygen", "--data-dir", desk, "--device-id", "desk-07", "--no-tpm",
                       "--web-name", "127.0.0.1", "--web-name", "desk-07.custody.example")
    assert code == 0 and "web.csr" in out
    code, _, err = run(capsys, "issue", "--ca-dir", ca, "--csr", desk / "pki" / "device.csr", "--token", token,
                       "--web-csr", desk / "pki" / "web.csr", "--out", tmp_path / "bundle")
    assert code == 0, err
    code, out, _ = run(capsys, "device-install", "--data-dir", desk, "--device-id", "desk-07",
                       "--bundle", tmp_path / "bundle")
    assert code == 0 and f'[web] cert_file = "{desk / "pki" / "web.crt"}"' in out

    web = x509.load_pem_x509_certificates((desk / "pki" / "web.crt").read_bytes())
    client = x509.load_pem_x509_certificate((desk / "pki" / "device.crt").read_bytes())
    assert len(web) == 2 and web[0].public_key() != client.public_key()  # the chain, and a key of its own
    names = web[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(n) for n in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1"}
    assert names.get_values_for_type(x509.DNSName) == ["desk-07.custody.example"]

    context = server_context(desk / "pki" / "web.crt", desk / "pki" / "web.key")
    trust = ssl.create_default_context(cafile=str(ca / "ca.pem"))
    handshake(context, trust, "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(context, trust, "other.example")


def test_a_web_request_without_names_is_refused_and_keeps_the_token(tmp_path, capsys):
    from provisioning import device

    ca, desk = tmp_path / "ca", tmp_path / "desk"
    run(capsys, "init-ca", "--ca-dir", ca, "--organisation", "T", "--broker-name", "127.0.0.1")
    token = run(capsys, "new-token", "--ca-dir", ca, "--device-id", "desk-07")[1].strip()
    pki, _ = device.keygen(desk, "desk-07", None)
    args = ("issue", "--ca-dir", ca, "--csr", pki.csr, "--token", token, "--out", tmp_path / "bundle")
    code, _, err = run(capsys, *args, "--web-csr", pki.csr)  # the client request again: no names, same key
    assert code == 2 and "names no host" in err and err.count("\n") == 1
    assert run(capsys, *args)[0] == 0  # the token was not used up


def test_server_cert_makes_centrals_https_certificate(tmp_path, capsys):
    ca = tmp_path / "ca"
    run(capsys, "init-ca", "--ca-dir", ca, "--organisation", "T", "--broker-name", "127.0.0.1")
    code, out, _ = run(capsys, "server-cert", "--ca-dir", ca, "--name", "central.rfr.example", "--name", "10.0.0.9",
                       "--out", tmp_path / "web")
    assert code == 0 and "client_ca_file" in out
    leaf = x509.load_pem_x509_certificates((tmp_path / "web" / "server.crt").read_bytes())[0]
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert (tmp_path / "web" / "server.key").stat().st_mode & 0o777 == 0o600
