"""Central's fleet-command key rotation at the desk: a ``rekey`` signed by the trusted key moves trust on.

``python -m central devices rotate-command-key`` sends each desk a ``rekey`` command (``core.fleet``) carrying
central's new public key, signed with the key being retired. The desk accepts it only if the key it trusts now
signed it, it names this desk, it was issued within ``REKEY_WINDOW`` (the broker keeps it that long for a desk
that is off: the persistent session's lifetime) and its nonce is new (a ledger on disk, as for resend requests).
It then stores the new key (``TrustedCentralKey.rotate``: written and fsynced before it is used) and from then
on believes only what the new key signed, after a restart too. The accepted rotation is recorded in the audit
log (``command_key_rotated``, with both keys' fingerprints); a refused rekey (another key, another desk, stale,
replayed, malformed) is recorded as ``request_refused`` / ``fleet_command_refused`` and changes nothing.

The key is stored before the nonce: a power cut between the two leaves a desk that trusts the new key, and the
broker's redelivery of the same rekey is then refused because the old key no longer counts. The other order
could leave a used nonce and the old key, a desk that would never rotate.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.services.audit import AuditLog
from appliance.services.fleet_commands import record_refusal
from appliance.storage.central_key import TrustedCentralKey
from core.errors import WireFormatError
from core.fleet import REKEY_WINDOW, CommandRefused, FleetCommand, NonceLedger, public_key_raw_hex

logger = logging.getLogger(__name__)

NONCES = "rekey-nonces.json"


class RekeyService:
    """Verifies ``rekey`` commands (the fleet-command topic's handler) and rotates the trusted key."""

    def __init__(self, device_id: str, central_key: TrustedCentralKey, audit: AuditLog, data_dir: Path) -> None:
        self._device_id, self._key, self._audit = device_id, central_key, audit
        self._nonces = NonceLedger(REKEY_WINDOW, path=Path(data_dir) / NONCES)
        self._lock = threading.Lock()  # one rekey at a time: checked, stored and recorded together
        self.refused: list[str] = []

    def handle(self, payload: bytes, now: datetime | None = None) -> bool:
        """True if the rekey was accepted and the desk now trusts the new key; False if it was refused."""
        with self._lock:
            try:
                command = FleetCommand.from_bytes(payload)
                if command.command != "rekey" or command.new_key is None:
                    raise CommandRefused(f"The {command.command} command is not a rekey.")
                command.verify(self._key.current, device_id=self._device_id, now=now, window=REKEY_WINDOW)
                self._nonces.check(command, now)
                new_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(command.new_key))
                if command.new_key == public_key_raw_hex(self._key.current):
                    raise CommandRefused("The rekey command names the key this desk already trusts.")
                if self._key.was_retired(command.new_key):
                    raise CommandRefused("The rekey command names a key this desk has rotated away from; it is "
                                         "never trusted again.")
            except (WireFormatError, CommandRefused, ValueError) as e:
                record_refusal(self._audit, self.refused, "rekey command", e)
                return False
            rotation = self._key.rotate(new_key, nonce=command.nonce, issued_at=command.issued_at)
            self._nonces.add(command, now)
        logger.warning("central's fleet-command key rotated: this desk now trusts %s instead of %s",
                       rotation.new_fingerprint, rotation.old_fingerprint)
        self._audit.record("command_key_rotated", "central", "rotated", old_key=rotation.old_fingerprint,
                           new_key=rotation.new_fingerprint, nonce=command.nonce, issued_at=command.issued_at)
        return True
