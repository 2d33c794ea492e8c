"""Is this TLS client an enrolled, unrevoked desk? The check central runs before serving ``/tuf``.

The web server asks browsers and desks for a client certificate without requiring one (staff pages need
none), so the application decides per route. It does not trust that the server verified what was offered:
it verifies the certificate again here against the fleet CA bundle (chain, validity, the client-auth
usage), then looks its serial up in the CRL the issuing CA writes (``crl.py``), as the broker does. The
CRL is re-read when its file changes (a revocation re-signs it), must be signed by an issuing CA in the
bundle, and once past its nextUpdate refuses every desk, as Mosquitto does, rather than trust a list
nobody refreshed. After a renewal of the issuing CA the file holds one CRL per issuing CA; a desk is
looked up in its own issuer's, and refused when its issuer has none (as Mosquitto does).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store, VerificationError

from provisioning.ca import common_name, load_bundle
from provisioning.crl import load_crls
from provisioning.errors import ProvisioningError

logger = logging.getLogger(__name__)


class ClientRefused(ProvisioningError):
    """The client is not an enrolled desk in good standing; the message says why, for central's log."""


class FleetClients:
    """Verifies client certificates against the fleet CA bundle and its CRL."""

    def __init__(self, ca_bundle: Path, crl_file: Path) -> None:
        self.ca_bundle, self.crl_file = Path(ca_bundle), Path(crl_file)
        self._anchors = load_bundle(self.ca_bundle)
        # Device certificates carry their device id as CN and no subjectAltName: allow one to be absent.
        ee = ExtensionPolicy.webpki_defaults_ee().may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC,
                                                                 None)
        self._policy = (PolicyBuilder().store(Store(self._anchors))
                        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee))
        self._lock = threading.Lock()
        self._crl_stamp: tuple[int, int] | None = None
        self._crls: list[x509.CertificateRevocationList] | None = None

    def check(self, cert_pem: str | None, *, now: datetime | None = None) -> str:
        """The desk's id if ``cert_pem`` is a valid, unrevoked fleet client certificate; else ``ClientRefused``."""
        if not cert_pem:
            raise ClientRefused("no client certificate was presented")
        try:
            cert = x509.load_pem_x509_certificate(cert_pem.encode())
        except ValueError as e:
            raise ClientRefused(f"the client certificate cannot be read ({e})") from e
        moment = now or datetime.now(UTC)
        try:
            self._policy.time(moment).build_client_verifier().verify(cert, [])
        except VerificationError as e:
            raise ClientRefused(f"the client certificate does not verify against the fleet CA ({e})") from e
        name = common_name(cert) or "(no CN)"
        crl = next((c for c in self._current_crls(moment) if c.issuer == cert.issuer), None)
        if crl is None:
            raise ClientRefused(f"the CRL {self.crl_file} has no list from the CA that issued {name}'s certificate "
                                "(run `python -m provisioning crl`)")
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise ClientRefused(f"the certificate {cert.serial_number:x} of {name} is revoked")
        return name

    def check_crl(self, *, now: datetime | None = None) -> None:
        """Refuse now (at central's start) a CRL that would refuse every desk later."""
        self._current_crls(now or datetime.now(UTC))

    def _current_crls(self, moment: datetime) -> list[x509.CertificateRevocationList]:
        try:
            stat = self.crl_file.stat()
        except OSError as e:
            raise ClientRefused(f"the CRL {self.crl_file} cannot be read ({e}); refusing every desk") from e
        with self._lock:
            if self._crls is None or self._crl_stamp != (stat.st_mtime_ns, stat.st_size):
                self._crls = self._load_crls()
                self._crl_stamp = (stat.st_mtime_ns, stat.st_size)
            crls = self._crls
        for crl in crls:
            if crl.next_update_utc is not None and crl.next_update_utc < moment:
                raise ClientRefused(f"the CRL {self.crl_file} expired at {crl.next_update_utc:%Y-%m-%d %H:%M} UTC; "
                                    "run `python -m provisioning crl` (refusing every desk until then, as the broker "
                                    "does)")
        return crls

    def _load_crls(self) -> list[x509.CertificateRevocationList]:
        try:
            crls = load_crls(self.crl_file.read_bytes())
        except (OSError, ValueError) as e:
            raise ClientRefused(f"the CRL {self.crl_file} cannot be read ({e}); refusing every desk") from e
        for crl in crls:
            if not any(self._signed_by(crl, issuer) for issuer in self._anchors):
                raise ClientRefused(f"the CRL {self.crl_file} is not signed by the fleet CA in {self.ca_bundle}; "
                                    "refusing every desk")
        return crls

    @staticmethod
    def _signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
        key = issuer.public_key()
        return issuer.subject == crl.issuer and isinstance(key, ec.EllipticCurvePublicKey) \
            and crl.is_signature_valid(key)
