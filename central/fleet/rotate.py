"""Rotating central's fleet-command key: each desk is told the new public key in a command the old key signs.

``python -m central devices rotate-command-key --config central.toml [--by NAME]``:

1. makes the new key in ``<command_key>.next`` (0600) and keeps the old one as
   ``<command_key>.retired-<fingerprint>`` (the record of what signed before);
2. records the rotation here (who, when, both keys' fingerprints);
3. sends every registered, unrevoked desk a ``rekey`` command (``core.fleet``) carrying the new public key,
   signed with the old key, addressed to that desk, with its issue time and a fresh nonce; each is recorded
   before it leaves, and whether the broker took it;
4. once the broker took every one: writes the new ``<command_key>.pub`` (what a desk provisioned from now on is
   given) and renames ``.next`` over ``<command_key>``. A running ingest and announcer follow the file
   (``central.fleet.command_key``), so central signs acks, outcomes, announcements and commands with the new key
   from that moment on.

A desk that is connected accepts its rekey at once (``appliance.services.rekey``) and trusts only the new key
after it. A desk that is off finds its rekey waiting at the broker (QoS 1, the desk's persistent session), ahead
of any ack signed with the new key, and accepts it if it comes back within ``REKEY_WINDOW`` (7 days, the
session's lifetime); until then its acks are refused and its events stay queued on the desk, never lost. A desk
that comes back later (or was never connected, so has no session) must be re-provisioned by hand: its
``fleet_command_public_key`` set to the new ``.pub``.

Central switches once the broker has taken at least one rekey: a desk that took its rekey trusts only the new
key, so central must not go on signing with the old one (its acks, and a wipe for that desk, would be refused).
If the broker refused some rekeys, those desks still trust the old key until a run of the same command sends them
theirs, signed with the retired key (kept for exactly this); meanwhile what central signs for them is refused and
their events stay queued. If the broker took none, nothing is switched: ``.next`` stays and the next run finishes
*the same* rotation (same new key). ``.next`` is made durable (file and folder) before any desk is told of it.
So a crash or a broker outage at any step leaves a rotation that the next run completes, never a desk trusting a
key central has lost.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.database import Dialect, SqlStore, StoreError, iso
from central.fleet.registry_store import RegistryStore
from central.fleet.resend import Send
from central.fleet.revoke import load_command_key
from core.audit.checkpoint import public_key_pem
from core.errors import CustodyRfrError
from core.files import fsync_dir
from core.fleet import FleetCommand, key_fingerprint
from core.topics import fleet_command_topic
from devicekeys.files import write_atomic, write_private

logger = logging.getLogger(__name__)

class RotationError(CustodyRfrError):
    """A rotation could not be started (the message says what to change)."""


def _schema(_dialect: Dialect) -> list[str]:
    return ["""CREATE TABLE IF NOT EXISTS command_key_rotations (
        new_fingerprint TEXT PRIMARY KEY,
        old_fingerprint TEXT NOT NULL,
        rotated_by TEXT NOT NULL,
        started_at TEXT NOT NULL,
        switched_at TEXT,
        retired_file TEXT NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS command_key_rekeys (
        nonce TEXT PRIMARY KEY,
        new_fingerprint TEXT NOT NULL,
        device_id TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        sent INTEGER NOT NULL)"""]


class RotationLog(SqlStore):
    """Every rotation of the fleet-command key and every rekey command it sent: who, when, which keys, which desks."""

    def __init__(self, url: str | Path) -> None:
        super().__init__(url, schema=_schema, lock_id=772032, error=StoreError, what="command key rotation log")

    def started(self, old_fingerprint: str, new_fingerprint: str, rotated_by: str, when: datetime,
                retired: Path) -> None:
        """Record a rotation (once: a run that finishes a cut-short rotation keeps the first record)."""
        with self._lock:
            if self._scalar("SELECT 1 FROM command_key_rotations WHERE new_fingerprint = ?", (new_fingerprint,)):
                return
            self._execute("INSERT INTO command_key_rotations (new_fingerprint, old_fingerprint, rotated_by, "
                          "started_at, retired_file) VALUES (?, ?, ?, ?, ?)",
                          (new_fingerprint, old_fingerprint, rotated_by, iso(when), str(retired)))

    def switched(self, new_fingerprint: str, when: datetime) -> None:
        with self._lock:
            self._execute("UPDATE command_key_rotations SET switched_at = ? WHERE new_fingerprint = ?",
                          (iso(when), new_fingerprint))

    def record_rekey(self, command: FleetCommand, new_fingerprint: str) -> None:
        with self._lock:
            self._execute("INSERT INTO command_key_rekeys (nonce, new_fingerprint, device_id, issued_at, sent) "
                          "VALUES (?, ?, ?, ?, 0)", (command.nonce, new_fingerprint, command.device_id,
                                                     command.issued_at))

    def mark_sent(self, nonce: str) -> None:
        with self._lock:
            self._execute("UPDATE command_key_rekeys SET sent = 1 WHERE nonce = ?", (nonce,))

    def sent_to(self, new_fingerprint: str) -> set[str]:
        """The desks the broker took a rekey to ``new_fingerprint`` for."""
        with self._lock:
            return {r["device_id"] for r in self._rows(
                "SELECT device_id FROM command_key_rekeys WHERE new_fingerprint = ? AND sent = 1", (new_fingerprint,))}

    def behind(self, new_fingerprint: str) -> list[str]:
        """Desks sent a rekey to ``new_fingerprint`` that the broker never took (they still trust the old key)."""
        with self._lock:
            rows = self._rows("SELECT device_id FROM command_key_rekeys WHERE new_fingerprint = ? GROUP BY device_id "
                              "HAVING MAX(sent) = 0", (new_fingerprint,))
        return sorted(str(r["device_id"]) for r in rows)

    def switched_rotation(self, new_fingerprint: str) -> dict[str, object] | None:
        """The rotation that switched central to ``new_fingerprint``, if one did."""
        with self._lock:
            rows = self._rows("SELECT old_fingerprint, retired_file FROM command_key_rotations WHERE new_fingerprint "
                              "= ? AND switched_at IS NOT NULL", (new_fingerprint,))
        return rows[0] if rows else None

    def rotations(self) -> list[dict[str, object]]:
        with self._lock:
            return self._rows("SELECT new_fingerprint, old_fingerprint, rotated_by, started_at, switched_at, "
                              "retired_file FROM command_key_rotations ORDER BY started_at")

    def rekeys(self) -> list[dict[str, object]]:
        with self._lock:
            return self._rows("SELECT nonce, new_fingerprint, device_id, issued_at, sent FROM command_key_rekeys "
                              "ORDER BY issued_at, device_id")


@dataclass
class Rotation:
    """What a run of the rotation did."""

    old_fingerprint: str
    new_fingerprint: str
    retired: Path
    resumed: bool
    sent: list[str] = field(default_factory=list)
    not_sent: list[str] = field(default_factory=list)
    switched: bool = False

    def summary(self) -> str:
        head = (f"fleet-command key {self.old_fingerprint} -> {self.new_fingerprint}"
                + (" (finishing the rotation started before)" if self.resumed else ""))
        if not self.switched:
            return (f"{head}: the broker did not take the rekey for {', '.join(self.not_sent)}; central still signs "
                    f"with the old key. Run the same command again once the broker is reachable: it finishes this "
                    f"rotation.")
        if self.not_sent:
            return (f"{head}: central now signs with the new key, but the broker did not take the rekey for "
                    f"{', '.join(self.not_sent)}: those desks refuse what central signs until they have it. Run "
                    f"the same command again once the broker is reachable: it sends theirs, signed with "
                    f"{self.retired.name}.")
        return (f"{head}: rekey sent to {len(self.sent)} desk(s); central now signs with the new key (the old one "
                f"is kept as {self.retired.name}). A desk that is off accepts its rekey when it reconnects within 7 "
                f"days; one off longer must be re-provisioned with the new .pub by hand.")


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def rotate_command_key(key_path: Path, registry: RegistryStore, log: RotationLog, *, rotated_by: str, send: Send,
                       now: datetime | None = None) -> Rotation:
    """Rotate the key in ``key_path`` (``[fleet] command_key``); see the module docstring for the steps."""
    key_path = Path(key_path)
    moment = now or datetime.now(UTC)
    old = load_command_key(key_path)
    following = key_path.with_name(key_path.name + ".next")
    resumed = following.exists()
    if not resumed:
        switched_to = log.switched_rotation(key_fingerprint(old.public_key()))
        if switched_to is not None and log.behind(key_fingerprint(old.public_key())):
            return _catch_up(old, switched_to, log, send, moment)
    if resumed:
        new = load_command_key(following)
        if key_fingerprint(new.public_key()) == key_fingerprint(old.public_key()):
            raise RotationError(f"{following} holds the key already in use; remove it and run the command again.")
    else:
        new = Ed25519PrivateKey.generate()
        write_private(following, _pem(new))  # on disk (the folder's entry too) before any desk is told of it
        fsync_dir(following.parent)
    old_fp, new_fp = key_fingerprint(old.public_key()), key_fingerprint(new.public_key())
    retired = key_path.with_name(f"{key_path.name}.retired-{old_fp}")
    if not retired.exists():
        write_private(retired, key_path.read_bytes())
        fsync_dir(retired.parent)
    log.started(old_fp, new_fp, rotated_by, moment, retired)
    result = Rotation(old_fp, new_fp, retired, resumed)
    revoked, done = set(registry.revocations()), log.sent_to(new_fp)
    devices = [d for d in registry.registered_devices() if d not in revoked and d not in done]
    _send_rekeys(devices, old, new, new_fp, log, send, moment, result)
    if result.not_sent and not result.sent and not done:
        logger.error("%s", result.summary())  # no desk has the new key: central keeps the old one
        return result
    # The switch: the public half first (a desk provisioned now is given the new key), then the key central signs
    # with, in one rename. A crash between the two leaves ``.next``, and the next run finishes the rotation.
    write_atomic(key_path.with_name(key_path.name + ".pub"), public_key_pem(new.public_key()))
    os.replace(following, key_path)
    fsync_dir(key_path.parent)
    log.switched(new_fp, datetime.now(UTC))
    result.switched = True
    logger.warning("%s", result.summary())
    return result


def _send_rekeys(devices: list[str], signer: Ed25519PrivateKey, new: Ed25519PrivateKey, new_fp: str,
                 log: RotationLog, send: Send, moment: datetime, result: Rotation) -> None:
    for device in devices:
        command = FleetCommand.sign(signer, device, "rekey", now=moment, new_key=new.public_key())
        log.record_rekey(command, new_fp)  # recorded before it leaves: no rekey goes out unrecorded
        if send(fleet_command_topic(device), command.to_bytes()):
            log.mark_sent(command.nonce)
            result.sent.append(device)
        else:
            logger.error("the broker did not accept the rekey for %s", device)
            result.not_sent.append(device)


def _catch_up(current: Ed25519PrivateKey, done: dict[str, object], log: RotationLog, send: Send,
              moment: datetime) -> Rotation:
    """Central already switched to ``current``; the desks whose rekey the broker refused still trust the key it
    replaced: send theirs, signed with that retired key."""
    retired = Path(str(done["retired_file"]))
    if not retired.exists():
        raise RotationError(f"{retired} (the key the desks behind still trust) is gone: re-provision "
                            f"{', '.join(log.behind(key_fingerprint(current.public_key())))} by hand.")
    new_fp = key_fingerprint(current.public_key())
    result = Rotation(str(done["old_fingerprint"]), new_fp, retired, resumed=True, switched=True)
    _send_rekeys(log.behind(new_fp), load_command_key(retired), current, new_fp, log, send, moment, result)
    (logger.error if result.not_sent else logger.warning)("%s", result.summary())
    return result
