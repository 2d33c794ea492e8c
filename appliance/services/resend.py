"""Central's signed request to send again the audit events it lost when it was restored from a backup.

Central restored last night's backup no longer holds what desks sent (and it acknowledged) after it; the
desks dropped those rows from their outboxes, though their logs keep every event. The operator runs
``python -m central devices request-resend --since <time of the backup>``; each desk verifies the signed
``resend`` command (``core.fleet``: central's fleet-command key, addressed to this desk, issued within
``RESEND_WINDOW``, a nonce never used before, remembered on disk) and queues again every event it logged from
that moment on (``Outbox.requeue_since``). Central's ingest is idempotent by (device, seq): what it still holds
is counted as a duplicate and dropped, what it lost is stored, and the desk's chain closes its gap.

An accepted request is recorded (``events_resent``); a refused one (forged, for another desk, stale, replayed)
is recorded as ``request_refused`` / ``fleet_command_refused`` and changes nothing.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.services.audit import AuditLog
from appliance.storage.outbox import Outbox
from core.errors import WireFormatError
from core.fleet import RESEND_WINDOW, CommandRefused, FleetCommand, NonceLedger
from core.wire import aware_time

logger = logging.getLogger(__name__)

NONCES = "resend-nonces.json"


class ResendService:
    """Verifies ``resend`` commands (MQTT handler) and queues the asked-for events again."""

    def __init__(self, device_id: str, command_key: Ed25519PublicKey, audit: AuditLog, outbox: Outbox,
                 data_dir: Path) -> None:
        self._device_id, self._key, self._audit, self._outbox = device_id, command_key, audit, outbox
        self._nonces = NonceLedger(RESEND_WINDOW, path=Path(data_dir) / NONCES)
        self._lock = threading.Lock()  # one request at a time: the ledger is read, checked and written
        self.refused: list[str] = []

    def handle(self, payload: bytes, now: datetime | None = None) -> int | None:
        """The command's handler: the number of events queued again, or None if the request was refused."""
        with self._lock:
            try:
                command = FleetCommand.from_bytes(payload)
                if command.command != "resend" or command.since is None:
                    raise CommandRefused(f"The {command.command} command is not a resend request.")
                command.verify(self._key, device_id=self._device_id, now=now, window=RESEND_WINDOW)
                self._nonces.check_and_add(command, now)
            except (WireFormatError, CommandRefused) as e:
                reason = str(e)[:200]
                self.refused.append(reason)
                logger.warning("refused a resend request: %s", reason)
                self._audit.record("request_refused", "central", "fleet_command_refused", reason=reason)
                return None
            queued, first = self._outbox.requeue_since(aware_time(command.since, "since"))
        logger.warning("central asked for the events logged since %s again: %d queued from seq %d",
                       command.since, queued, first)
        self._audit.record("events_resent", "central", "requeued", since=command.since, nonce=command.nonce,
                           issued_at=command.issued_at, queued=queued, from_seq=first or None)
        return queued
