"""Renewing the fleet CA without re-enrolling desks: a new issuing CA from the offline root, new service certificates.

``renew_issuing_ca`` signs a new issuing CA with the offline root key the team brings back for the
occasion. The old issuing CA moves to ``previous/<serial>/`` and is not thrown away:

* its certificate stays in ``ca.pem`` after the new one, so the broker (``cafile``) and central go on
  accepting the desks it enrolled until their own certificates expire;
* its key goes on signing a CRL of its own (``crl.py``), because Mosquitto looks a desk up in the CRL of
  the CA that issued it, and refuses the desk when that CRL is missing.

Desks need nothing: their ``ca.pem`` (old issuing CA and the root) still trusts the root, and the broker
sends the new issuing CA with its certificate (its OpenSSL completes the chain from its ``ca.pem``, and
``write_service_certificates`` puts it in ``server.crt`` too). New enrolments get the new bundle. The
old issuing CA drops out of the bundle and the CRL file once it expires (``crl`` and the next renewal leave it out).

``reissue_server_certificates`` makes the broker's server and central's client certificate again,
with new keys, the same names and a new expiry, signed by the current issuing CA.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from devicekeys.files import write_atomic, write_private
from provisioning.ca import (
    SERVICE_DAYS,
    IssuingCa,
    cert_pem,
    common_name,
    issuing_name,
    key_pem,
    new_key,
    sign_issuing_ca,
    write_service_certificates,
)
from provisioning.crl import write_crl
from provisioning.errors import CaError
from provisioning.ledger import Ledger


@dataclass(frozen=True)
class Renewal:
    """What ``renew_issuing_ca`` did: the new issuing CA, and the one kept for the desks it enrolled."""

    new: x509.Certificate
    kept: x509.Certificate
    kept_dir: Path


def _read_cert(path: Path, remedy: str) -> x509.Certificate:
    """A PEM certificate the command needs, or a ``CaError`` that says what the operator should do."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError as e:
        raise CaError(f"{path} is missing: {remedy}") from e
    except ValueError as e:
        raise CaError(f"{path} is damaged ({e}): {remedy}") from e


def _load_root(ca: IssuingCa, root_key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The root certificate and its key, once the key is proved to be this root's."""
    root = _read_cert(ca.layout.root_cert, "restore the CA folder's copy from the backup.")
    path = Path(root_key_path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise CaError(f"The offline root key {path} does not exist: connect the offline media and give the path "
                      "of its root.key with --root-key.") from e
    except OSError as e:
        raise CaError(f"The offline root key {path} cannot be read ({e.strerror}).") from e
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as e:
        raise CaError(f"The offline root key {path} is protected by a passphrase; decrypt it to a file on the "
                      "offline machine (openssl pkey) and give that file.") from e
    except ValueError as e:
        raise CaError(f"{path} is not a private key file: give the root.key that init-ca wrote to "
                      "offline-root/.") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != root.public_key():
        raise CaError(f"{path} is not this fleet's root key (it does not match {ca.layout.root_cert}): give the "
                      f"root.key made with the CA in {ca.layout.ca_dir}; nothing was changed.")
    return root, key


def renew_issuing_ca(ca_dir: Path, root_key_path: Path, *, now: datetime | None = None) -> Renewal:
    """A new issuing key and certificate signed by the offline root; the old one kept under ``previous/``.

    Rewrites ``ca.pem`` (new, still-valid previous ones, root) and the CRL file (one CRL per issuing CA).
    Nothing is written until the root key has been checked against ``root.crt``.
    """
    ca = IssuingCa.load(ca_dir)
    root, root_key = _load_root(ca, root_key_path)
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    generation = ca.generation + 1
    key = new_key()
    cert = sign_issuing_ca(root, root_key, issuing_name(ca.organisation, generation), key.public_key(), moment)
    layout = ca.layout
    # Keep the old pair first: a renewal stopped half-way must not lose the key that signs its desks' CRL.
    kept_dir = layout.previous_dir / f"{ca.cert.serial_number:x}"
    write_private(kept_dir / "issuing.key", key_pem(ca.key))
    write_atomic(kept_dir / "issuing.crt", cert_pem(ca.cert))
    write_private(layout.issuing_key, key_pem(key))
    write_atomic(layout.issuing_cert, cert_pem(cert))
    config = json.loads(layout.config.read_text())
    config["issuing_generation"] = generation
    write_atomic(layout.config, json.dumps(config).encode())
    renewed = IssuingCa.load(layout.ca_dir)
    renewed.write_trust_bundle(root, moment)
    with Ledger(layout.ledger) as ledger:
        write_crl(renewed, ledger, now=moment)
    return Renewal(cert, ca.cert, kept_dir)


def _broker_names(cert_path: Path) -> list[str]:
    """The names of the broker's current certificate (CN first, then the rest of its subjectAltName)."""
    cert = _read_cert(cert_path, "give the broker's names with --broker-name.")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.IPAddress)] + san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    first = common_name(cert)
    ordered = ([first] if first else []) + [n for n in names if n != first]
    if not ordered:
        raise CaError(f"{cert_path} names no host: give the broker's names with --broker-name.")
    return ordered


def reissue_server_certificates(ca_dir: Path, *, broker_names: list[str] | None = None, days: int = SERVICE_DAYS,
                                now: datetime | None = None) -> tuple[x509.Certificate, x509.Certificate]:
    """New keys and certificates for the broker (same names unless given) and central (same CN), from the
    current issuing CA; written over ``broker/server.*`` and ``central/central.*`` in the CA folder."""
    ca = IssuingCa.load(ca_dir)
    names = broker_names or _broker_names(ca.layout.server_cert)
    server_key, central_key = new_key(), new_key()
    server = ca.sign(names[0], server_key.public_key(), usage=ExtendedKeyUsageOID.SERVER_AUTH, days=days,
                     names=names, now=now)
    central = ca.sign(ca.central_name, central_key.public_key(), usage=ExtendedKeyUsageOID.CLIENT_AUTH, days=days,
                      now=now)
    write_service_certificates(ca, (server, server_key), (central, central_key))
    return server, central
