"""The fleet certificate authority: an offline root, an online issuing CA, and the two service certificates.

Keys are EC P-256 with ECDSA-SHA256 throughout: Mosquitto's OpenSSL, Python's ``ssl`` and every
TPM 2.0 support that curve, whereas Ed25519 TLS certificates are still patchy in clients.

The root signs only the issuing CA (path length 0 below it) and its key is written to
``offline-root/``, which the team moves to offline media after ``init-ca``: losing the online
issuing key then means re-issuing device certificates, not replacing every device's trust anchor.
``ca.pem`` (issuing CA then root) is what the broker and every device trust.

Renewing the issuing CA (``renew.py``) keeps the old one under ``previous/``: its certificate stays in
``ca.pem`` and its key goes on signing a CRL for what it issued, so desks enrolled before the renewal
keep working until their own certificates expire. Each issuing CA has its own name (``... issuing CA 2``)
so Mosquitto's OpenSSL and central never confuse their CRLs.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.topics import validate_device_id
from devicekeys.files import write_atomic, write_private
from provisioning.errors import CaError

ROOT_DAYS = 20 * 365
ISSUING_DAYS = 5 * 365
SERVICE_DAYS = 2 * 365
CURVE = ec.SECP256R1


@dataclass(frozen=True)
class CaLayout:
    """Where the CA keeps each file, all under one directory on central's enrolment host."""

    ca_dir: Path

    @property
    def root_cert(self) -> Path:
        return self.ca_dir / "root.crt"

    @property
    def root_key(self) -> Path:
        """Move to offline media after init-ca; only needed to renew the issuing CA."""
        return self.ca_dir / "offline-root" / "root.key"

    @property
    def issuing_cert(self) -> Path:
        return self.ca_dir / "issuing.crt"

    @property
    def issuing_key(self) -> Path:
        return self.ca_dir / "issuing.key"

    @property
    def previous_dir(self) -> Path:
        """Issuing CAs replaced by ``renew-issuing-ca``, one folder each (``issuing.crt``, ``issuing.key``)."""
        return self.ca_dir / "previous"

    @property
    def bundle(self) -> Path:
        """Issuing CA then root: the trust anchor for the broker and for devices."""
        return self.ca_dir / "ca.pem"

    @property
    def crl(self) -> Path:
        return self.ca_dir / "crl.pem"

    @property
    def ledger(self) -> Path:
        return self.ca_dir / "fleet.db"

    @property
    def config(self) -> Path:
        return self.ca_dir / "ca.json"

    @property
    def server_cert(self) -> Path:
        return self.ca_dir / "broker" / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.ca_dir / "broker" / "server.key"

    @property
    def central_cert(self) -> Path:
        return self.ca_dir / "central" / "central.crt"

    @property
    def central_key(self) -> Path:
        return self.ca_dir / "central" / "central.key"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(CURVE())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).replace(microsecond=0)


def _ca_cert(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             signer: ec.EllipticCurvePrivateKey, issuer_public: ec.EllipticCurvePublicKey, path_length: int,
             days: int, now: datetime) -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False)
            .sign(signer, hashes.SHA256()))


def issuing_name(organisation: str, generation: int) -> x509.Name:
    """The issuing CA's name: the first keeps the original one, each renewal adds its number."""
    suffix = "" if generation == 1 else f" {generation}"
    return _name(f"{organisation} RFR device issuing CA{suffix}", organisation)


def sign_issuing_ca(root: x509.Certificate, root_key: ec.EllipticCurvePrivateKey, subject: x509.Name,
                    public_key: ec.EllipticCurvePublicKey, now: datetime | None = None) -> x509.Certificate:
    """An issuing CA certificate under the root: five years, never past the root's own end."""
    moment = _now(now)
    days = min(ISSUING_DAYS, (root.not_valid_after_utc - moment).days)
    if days < 1:
        raise CaError(f"The fleet root expires on {root.not_valid_after_utc:%Y-%m-%d}: it cannot sign a new "
                      "issuing CA; a new fleet CA (init-ca) and re-enrolling every desk is the only way on.")
    return _ca_cert(subject, root.subject, public_key, root_key, root_key.public_key(), 0, days, moment)


