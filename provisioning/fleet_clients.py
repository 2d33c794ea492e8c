"""Is this TLS client an enrolled, unrevoked desk? The check central runs before serving ``/tuf``.

The web server asks browsers and desks for a client certificate without requiring one (staff pages need
none), so the application decides per route. It does not trust that the server verified what was offered:
it verifies the certificate again here against the fleet CA bundle (chain, validity, the client-auth
usage), then looks its serial up in the CRL the issuing CA writes (``crl.py``), as the broker does. The
CRL is re-read when its file changes (a revocation re-signs it), must be signed by the issuing CA in the
bundle, and once past its nextUpdate refuses every desk, as Mosquitto does, rather than trust a list
nobody refreshed.
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
        self._crl: x509.CertificateRevocationList | None = None

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
        crl = self._current_crl(moment)
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise ClientRefused(f"the certificate {cert.serial_number:x} of {name} is revoked")
        return name

    def check_crl(self, *, now: datetime | None = None) -> None:
        """Refuse now (at central's start) a CRL that would refuse every desk later."""
        self._current_crl(now or datetime.now(UTC))

    def _current_crl(self, moment: datetime) -> x509.CertificateRevocationList:
        try:
            stat = self.crl_file.stat()
        except OSError as e:
            raise ClientRefused(f"the CRL {self.crl_file} cannot be read ({e}); refusing every desk") from e
        with self._lock:
            if self._crl is None or self._crl_stamp != (stat.st_mtime_ns, stat.st_size):
                self._crl = self._load_crl()
                self._crl_stamp = (stat.st_mtime_ns, stat.st_size)
            crl = self._crl
        if crl.next_update_utc is not None and crl.next_update_utc < moment:
            raise ClientRefused(f"the CRL {self.crl_file} expired at {crl.next_update_utc:%Y-%m-%d %H:%M} UTC; run "
                                "`python -m provisioning crl` (refusing every desk until then, as the broker does)")
        return crl

    def _load_crl(self) -> x509.CertificateRevocationList:
        try:
            crl = x509.load_pem_x509_crl(self.crl_file.read_bytes())
        except (OSError, ValueError) as e:
            raise ClientRefused(f"the CRL {self.crl_file} cannot be read ({e}); refusing every desk") from e
        for issuer in self._anchors:
            key = issuer.public_key()
            if issuer.subject == crl.issuer and isinstance(key, ec.EllipticCurvePublicKey) \
                    and crl.is_signature_valid(key):
                return crl
        raise ClientRefused(f"the CRL {self.crl_file} is not signed by the fleet CA in {self.ca_bundle}; "
                            "refusing every desk")
