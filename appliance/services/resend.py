"""Central's signed request to send again the audit events it lost when it was restored from a backup.

Central restored last night's backup no longer holds what desks sent (and it acknowledged) after it; the
desks dropped those rows from their outboxes, though their logs keep every event. The operator runs
``python -m central devices request-resend --since <time of the backup>``; each desk verifies the signed
``resend`` command (``core.fleet``: central's fleet-command key, addressed to this desk, issued within
``RESEND_WINDOW``, a nonce never used before, remembered on disk) and queues again every event it logged from
that moment on (``Outbox.requeue_since``). Central's ingest is idempotent by (device, seq): what it still holds
is counted as a duplicate and dropped, what it lost is stored, and the desk's chain closes its gap.

The request is checked on the MQTT thread (quick), and the events are queued on a thread of their own: a log of a
million events takes a while to page through, and the connection's thread must go on taking acks and commands
meanwhile. An accepted request is recorded (``events_resent``) once its events are queued; a refused one (forged,
for another desk, stale, replayed) is recorded as ``request_refused`` / ``fleet_command_refused`` and changes
nothing.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.services.audit import AuditLog
from appliance.services.fleet_commands import record_refusal
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
        self._queueing = threading.Lock()  # one requeue at a time, in the order accepted
        self.refused: list[str] = []
        self.workers: list[threading.Thread] = []

    def handle(self, payload: bytes, now: datetime | None = None) -> bool:
        """The command's handler: True once an accepted request's requeue has started (on its own thread),
        False if the request was refused."""
        with self._lock:
            try:
                command = FleetCommand.from_bytes(payload)
                if command.command != "resend" or command.since is None:
                    raise CommandRefused(f"The {command.command} command is not a resend request.")
                command.verify(self._key, device_id=self._device_id, now=now, window=RESEND_WINDOW)
                self._nonces.check_and_add(command, now)
            except (WireFormatError, CommandRefused) as e:
                record_refusal(self._audit, self.refused, "resend request", e)
                return False
            worker = threading.Thread(target=self._requeue, args=(command,), name="resend-requeue", daemon=True)
            self.workers = [*(w for w in self.workers if w.is_alive()), worker]
            worker.start()
        return True

    def _requeue(self, command: FleetCommand) -> None:
        since = aware_time(command.since, "since")
        with self._queueing:
            try:
                queued, first = self._outbox.requeue_since(since)
            except Exception as e:  # a full disk or a damaged page: said, and central can ask again
                logger.exception("could not queue the events central asked for again")
                self._audit.record("events_resent", "central", "failed", since=command.since, nonce=command.nonce,
                                   reason=str(e)[:200])
                return
        logger.warning("central asked for the events logged since %s again: %d queued from seq %d",
                       command.since, queued, first)
        self._audit.record("events_resent", "central", "requeued", since=command.since, nonce=command.nonce,
                           issued_at=command.issued_at, queued=queued, from_seq=first or None)
