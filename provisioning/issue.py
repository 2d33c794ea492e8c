"""Central's side of enrolment: check a device's certificate request and issue its certificate.

Every check runs before the token is used up, so a technician who sends the wrong file can try
again with the same token; only a certificate actually issued consumes it. The request must be
an EC P-256 key (what the device key generator and a TPM make; RSA or other curves are refused
rather than silently accepted), validly self-signed (proof that the device holds the private
key), and name exactly the device the token was made for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from core.topics import is_service_identity
from devicekeys.files import write_atomic
from provisioning import tokens
from provisioning.ca import CURVE, IssuingCa, cert_pem, common_name
from provisioning.errors import RequestError
from provisioning.ledger import Ledger

DEVICE_DAYS = 365


def check_request(csr_pem: bytes, device_id: str) -> x509.CertificateSigningRequest:
    """The parsed request, if it is a valid P-256 request whose only CN is ``device_id``."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as e:
        raise RequestError(f"The certificate request is not a PEM CSR ({e}); send the .csr file device-keygen "
                           "wrote.") from e
    try:
        key = csr.public_key()
    except ValueError as e:  # an algorithm cryptography cannot even load
        raise RequestError(f"The certificate request's key cannot be read: {e}") from e
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, CURVE):
        kind = f"EC {key.curve.name}" if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__
        raise RequestError(f"The certificate request has a {kind} key; only EC P-256 (secp256r1) is accepted. "
                           "Make the key with `device-keygen`.")
    if not csr.is_signature_valid:
        raise RequestError("The certificate request's signature does not verify: it was altered or not made "
                           "with its own key.")
    name = common_name(csr)
    if name != device_id:
        raise RequestError(f"The certificate request is for {name!r} but the token is for {device_id!r}; "
                           "run device-keygen with the right --device-id or use that device's token.")
    return csr


@dataclass(frozen=True)
class Issued:
    device_id: str
    certificate: x509.Certificate


def issue_device_certificate(ca: IssuingCa, ledger: Ledger, csr_pem: bytes, token: str, *,
                             days: int = DEVICE_DAYS, now: datetime | None = None) -> Issued:
    """Check the request against the token, consume the token, sign a client certificate and record it."""
    moment = now or datetime.now(UTC)
    device_id = tokens.token_device(ledger, token, now=moment)
    if device_id == ca.central_name or is_service_identity(device_id):
        # A token can predate this rule (or a renamed central): the name is checked again at issue.
        raise RequestError(f"{device_id!r} is reserved for central; make a token for another device id.")
    csr = check_request(csr_pem, device_id)
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)  # check_request made sure
    tokens.consume(ledger, token, now=moment)
    cert = ca.sign(device_id, key, usage=ExtendedKeyUsageOID.CLIENT_AUTH, days=days, now=moment)
    ledger.record_certificate(cert.serial_number, device_id, cert.not_valid_before_utc, cert.not_valid_after_utc)
    return Issued(device_id, cert)


def write_bundle(out_dir: Path, ca: IssuingCa, issued: Issued, tuf_root: Path | None) -> Path:
    """What the technician carries back to the device: broker CA, its certificate, the TUF root."""
    out = Path(out_dir)
    write_atomic(out / "ca.pem", ca.layout.bundle.read_bytes())
    write_atomic(out / "device.crt", cert_pem(issued.certificate))
    if tuf_root is not None:
        try:
            write_atomic(out / "tuf-root.json", Path(tuf_root).read_bytes())
        except FileNotFoundError as e:
            raise RequestError(f"TUF root {tuf_root} does not exist: give central's 1.root.json.") from e
    return out