@dataclass(frozen=True)
class CrlSigner:
    """An issuing CA's certificate and key: each one signs the CRL for the certificates it issued."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _load_signer(cert_path: Path, key_path: Path) -> CrlSigner:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CaError(f"The issuing key {key_path} is not an EC key.")
    if key.public_key() != cert.public_key():
        # A renewal stopped half-way would otherwise issue certificates nothing can verify.
        raise CaError(f"The issuing key {key_path} is not the key of {cert_path}: restore both from the same "
                      "backup.")
    return CrlSigner(cert, key)


def _valid_at(cert: x509.Certificate, moment: datetime) -> bool:
    return cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc


@dataclass(frozen=True)
class IssuingCa:
    """The online half of the CA: what issues device certificates and signs the CRL.

    ``previous`` are the issuing CAs renewed away: they issue nothing more but sign CRLs until they expire.
    """

    layout: CaLayout
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    organisation: str
    central_name: str
    previous: tuple[CrlSigner, ...] = ()
    generation: int = 1

    @classmethod
    def load(cls, ca_dir: Path) -> IssuingCa:
        layout = CaLayout(Path(ca_dir))
        try:
            config = json.loads(layout.config.read_text())
            current = _load_signer(layout.issuing_cert, layout.issuing_key)
            organisation, central_name = config["organisation"], config["central_name"]
            generation = int(config.get("issuing_generation", 1))
        except FileNotFoundError as e:
            raise CaError(f"No fleet CA in {ca_dir} ({e.filename} is missing): run `init-ca` first.") from e
        except (ValueError, KeyError, TypeError) as e:
            raise CaError(f"The fleet CA in {ca_dir} is damaged: {e}") from e
        try:
            previous = tuple(_load_signer(folder / "issuing.crt", folder / "issuing.key")
                             for folder in sorted(layout.previous_dir.iterdir()) if folder.is_dir()) \
                if layout.previous_dir.is_dir() else ()
        except FileNotFoundError as e:
            raise CaError(f"{e.filename} of a previous issuing CA is missing: restore it from the CA folder's "
                          "backup (its key signs the CRL of the desks it enrolled).") from e
        except (ValueError, TypeError) as e:
            raise CaError(f"A previous issuing CA in {layout.previous_dir} is damaged: {e}") from e
        return cls(layout, current.cert, current.key, organisation, central_name, previous, generation)

    def crl_signers(self, now: datetime | None = None) -> list[CrlSigner]:
        """The current issuing CA, then each previous one still valid (newest first): one CRL each."""
        moment = _now(now)
        kept = sorted((p for p in self.previous if _valid_at(p.cert, moment)),
                      key=lambda p: p.cert.not_valid_before_utc, reverse=True)
        return [CrlSigner(self.cert, self.key), *kept]

    def write_trust_bundle(self, root: x509.Certificate, now: datetime | None = None) -> Path:
        """``ca.pem``: every issuing CA still valid (current first), then the root."""
        pem = b"".join(cert_pem(s.cert) for s in self.crl_signers(now)) + cert_pem(root)
        write_atomic(self.layout.bundle, pem)
        return self.layout.bundle

    def sign(self, common_name: str, public_key: ec.EllipticCurvePublicKey, *, usage: x509.ObjectIdentifier,
             days: int, names: Sequence[str] = (), now: datetime | None = None) -> x509.Certificate:
        """An end-entity certificate for one identity and one purpose (client or server)."""
        moment = _now(now)
        builder = (x509.CertificateBuilder().subject_name(_name(common_name, self.organisation))
                   .issuer_name(self.cert.subject).public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(moment - timedelta(minutes=5)).not_valid_after(moment + timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=False, crl_sign=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName([general_name(n) for n in names]),
                                            critical=False)
        return builder.sign(self.key, hashes.SHA256())


def general_name(name: str) -> x509.GeneralName:
    """An IP address entry for an address, a DNS entry for anything else (subjectAltName)."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def init_ca(ca_dir: Path, *, organisation: str, broker_names: Sequence[str], central_name: str = "central",
            now: datetime | None = None) -> CaLayout:
    """Create the root, the issuing CA, the broker's server certificate and central's client certificate.

    Refuses to touch an existing CA: overwriting it would orphan every enrolled device.
    """
    layout = CaLayout(Path(ca_dir))
    if layout.issuing_key.exists() or layout.config.exists():
        raise CaError(f"{ca_dir} already holds a fleet CA; use a new directory to start another.")
    if not broker_names:
        raise CaError("Give at least one --broker-name (the host name or address devices connect to).")
    validate_device_id(central_name)  # central's CN is a broker user name, so it follows the same rules
    moment = _now(now)
    root_key, issuing_key = new_key(), new_key()
    root_name = _name(f"{organisation} RFR fleet root", organisation)
    root = _ca_cert(root_name, root_name, root_key.public_key(), root_key, root_key.public_key(), 1, ROOT_DAYS,
                    moment)
    issuing = sign_issuing_ca(root, root_key, issuing_name(organisation, 1), issuing_key.public_key(), moment)
    write_private(layout.root_key, key_pem(root_key))
    write_atomic(layout.root_cert, cert_pem(root))
    write_private(layout.issuing_key, key_pem(issuing_key))
    write_atomic(layout.issuing_cert, cert_pem(issuing))
    write_atomic(layout.bundle, cert_pem(issuing) + cert_pem(root))
    write_atomic(layout.config, json.dumps({"organisation": organisation, "central_name": central_name}).encode())
    ca = IssuingCa(layout, issuing, issuing_key, organisation, central_name)
    server_key, central_key = new_key(), new_key()
    server = ca.sign(broker_names[0], server_key.public_key(), usage=ExtendedKeyUsageOID.SERVER_AUTH,
                     days=SERVICE_DAYS, names=broker_names, now=moment)
    central = ca.sign(central_name, central_key.public_key(), usage=ExtendedKeyUsageOID.CLIENT_AUTH,
                      days=SERVICE_DAYS, now=moment)
    write_service_certificates(ca, (server, server_key), (central, central_key))
    return layout


def write_service_certificates(ca: IssuingCa, server: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
                               central: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    """The broker's server and central's client certificate, each followed by the issuing CA that signed it.

    The chain is sent in the handshake, so a desk whose ``ca.pem`` predates a renewal of the issuing CA
    still builds the path to the root it trusts.
    """
    layout = ca.layout
    write_private(layout.server_key, key_pem(server[1]))
    write_atomic(layout.server_cert, cert_pem(server[0]) + cert_pem(ca.cert))
    write_private(layout.central_key, key_pem(central[1]))
    write_atomic(layout.central_cert, cert_pem(central[0]) + cert_pem(ca.cert))


def load_bundle(path: Path) -> list[x509.Certificate]:
    """The certificates in a CA bundle (issuing CA first)."""
    try:
        return x509.load_pem_x509_certificates(Path(path).read_bytes())
    except FileNotFoundError as e:
        raise CaError(f"CA bundle {path} does not exist.") from e
    except ValueError as e:
        raise CaError(f"CA bundle {path} is not PEM certificates: {e}") from e


def common_name(cert: x509.Certificate | x509.CertificateSigningRequest) -> str | None:
    """The single CN of a certificate or request; None when there is not exactly one."""
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1:
        return None
    value = values[0].value
    return value if isinstance(value, str) else None
