"""After a restore: ask desks to send again the audit events logged since the backup, signed and recorded.

Central restored from last night's backup has lost the events desks sent (and it acknowledged) after it; the
desks no longer queue them, but their logs keep every one. ``python -m central devices request-resend --since
<time of the backup> (--device ID | --all)`` sends each desk a ``resend`` command signed with the fleet-command
key (``core.fleet``: addressed to that desk, with a fresh nonce) and records each request here, with who asked
and whether the broker took it. The desk checks the signature, the address and the nonce and queues those
events again (``appliance.services.resend``); central's ingest stores what it lacks and drops the rest as
duplicates (idempotent by device and seq), so each desk's chain closes its gap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.database import Dialect, SqlStore, StoreError, iso
from central.fleet.registry_store import RegistryStore
from core.errors import CustodyRfrError
from core.fleet import FleetCommand
from core.topics import fleet_command_topic, validate_device_id

logger = logging.getLogger(__name__)

#: Publishes one QoS 1 message and says whether the broker accepted it.
Send = Callable[[str, bytes], bool]


class ResendRequestError(CustodyRfrError):
    """A resend request could not be made (the message says what to change)."""


def _schema(_dialect: Dialect) -> list[str]:
    return ["""CREATE TABLE IF NOT EXISTS resend_requests (
        nonce TEXT PRIMARY KEY,
        device_id TEXT NOT NULL,
        since TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        sent INTEGER NOT NULL)"""]


class ResendLog(SqlStore):
    """Every resend request central sent: which desk, from when, who asked, whether the broker accepted it."""

    def __init__(self, url: str | Path) -> None:
        super().__init__(url, schema=_schema, lock_id=772031, error=StoreError, what="resend request log")

    def record(self, command: FleetCommand, requested_by: str, sent: bool) -> None:
        with self._lock:
            self._execute("INSERT INTO resend_requests (nonce, device_id, since, requested_by, requested_at, sent)"
                          " VALUES (?, ?, ?, ?, ?, ?)", (command.nonce, command.device_id, command.since,
                                                         requested_by, command.issued_at, int(sent)))

    def mark_sent(self, nonce: str) -> None:
        with self._lock:
            self._execute("UPDATE resend_requests SET sent = 1 WHERE nonce = ?", (nonce,))

    def requests(self) -> list[dict[str, object]]:
        with self._lock:
            return self._rows("SELECT nonce, device_id, since, requested_by, requested_at, sent FROM resend_requests"
                              " ORDER BY requested_at, device_id")


@dataclass(frozen=True)
class ResendRequest:
    device_id: str
    nonce: str
    sent: bool


def request_resend(registry: RegistryStore, log: ResendLog, *, since: datetime, devices: list[str] | None,
                   requested_by: str, command_key: Ed25519PrivateKey, send: Send,
                   now: datetime | None = None) -> list[ResendRequest]:
    """Send a signed ``resend`` to each of ``devices`` (None: every registered, unrevoked desk) and record it."""
    if since.tzinfo is None:
        raise ResendRequestError("--since must name its time zone (e.g. 2026-12-04T23:00:00+00:00).")
    moment = now or datetime.now(UTC)
    if since > moment:
        raise ResendRequestError(f"--since {iso(since)} is in the future: give the time the backup was taken.")
    registered = registry.registered_devices()
    revoked = set(registry.revocations())
    if devices is None:
        targets = [d for d in registered if d not in revoked]
    else:
        for device in devices:
            validate_device_id(device)
            if device not in registered:
                raise ResendRequestError(f"{device} is not registered with central; check the device id.")
            if device in revoked:
                raise ResendRequestError(f"{device} is revoked: central no longer accepts its events.")
        targets = list(devices)
    done = []
    for device in targets:
        command = FleetCommand.sign(command_key, device, "resend", now=moment, since=since)
        log.record(command, requested_by, False)  # recorded before it leaves: no request goes out unrecorded
        sent = send(fleet_command_topic(device), command.to_bytes())
        if sent:
            log.mark_sent(command.nonce)
        else:
            logger.error("the broker did not accept the resend request for %s", device)
        logger.warning("asked %s to resend its events since %s (nonce %s)", device, command.since, command.nonce)
        done.append(ResendRequest(device, command.nonce, sent))
    return done
