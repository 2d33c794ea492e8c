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

The "recent" test reads the desk's clock, so a clock set back would let an old, replayed wipe through. While
the clock is in doubt (``ClockGuard.doubt``) a command that central did sign for this desk is therefore
*held*, not judged: recorded (``request_refused``/``fleet_command_held``, with the reason in plain words) and
kept in the encrypted device database (``appliance.storage.held_commands``) with when it arrived, so a restart
does not lose it: central could not send it again to a revoked desk, which the CRL keeps off the broker. Once
central's time makes the clock trusted again, the held command is judged as of its arrival (now on the trusted
clock, less the monotonic time since; the monotonic clock counts since boot, so this survives a restart of the
service), so a fresh wipe still wipes and a replayed one is refused as stale. After a reboot the time since
arrival is unknown: the command is judged as of now, the latest it can have arrived, so a replay is never taken
as fresh (a genuine wipe held that long may be refused as stale; the refusal is audited and central, now in
touch, can send a new one).

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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.comms.mqtt import Publish
from appliance.services.audit import AuditLog
from appliance.services.fleet_commands import record_refusal
from appliance.storage.clock_readings import current_boot_id
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.held_commands import HeldCommand, HeldCommandStore
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
                 report_grace_s: float = REPORT_GRACE_S, clock_doubt: Callable[[], str | None] = lambda: None,
                 wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 boot_id: str | None = None) -> None:
        """``secrets`` are key paths (either form), ``trees`` directories and ``files`` plain files to remove.
        ``clock_doubt`` (``ClockGuard.doubt``), ``wall`` and ``monotonic`` (counting since boot): the desk's clocks;
        ``boot_id`` names this boot (the kernel's, by default), so a held command's arrival is read across a
        restart only within the boot it was counted in (see the module)."""
        self._clock_doubt, self._wall, self._monotonic = clock_doubt, wall, monotonic
        self._boot_id = boot_id if boot_id is not None else current_boot_id()
        self._held = HeldCommandStore(db)  # commands held on a doubtful clock, until judged
        self._any_held = bool(self._held.held())  # (so the sender's every turn need not ask the database)
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
            if command.command != "wipe":  # other commands have their own handler (``fleet_commands``)
                raise CommandRefused(f"The {command.command} command is not a wipe.")
            doubt = self._clock_doubt() if now is None else None
            if doubt is not None:  # central's and for this desk? Then held: how recent it is, no clock can say now
                command.verify(self._key, device_id=self._device_id, window=timedelta.max)
                self._hold(payload, command, doubt)
                return False
            command.verify(self._key, device_id=self._device_id, now=now or self._now())
            self._nonces.check_and_add(command, now or self._now())
        except (WireFormatError, CommandRefused) as e:
            record_refusal(self._audit, self.refused, "fleet command", e)
            return False
        # Durable before anything is reported: from here the wipe happens even if power fails.
        atomic_write(self._data_dir / PENDING, command.to_bytes(), 0o600)
        logger.warning("central ordered this desk wiped (command %s issued %s)", command.nonce, command.issued_at)
        self._audit.record("device_wiped", "central", "wipe_accepted", nonce=command.nonce,
                           issued_at=command.issued_at)
        self._accepted_at = time.monotonic()
        return True

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._wall(), UTC)

    def _hold(self, payload: bytes, command: FleetCommand, doubt: str) -> None:
        if not self._held.hold(HeldCommand(payload, self._wall(), self._monotonic(), self._boot_id)):
            return  # held already (a resend)
        self._any_held = True
        reason = (f"The {command.command} command (issued {command.issued_at}) is held, not carried out: this "
                  f"desk's clock is in doubt ({doubt}), so it cannot tell a fresh command from an old one replayed. "
                  f"It is judged when central's time confirms the clock.")[:400]
        self.refused.append(reason)
        logger.warning("held a fleet command: %s", reason)
        self._audit.record("request_refused", "central", "fleet_command_held", reason=reason, nonce=command.nonce,
                           issued_at=command.issued_at)

    def _arrived(self, held: HeldCommand) -> float:
        """When ``held`` arrived on the (now trusted) wall clock; after a reboot, now: the latest it can have."""
        since = self._monotonic() - held.arrived_since_boot
        if not held.boot_id or held.boot_id != self._boot_id or since < 0:
            return self._wall()
        return self._wall() - since

    def _judge_held(self) -> None:
        """The clock is trusted again: judge each held command as of when it arrived."""
        self._any_held = False
        for held in self._held.held():
            accepted = self.handle(held.payload, now=datetime.fromtimestamp(self._arrived(held), UTC))
            self._held.release(held.payload)
            if accepted:
                return

    def drain(self, publish: Publish, session: int) -> None:
        """The ``senders`` hook: judge held commands once the clock is trusted; once the wipe event is
        acknowledged (or the grace has passed), wipe."""
        if self._any_held and self._accepted_at is None and self._clock_doubt() is None:
            self._judge_held()
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
