"""The certificate revocation list the broker checks every device certificate against.

WARNING: Mosquitto refuses *every* client once the CRL's nextUpdate has passed, central
included. The CRL is therefore re-signed on every revocation and must also be refreshed on a
schedule (``python -m provisioning crl``, daily from cron or a systemd timer) well inside its
validity; :func:`crl_expires` lets monitoring warn before it lapses.
"""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from devicekeys.files import write_atomic
from provisioning.ca import IssuingCa
from provisioning.errors import CaError
from provisioning.ledger import Ledger

DEFAULT_VALIDITY = timedelta(days=7)


def build_crl(ca: IssuingCa, ledger: Ledger, *, valid_for: timedelta = DEFAULT_VALIDITY,
              now: datetime | None = None) -> bytes:
    """A CRL signed by the issuing CA listing every revoked device certificate (PEM)."""
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(moment - timedelta(minutes=5)).next_update(moment + valid_for)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False))
    for cert in ledger.revoked():
        assert cert.revoked_at is not None
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.serial).revocation_date(cert.revoked_at).build())
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def write_crl(ca: IssuingCa, ledger: Ledger, *, valid_for: timedelta = DEFAULT_VALIDITY,
              now: datetime | None = None, copies: tuple[Path, ...] = ()) -> Path:
    """Re-sign the CRL into the CA directory and into each ``copies`` path (the broker's own copy)."""
    pem = build_crl(ca, ledger, valid_for=valid_for, now=now)
    write_atomic(ca.layout.crl, pem)
    for path in copies:
        # Keep the owner (the broker's user must go on reading it): rewrite in place, atomically.
        stat = path.stat() if path.exists() else None
        write_atomic(path, pem)
        if stat is not None and os.getuid() == 0:
            os.chown(path, stat.st_uid, stat.st_gid)
    return ca.layout.crl


def crl_expires(path: Path) -> datetime:
    """When the CRL at ``path`` stops being valid (and the broker would lock everyone out)."""
    try:
        crl = x509.load_pem_x509_crl(Path(path).read_bytes())
    except FileNotFoundError as e:
        raise CaError(f"CRL {path} does not exist: run `python -m provisioning crl`.") from e
    except ValueError as e:
        raise CaError(f"CRL {path} is damaged: {e}") from e
    if crl.next_update_utc is None:
        raise CaError(f"CRL {path} has no nextUpdate.")
    return crl.next_update_utc


def reload_broker(pid: int) -> None:
    """Ask Mosquitto to re-read its CRL and ACL file (SIGHUP); connected clients stay connected."""
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError as e:
        raise CaError(f"No broker process {pid}: reload it by hand (systemctl reload mosquitto).") from e
