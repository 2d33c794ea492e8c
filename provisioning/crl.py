"""The certificate revocation list the broker checks every device certificate against.

WARNING: Mosquitto refuses *every* client once the CRL's nextUpdate has passed, central
included. The CRL is therefore re-signed on every revocation and must also be refreshed on a
schedule (``python -m provisioning crl``, daily from cron or a systemd timer) well inside its
validity; :func:`crl_expires` lets monitoring warn before it lapses.

After ``renew-issuing-ca`` the file holds one CRL per issuing CA still valid (the current one first):
Mosquitto checks a desk's certificate against the CRL of the CA that issued it, and refuses a desk
whose issuer has no CRL in the file. Each lists every revoked serial in the ledger (serials are
random 159-bit numbers, so one issued by the other CA can never match by accident).
"""

from __future__ import annotations

import os
import re
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from devicekeys.files import write_atomic
from provisioning.ca import CrlSigner, IssuingCa
from provisioning.errors import CaError
from provisioning.ledger import Ledger

DEFAULT_VALIDITY = timedelta(days=7)
_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----\s*", re.DOTALL)


def _signed_crl(signer: CrlSigner, ledger: Ledger, moment: datetime, valid_for: timedelta) -> bytes:
    key = signer.key
    builder = (x509.CertificateRevocationListBuilder().issuer_name(signer.cert.subject)
               .last_update(moment - timedelta(minutes=5)).next_update(moment + valid_for)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False))
    for cert in ledger.revoked():
        assert cert.revoked_at is not None
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.serial).revocation_date(cert.revoked_at).build())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def build_crl(ca: IssuingCa, ledger: Ledger, *, valid_for: timedelta = DEFAULT_VALIDITY,
              now: datetime | None = None) -> bytes:
    """One CRL per issuing CA still valid, each listing every revoked certificate (PEM, concatenated)."""
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    return b"".join(_signed_crl(signer, ledger, moment, valid_for) for signer in ca.crl_signers(moment))


def load_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    """Every CRL in a PEM file (one per issuing CA); ValueError when there is none or one is damaged."""
    blocks = _PEM_CRL.findall(data)
    if not blocks:
        raise ValueError("no PEM CRL in the file")
    return [x509.load_pem_x509_crl(block) for block in blocks]


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
    """When the earliest CRL at ``path`` stops being valid (and the broker would lock its desks out)."""
    try:
        crls = load_crls(Path(path).read_bytes())
    except FileNotFoundError as e:
        raise CaError(f"CRL {path} does not exist: run `python -m provisioning crl`.") from e
    except ValueError as e:
        raise CaError(f"CRL {path} is damaged: {e}") from e
    ends = [crl.next_update_utc for crl in crls]
    if any(end is None for end in ends):
        raise CaError(f"CRL {path} has no nextUpdate.")
    return min(end for end in ends if end is not None)


def reload_broker(pid: int) -> None:
    """Ask Mosquitto to re-read its CRL and ACL file (SIGHUP); connected clients stay connected."""
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError as e:
        raise CaError(f"No broker process {pid}: reload it by hand (systemctl reload mosquitto).") from e
