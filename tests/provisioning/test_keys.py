"""Key protection: sealing to a (software) TPM 2.0, the 0600 file fallback, and TLS with a sealed key."""

from __future__ import annotations

import secrets
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devicekeys import keys
from devicekeys.errors import KeyProtectionError
from devicekeys.tpm import DEVICE, SealPolicy, Tpm
from devicekeys.wrapping import load_or_create_wrapping_key, read_public_key
from tests.provisioning.conftest import running_swtpm


def test_a_secret_sealed_to_the_tpm_unseals_and_is_not_on_disk(swtpm, tmp_path):
    secret = secrets.token_bytes(32)  # a SQLCipher raw key
    path = tmp_path / "device.key"
    mode = keys.seal_secret(path, secret, swtpm)
    assert mode.as_dict() == {"mode": "tpm", "weaker": False}
    assert not path.exists()
    blobs = sorted(p.name for p in tmp_path.iterdir())
    assert blobs == ["device.key.tpm-policy", "device.key.tpm-priv", "device.key.tpm-pub"]
    assert all(secret not in p.read_bytes() and secret.hex().encode() not in p.read_bytes()
               for p in tmp_path.iterdir())
    assert keys.unseal_secret(path, swtpm) == secret
    assert keys.protection(path).mode == "tpm"


def test_a_sealed_secret_does_not_open_on_another_tpm_or_without_one(swtpm, tmp_path, monkeypatch):
    path = tmp_path / "device.key"
    keys.seal_secret(path, b"k" * 32, swtpm)
    with running_swtpm() as other, pytest.raises(KeyProtectionError, match="tpm2_load failed"):
        keys.unseal_secret(path, other)  # another TPM has another seed: the blob will not even load
    with pytest.raises(KeyProtectionError, match="failed on TPM"):
        keys.unseal_secret(path, Tpm("swtpm:host=127.0.0.1,port=1"))  # nothing there
    monkeypatch.delenv("TPM2TOOLS_TCTI", raising=False)
    if not DEVICE.exists():
        with pytest.raises(KeyProtectionError, match="sealed to a TPM but no TPM is reachable"):
            keys.unseal_secret(path)


def test_a_tls_private_key_is_sealed_and_used_from_memory(swtpm, tmp_path):
    from provisioning.device import keygen

    pki, mode = keygen(tmp_path / "desk", "desk-01", swtpm)
    assert mode.mode == "tpm" and not pki.key.exists()
    assert len(keys.unseal_secret(pki.key, swtpm)) == 32  # the P-256 scalar; a PEM is too big to seal
    pem = keys.private_key_pem(pki.key, swtpm)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    request = x509.load_pem_x509_csr(pki.csr.read_bytes())
    assert serialization.load_pem_private_key(pem, None).public_key() == request.public_key()


def test_without_a_tpm_the_secret_is_a_0600_file_reported_as_weaker(tmp_path):
    path = tmp_path / "device.key"
    mode = keys.seal_secret(path, b"s" * 32, None)
    assert mode.as_dict() == {"mode": "file", "weaker": True}
    assert path.stat().st_mode & 0o777 == 0o600
    assert keys.unseal_secret(path) == b"s" * 32


def test_moving_a_file_key_into_the_tpm_leaves_one_copy(swtpm, tmp_path):
    path = tmp_path / "device.key"
    keys.seal_secret(path, b"t" * 32, None)
    keys.seal_secret(path, keys.unseal_secret(path), swtpm)
    assert not path.exists() and keys.protection(path).mode == "tpm"
    assert keys.unseal_secret(path, swtpm) == b"t" * 32


def test_a_missing_key_is_reported(tmp_path):
    with pytest.raises(KeyProtectionError, match="run device-keygen"):
        keys.unseal_secret(tmp_path / "device.key")


def test_a_key_sealed_under_the_pcr_policy_stops_opening_when_measured_boot_changes(tmp_path):
    """PCR 7 on a TPM of its own (extending it would disturb the shared one): the boot state the key was
    sealed under is simulated by extending the PCR as a different bootloader would."""
    with running_swtpm() as tpm:
        desk = Tpm(tpm.tcti, SealPolicy(pcrs="sha256:7", auth_file=keys.device_auth_file(tmp_path)))
        path = tmp_path / "library-wrap.key"
        keys.seal_secret(path, b"w" * 32, desk)
        assert keys.sealed_policy(path) == SealPolicy("sha256:7", (tmp_path / "tpm-auth.secret").resolve())
        assert keys.unseal_secret(path, desk) == b"w" * 32
        subprocess.run(["tpm2_pcrextend", "-T", tpm.tcti, "7:sha256=" + "ab" * 32], check=True, capture_output=True)
        with pytest.raises(KeyProtectionError, match="measured boot state \\(PCR sha256:7\\)"):
            keys.unseal_secret(path, desk)


def test_a_sealed_key_needs_the_devices_authorisation_value_and_not_only_it(tmp_path):
    with running_swtpm() as tpm:
        auth = keys.device_auth_file(tmp_path)
        assert auth.stat().st_mode & 0o777 == 0o600 and len(auth.read_bytes()) == 32
        desk = Tpm(tpm.tcti, SealPolicy(pcrs="sha256:7", auth_file=auth))
        path = tmp_path / "device.key"
        keys.seal_secret(path, b"d" * 32, desk)
        public, private = path.with_name("device.key.tpm-pub"), path.with_name("device.key.tpm-priv")
        with pytest.raises(KeyProtectionError, match="failed on TPM"):
            desk.unseal(public, private, None)  # no policy session: the object has no userwithauth
        genuine = auth.read_bytes()
        auth.write_bytes(secrets.token_bytes(32))
        with pytest.raises(KeyProtectionError, match="authorisation value derived from"):
            keys.unseal_secret(path, desk)
        auth.write_bytes(genuine)
        assert keys.unseal_secret(path, desk) == b"d" * 32


def test_the_desk_wrapping_key_is_made_at_keygen_sealed_and_its_public_half_written(swtpm, tmp_path):
    from provisioning.device import keygen

    pki, _ = keygen(tmp_path / "desk", "desk-01", swtpm)
    assert not pki.wrap_key.exists() and keys.protection(pki.wrap_key).mode == "tpm"
    private = load_or_create_wrapping_key(pki.wrap_key, swtpm)
    assert read_public_key(pki.wrap_public).public_bytes_raw() == private.public_key().public_bytes_raw()
    again, _ = keygen(tmp_path / "desk", "desk-01", swtpm)  # a second keygen keeps the key central knows
    assert load_or_create_wrapping_key(again.wrap_key, swtpm).private_bytes_raw() == private.private_bytes_raw()
