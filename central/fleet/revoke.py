"""Revoking a desk: mark it in the registry, send it a signed wipe, cut it off at the broker.

The order matters. The registry first, so ingest refuses its messages at once. Then the wipe,
published through the broker while the desk may still be connected (Mosquitto checks the CRL
only at the TLS handshake, so a connected desk still receives it). Then the CRL is re-signed
and the broker reloaded, so the desk can never connect again. A desk that is offline never
receives the wipe: it is refused at the broker from then on, which is why its keys are sealed.
Nor can a revocation take back a library key the desk already unwrapped: the registry remembers
which desks were given each key, and the next publication re-keys (``central/publish/keys.py``).

Without a fleet PKI in central's settings (development), only the registry and the wipe happen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.fleet.registry_store import RegistryStore
from core.audit.checkpoint import public_key_pem
from core.errors import CustodyRfrError
from core.fleet import FleetCommand
from core.topics import fleet_command_topic, validate_device_id
from devicekeys.files import write_atomic, write_private
from provisioning.ca import IssuingCa
from provisioning.crl import reload_broker, write_crl
from provisioning.ledger import Ledger

logger = logging.getLogger(__name__)

#: Publishes one QoS 1 message and says whether the broker accepted it.
Send = Callable[[str, bytes], bool]


class RevocationError(CustodyRfrError):
    """A revocation could not be completed (the message says which step and what to do)."""


@dataclass(frozen=True)
class PkiTarget:
    """Where the fleet CA and the broker's copy of the CRL are, and which process to reload."""

    ca_dir: Path
    broker_dir: Path | None = None
    broker_pid_file: Path | None = None


@dataclass
class Revocation:
    device_id: str
    newly_revoked: bool
    wipe_sent: bool = False
    certificates: list[int] = field(default_factory=list)
    broker_reloaded: bool = False

    def summary(self) -> str:
        parts = [f"{self.device_id} revoked" + ("" if self.newly_revoked else " (already)")]
        parts.append("signed wipe sent" if self.wipe_sent else "no wipe sent")
        parts.append("the next library publication re-keys any library key it held")
        if self.certificates or self.broker_reloaded:
            parts.append(f"{len(self.certificates)} certificate(s) on the CRL"
                         + ("; broker reloaded" if self.broker_reloaded else "; reload the broker"))
        return ", ".join(parts) + "."


def generate_command_key(path: Path) -> Path:
    """Make central's fleet-command key (0600 PEM) and ``<path>.pub``, the file every desk is given."""
    path = Path(path)
    if path.exists():
        raise RevocationError(f"{path} exists: the fleet-command key is made once (desks trust its public half).")
    key = Ed25519PrivateKey.generate()
    write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public = path.with_name(path.name + ".pub")
    write_atomic(public, public_key_pem(key.public_key()))
    return public


def load_command_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), None)
    except FileNotFoundError as e:
        raise RevocationError(f"No fleet-command key at {path}: run `python -m central devices command-key`.") from e
    except ValueError as e:
        raise RevocationError(f"{path} is not a PEM private key: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise RevocationError(f"{path} is not an Ed25519 key.")
    return key


def _revoke_certificates(device_id: str, pki: PkiTarget, now: datetime) -> tuple[list[int], bool]:
    ca = IssuingCa.load(pki.ca_dir)
    with Ledger(ca.layout.ledger) as ledger:
        serials = ledger.revoke_device(device_id, now)
        copies = (pki.broker_dir / "crl.pem",) if pki.broker_dir is not None else ()
        write_crl(ca, ledger, copies=copies)
    reloaded = False
    if pki.broker_pid_file is not None:
        try:
            pid = int(Path(pki.broker_pid_file).read_text().strip())
        except (OSError, ValueError) as e:
            raise RevocationError(f"Cannot read the broker's pid from {pki.broker_pid_file}: {e}; "
                                  "reload it by hand (systemctl reload mosquitto).") from e
        reload_broker(pid)
        reloaded = True
    return serials, reloaded


def revoke_device(registry: RegistryStore, device_id: str, *, revoked_by: str, reason: str,
                  command_key: Ed25519PrivateKey | None, send: Send | None, pki: PkiTarget | None,
                  now: datetime | None = None) -> Revocation:
    """Revoke ``device_id`` (registered with central); see the module docstring for the order."""
    validate_device_id(device_id)
    if registry.public_key(device_id) is None:
        raise RevocationError(f"{device_id} is not registered with central; check the device id.")
    moment = now or datetime.now(UTC)
    result = Revocation(device_id, registry.revoke_device(device_id, revoked_by, reason, moment))
    if command_key is not None and send is not None:
        command = FleetCommand.sign(command_key, device_id, "wipe", now=moment)
        result.wipe_sent = send(fleet_command_topic(device_id), command.to_bytes())
        if not result.wipe_sent:
            logger.error("the broker did not accept the wipe for %s", device_id)
    if pki is not None:
        result.certificates, result.broker_reloaded = _revoke_certificates(device_id, pki, moment)
    logger.warning("%s", result.summary())
    return result
