"""The fleet registry: which desks may send (their Ed25519 audit keys) and which have been revoked.

Every message a desk sends is refused unless its key is here, and refused again once the desk is
revoked: the ingest of audit events, heartbeats and peer review requests all ask this store.
Revocations are a table of their own (not a column of ``audit_devices``, the registry's table
since before the registry had a store of its own) so existing databases need no migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from central.database import Dialect, SqlStore, StoreError, iso
from core.errors import WireFormatError

#: The rejection reason (and finding message prefix) for anything a revoked desk still sends.
REVOKED_REASON = "device revoked"
#: The audit finding recorded when a revoked desk still sends, shown on /audit.
REVOKED_FINDING = "revoked_device_message"

_MAX_REASON = 500


def _schema(dialect: Dialect) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS audit_devices (
            device_id TEXT PRIMARY KEY,
            public_key TEXT NOT NULL,
            registered_at TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS device_revocations (
            device_id TEXT PRIMARY KEY,
            revoked_at TEXT NOT NULL,
            revoked_by TEXT NOT NULL,
            reason TEXT NOT NULL)""",
    ]


class RegistryStore(SqlStore):
    """Device keys and revocations in SQLite (a path or ``sqlite:///path``) or PostgreSQL (``postgresql://``)."""

    def __init__(self, url: str | Path) -> None:
        super().__init__(url, schema=_schema, lock_id=772004, error=StoreError, what="device registry")
        self._key_cache: dict[str, str] = {}

    def register_device(self, device_id: str, public_key_hex: str, when: datetime | None = None) -> None:
        """Record (or replace) the device's Ed25519 public key."""
        with self._lock:
            self._execute(
                "INSERT INTO audit_devices (device_id, public_key, registered_at) VALUES (?, ?, ?)"
                " ON CONFLICT (device_id) DO UPDATE SET public_key = excluded.public_key,"
                " registered_at = excluded.registered_at",
                (device_id, public_key_hex, iso(when or datetime.now(UTC))))
            self._key_cache.pop(device_id, None)

    def require_registered(self, device_id: str) -> str:
        """The registered key (hex); a message from a device central does not know is refused as malformed."""
        key = self.public_key(device_id)
        if key is None:
            raise WireFormatError(f"Device {device_id!r} is not registered with central; its messages are refused.")
        return key

    def public_key(self, device_id: str) -> str | None:
        """The registered key (hex), or None: an unregistered device's messages are refused."""
        cached = self._key_cache.get(device_id)
        if cached:
            return cached
        with self._lock:
            key = self._scalar("SELECT public_key FROM audit_devices WHERE device_id = ?", (device_id,))
        if key:
            self._key_cache[device_id] = key
        return key

    def registered_devices(self) -> dict[str, str]:
        with self._lock:
            return {r["device_id"]: r["public_key"]
                    for r in self._rows("SELECT device_id, public_key FROM audit_devices ORDER BY device_id")}

    def revoke_device(self, device_id: str, revoked_by: str, reason: str, when: datetime | None = None) -> bool:
        """Mark the device revoked; False if it already was (the first revocation is kept)."""
        with self._lock:
            cur = self._execute("INSERT INTO device_revocations (device_id, revoked_at, revoked_by, reason)"
                                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                (device_id, iso(when or datetime.now(UTC)), revoked_by[:200], reason[:_MAX_REASON]))
            return bool(cur.rowcount == 1)

    def revocations(self) -> dict[str, dict[str, Any]]:
        """Every revoked device: when, by whom, why. Read fresh each time (the web app may revoke meanwhile)."""
        with self._lock:
            return {r["device_id"]: r for r in self._rows(
                "SELECT device_id, revoked_at, revoked_by, reason FROM device_revocations")}
