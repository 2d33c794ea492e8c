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
from devicekeys.files import write_atomic, write_private
from provisioning import tokens
from provisioning.ca import CURVE, SERVICE_DAYS, IssuingCa, cert_pem, common_name, key_pem, new_key
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


def web_names(csr: x509.CertificateSigningRequest) -> list[str]:
    """The host names and addresses a web request asks for (its subjectAltName); at least one."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    names = [str(n) for n in san.get_values_for_type(x509.IPAddress)] + san.get_values_for_type(x509.DNSName) \
        if san is not None else []
    if not names:
        raise RequestError("The web certificate request names no host: run device-keygen with --web-name for each "
                           "name or address people use to reach the desk.")
    return names


@dataclass(frozen=True)
class Issued:
    device_id: str
    certificate: x509.Certificate
    web_certificate: x509.Certificate | None = None


def _record(ledger: Ledger, cert: x509.Certificate, name: str) -> x509.Certificate:
    ledger.record_certificate(cert.serial_number, name, cert.not_valid_before_utc, cert.not_valid_after_utc)
    return cert


def issue_device_certificate(ca: IssuingCa, ledger: Ledger, csr_pem: bytes, token: str, *,
                             web_csr_pem: bytes | None = None, days: int = DEVICE_DAYS,
                             now: datetime | None = None) -> Issued:
    """Check the request (and the web server's, if given) against the token, consume the token, sign a client
    certificate (and a server certificate for the desk UI's names) and record them; both are revoked with
    the device."""
    moment = now or datetime.now(UTC)
    device_id = tokens.token_device(ledger, token, now=moment)
    if device_id == ca.central_name or is_service_identity(device_id):
        # A token can predate this rule (or a renamed central): the name is checked again at issue.
        raise RequestError(f"{device_id!r} is reserved for central; make a token for another device id.")
    csr = check_request(csr_pem, device_id)
    web_csr = check_request(web_csr_pem, device_id) if web_csr_pem is not None else None
    names = web_names(web_csr) if web_csr is not None else []
    if web_csr is not None and web_csr.public_key() == csr.public_key():
        raise RequestError("The web request uses the device's client key; device-keygen makes a separate web key.")
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)  # check_request made sure
    tokens.consume(ledger, token, now=moment)
    cert = _record(ledger, ca.sign(device_id, key, usage=ExtendedKeyUsageOID.CLIENT_AUTH, days=days, now=moment),
                   device_id)
    web = None
    if web_csr is not None:
        web_key = web_csr.public_key()
        assert isinstance(web_key, ec.EllipticCurvePublicKey)
        web = _record(ledger, ca.sign(device_id, web_key, usage=ExtendedKeyUsageOID.SERVER_AUTH, days=days,
                                      names=names, now=moment), device_id)
    return Issued(device_id, cert, web)


def issue_server_certificate(ca: IssuingCa, ledger: Ledger, names: list[str], out_dir: Path, *,
                             days: int = SERVICE_DAYS, now: datetime | None = None) -> tuple[Path, Path]:
    """A web server certificate for central (or another service of the RFR team) under ``names``, its key made
    here: ``server.crt`` (leaf, then the issuing CA) and ``server.key`` (0600) in ``out_dir``."""
    if not names:
        raise RequestError("Give at least one --name (the host name or address people and desks use).")
    key = new_key()
    cert = _record(ledger, ca.sign(names[0], key.public_key(), usage=ExtendedKeyUsageOID.SERVER_AUTH, days=days,
                                   names=names, now=now), names[0])
    out = Path(out_dir)
    write_private(out / "server.key", key_pem(key))
    write_atomic(out / "server.crt", cert_pem(cert) + cert_pem(ca.cert))
    return out / "server.crt", out / "server.key"


def write_bundle(out_dir: Path, ca: IssuingCa, issued: Issued, tuf_root: Path | None) -> Path:
    """What the technician carries back to the device: broker CA, its certificates, the TUF root."""
    out = Path(out_dir)
    write_atomic(out / "ca.pem", ca.layout.bundle.read_bytes())
    write_atomic(out / "device.crt", cert_pem(issued.certificate))
    if issued.web_certificate is not None:
        # The chain too: a browser trusting only the fleet root still builds the path to it.
        write_atomic(out / "web.crt", cert_pem(issued.web_certificate) + cert_pem(ca.cert))
    if tuf_root is not None:
        try:
            write_atomic(out / "tuf-root.json", Path(tuf_root).read_bytes())
        except FileNotFoundError as e:
            raise RequestError(f"TUF root {tuf_root} does not exist: give central's 1.root.json.") from e
    return out
