"""The remote wipe: central's signed command makes a revoked desk destroy its keys and library.

Central revokes a desk (lost, stolen, decommissioned) and sends it a ``wipe`` command signed
with the fleet-command key whose public half the desk got at provisioning. The command is
refused unless that key signed it, it names this desk, it is recent and its nonce is new
(``core.fleet``); a refusal is recorded in the audit log and changes nothing else.

An accepted wipe is first made durable: the desk writes (and fsyncs) a ``WIPE-PENDING`` marker and
the command's nonce before it records or reports anything, so a power cut in the grace period
cannot leave keys in place: the next start finishes the wipe before serving anything
(:meth:`WipeService.resume_pending`). The revoked desk's certificate is on the CRL by then, so
the command would never arrive a second time.

An accepted wipe is recorded (``device_wiped``) and the desk tries for a few seconds to get
that event to central, then destroys, in order: the library store and the shipped library
and its key, the device database and its key, the audit signing key and the TLS key, and
leaves a ``WITHDRAWN`` marker (no secret) so the web app, now and after a restart, shows
only "This device has been withdrawn". Sealed keys go with their TPM blobs; file keys are
overwritten before they are removed.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.comms.mqtt import Publish
from appliance.services.audit import AuditLog
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox
from core.audit.checkpoint import public_key_from_bytes
from core.audit.errors import KeyFormatError
from core.errors import CustodyRfrError, SettingsError, WireFormatError
from core.files import atomic_write
from core.fleet import CommandRefused, FleetCommand, NonceLedger
from devicekeys.keys import destroy_secret

logger = logging.getLogger(__name__)

MARKER = "WITHDRAWN"
PENDING = "WIPE-PENDING"
NONCES = "fleet-command-nonces.json"
REPORT_GRACE_S = 5.0
WITHDRAWN_MESSAGE = "This device has been withdrawn. Call the RFR helpdesk."


class DeskWithdrawnError(CustodyRfrError):
    """The desk finished a wipe while starting: there is nothing left to open."""


def is_withdrawn(data_dir: Path) -> bool:
    """True once this desk has been wiped (checked before anything else at start)."""
    return (Path(data_dir) / MARKER).exists()


def load_command_key(path: Path) -> Ed25519PublicKey:
    """Central's fleet-command public key, as installed at provisioning: it verifies the wipe here, and the
    runtime gives it to everything else central signs (acks, peer review outcomes, announcements)."""
    try:
        return public_key_from_bytes(Path(path).read_bytes())
    except FileNotFoundError as e:
        raise SettingsError(f"fleet_command_public_key {path} does not exist: copy central's "
                            "fleet-command.pub there (python -m central devices command-key).") from e
    except KeyFormatError as e:
        raise SettingsError(f"fleet_command_public_key {path} is not an Ed25519 public key: {e}") from e


class WipeService:
    """Verifies wipe commands (MQTT handler) and carries out an accepted one (sender hook)."""

    def __init__(self, device_id: str, command_key: Ed25519PublicKey, audit: AuditLog, outbox: Outbox,
                 db: DeviceDatabase, *, secrets: Sequence[Path], trees: Sequence[Path], files: Sequence[Path],
                 report_grace_s: float = REPORT_GRACE_S) -> None:
        """``secrets`` are key paths (either form), ``trees`` directories and ``files`` plain files to remove."""
        self._device_id = device_id
        self._key = command_key
        self._audit = audit
        self._outbox = outbox
        self._db = db
        self._secrets = list(secrets)
        self._trees = list(trees)
        self._files = list(files)
        self._grace_s = report_grace_s
        self._data_dir = Path(db.data_dir)
        self._nonces = NonceLedger(path=self._data_dir / NONCES)
        self._accepted_at: float | None = None
        self._on_withdrawn: list[Callable[[], None]] = []
        self.withdrawn = threading.Event()
        self.refused: list[str] = []

    def on_withdrawn(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (stop the sender, the updater) once the keys are gone."""
        self._on_withdrawn.append(callback)

    @property
    def pending(self) -> bool:
        """An accepted wipe not yet finished (this run, or one cut short by a crash or power loss)."""
        return (self._data_dir / PENDING).exists() and not self.withdrawn.is_set()

    def resume_pending(self) -> bool:
        """At start: finish a wipe accepted before a crash, before anything is served. True if it wiped."""
        if not self.pending:
            return False
        logger.warning("a wipe accepted before the last shutdown was not finished: wiping now")
        self.wipe()
        return True

    def handle(self, payload: bytes, now: datetime | None = None) -> bool:
        """The command topic's handler: True if a wipe was accepted (carried out by :meth:`drain`)."""
        if self._accepted_at is not None or self.withdrawn.is_set() or self.pending:
            return False
        try:
            command = FleetCommand.from_bytes(payload)
            command.verify(self._key, device_id=self._device_id, now=now)
            self._nonces.check_and_add(command, now)
        except (WireFormatError, CommandRefused) as e:
            reason = str(e)[:200]
            self.refused.append(reason)
            logger.warning("refused a fleet command: %s", reason)
            self._audit.record("request_refused", "central", "fleet_command_refused", reason=reason)
            return False
        # Durable before anything is reported: from here the wipe happens even if power fails.
        atomic_write(self._data_dir / PENDING, command.to_bytes(), 0o600)
        logger.warning("central ordered this desk wiped (command %s issued %s)", command.nonce, command.issued_at)
        self._audit.record("device_wiped", "central", "wipe_accepted", nonce=command.nonce,
                           issued_at=command.issued_at)
        self._accepted_at = time.monotonic()
        return True

    def drain(self, publish: Publish, session: int) -> None:
        """The ``senders`` hook: once the wipe event is acknowledged (or the grace has passed), wipe."""
        if self._accepted_at is None or self.withdrawn.is_set():
            return
        reported = self._outbox.depth() == 0
        if reported or time.monotonic() - self._accepted_at >= self._grace_s:
            logger.warning("wiping now (report %s)", "acknowledged by central" if reported else "not acknowledged")
            self.wipe()

    def wipe(self) -> None:
        """Destroy keys and library, leave the marker, stop the desk's background work."""
        try:
            self._outbox.sign_tail()  # best effort: the final event is signed in what remains sent
        except Exception:
            logger.exception("could not sign the audit tail before the wipe")
        self._db.close()
        data_dir = self._data_dir
        atomic_write(data_dir / MARKER, b"Withdrawn by central.\n")
        for tree in self._trees:
            shutil.rmtree(tree, ignore_errors=True)
        for secret in [self._db.key_path, *self._secrets]:
            try:
                destroy_secret(secret)
            except OSError:
                logger.exception("could not destroy %s", secret)
        for path in [self._db.path, self._db.path.with_name(self._db.path.name + "-wal"),
                     self._db.path.with_name(self._db.path.name + "-shm"), *self._files]:
            Path(path).unlink(missing_ok=True)
        (data_dir / PENDING).unlink(missing_ok=True)
        self.withdrawn.set()
        for callback in self._on_withdrawn:
            try:
                callback()
            except Exception:
                logger.exception("after wipe: %r failed", callback)
