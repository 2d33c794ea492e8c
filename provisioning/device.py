"""The device's side of enrolment: make its own key and request, then install what central sent.

The private keys are generated on the desk and never leave it: the TLS key and the X25519
key-wrapping key (``devicekeys.wrapping``) are sealed to the TPM where there is one (else 0600
files); only the certificate request and the wrapping key's public half go to central. Files
live under ``<data_dir>/pki/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.topics import validate_device_id
from devicekeys.files import write_atomic
from devicekeys.keys import KeyProtection, seal_private_key
from devicekeys.tpm import Tpm
from devicekeys.wrapping import default_path as wrap_key_path
from devicekeys.wrapping import load_or_create_wrapping_key, public_path
from provisioning.ca import cert_pem, common_name, new_key
from provisioning.errors import BundleError, CaError


@dataclass(frozen=True)
class DevicePki:
    """Where a device keeps its TLS identity."""

    data_dir: Path

    @property
    def folder(self) -> Path:
        return Path(self.data_dir) / "pki"

    @property
    def key(self) -> Path:
        """The private key's name; sealed it is ``device.key.tpm-pub``/``.tpm-priv``."""
        return self.folder / "device.key"

    @property
    def csr(self) -> Path:
        return self.folder / "device.csr"

    @property
    def cert(self) -> Path:
        return self.folder / "device.crt"

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def tuf_root(self) -> Path:
        return self.folder / "tuf-root.json"

    @property
    def wrap_key(self) -> Path:
        """The key-wrapping key central wraps library keys to (sealed: ``.tpm-pub``/``.tpm-priv``)."""
        return wrap_key_path(self.data_dir)

    @property
    def wrap_public(self) -> Path:
        """Its public half (64 hex digits), registered at central with ``devices register --wrap-key``."""
        return public_path(self.wrap_key)


def keygen(data_dir: Path, device_id: str, tpm: Tpm | None) -> tuple[DevicePki, KeyProtection]:
    """A new P-256 key (sealed or 0600) and a request naming ``device_id``, signed by that key; and the
    desk's key-wrapping key (made once, kept if it exists: central may already have wrapped keys to it)."""
    validate_device_id(device_id)
    pki = DevicePki(Path(data_dir))
    key = new_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
           .sign(key, hashes.SHA256()))
    mode = seal_private_key(pki.key, key, tpm)
    load_or_create_wrapping_key(pki.wrap_key, tpm)
    write_atomic(pki.csr, csr.public_bytes(serialization.Encoding.PEM))
    return pki, mode


def _issuer_of(cert: x509.Certificate, chain: list[x509.Certificate]) -> x509.Certificate:
    for candidate in chain:
        if candidate.subject == cert.issuer:
            try:
                cert.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return candidate
    raise BundleError("The certificate was not issued by the fleet CA in ca.pem: ask central to issue it again.")


def verify_device_certificate(cert: x509.Certificate, chain: list[x509.Certificate], device_id: str,
                              public_key: ec.EllipticCurvePublicKey, now: datetime | None = None) -> None:
    """Refuse a certificate that is for another device, for another key, expired, or not from the CA."""
    name = common_name(cert)
    if name != device_id:
        raise BundleError(f"The certificate is for {name!r}, not this device ({device_id!r}): "
                          "it belongs to another desk.")
    if cert.public_key() != public_key:
        raise BundleError("The certificate is not for this device's key: run device-keygen's request through "
                          "issue again (was another desk's request sent?).")
    moment = now or datetime.now(UTC)
    if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
        raise BundleError(f"The certificate is not valid now (valid {cert.not_valid_before_utc} to "
                          f"{cert.not_valid_after_utc}); check the desk's clock.")
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        raise BundleError("The certificate is not a client certificate.")
    issuer = _issuer_of(cert, chain)
    if issuer.subject != issuer.issuer:  # the issuing CA: it must chain to a root in the bundle
        _issuer_of(issuer, chain)


def install_bundle(data_dir: Path, device_id: str, bundle_dir: Path) -> DevicePki:
    """Check central's bundle against this device's own request, then copy it into place."""
    pki = DevicePki(Path(data_dir))
    bundle = Path(bundle_dir)
    try:
        request = x509.load_pem_x509_csr(pki.csr.read_bytes())
        cert = x509.load_pem_x509_certificate((bundle / "device.crt").read_bytes())
        chain = x509.load_pem_x509_certificates((bundle / "ca.pem").read_bytes())
    except FileNotFoundError as e:
        raise BundleError(f"{e.filename} is missing: run device-keygen here, then bring central's bundle "
                          "(ca.pem, device.crt).") from e
    except ValueError as e:
        raise BundleError(f"The bundle in {bundle} is damaged: {e}") from e
    public_key = request.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise CaError(f"{pki.csr} is not an EC request; run device-keygen again.")
    verify_device_certificate(cert, chain, device_id, public_key)
    write_atomic(pki.ca, b"".join(cert_pem(c) for c in chain))
    write_atomic(pki.cert, cert_pem(cert))
    if (bundle / "tuf-root.json").exists():
        write_atomic(pki.tuf_root, (bundle / "tuf-root.json").read_bytes())
    return pki
