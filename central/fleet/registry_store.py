"""The fleet registry: which desks may send (their Ed25519 audit keys), which have been revoked, and
the X25519 key-wrapping key each desk receives library and configuration keys under.

Every message a desk sends is refused unless its key is here, and refused again once the desk is
revoked: the ingest of audit events, heartbeats and peer review requests all ask this store.
Revocations are a table of their own (not a column of ``audit_devices``, the registry's table
since before the registry had a store of its own) so existing databases need no migration.
``wrap_public_key`` was added to ``audit_devices`` later: a database made before gains the column
when central opens it (empty: that desk receives no wrapped keys until it is registered again with
``--wrap-key``). ``library_key_grants`` records which desks each library content key was wrapped
for, so the next publication knows when a revoked desk still holds the current key and re-keys.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from central.database import Dialect, SqlStore, StoreError, added_columns, iso
from core.errors import WireFormatError

#: The rejection reason (and finding message prefix) for anything a revoked desk still sends.
REVOKED_REASON = "device revoked"
#: The audit finding recorded when a revoked desk still sends, shown on /audit.
REVOKED_FINDING = "revoked_device_message"

_MAX_REASON = 500
# Columns added to audit_devices since it was first made: an older database gains them when central opens it.
_ADDED_COLUMNS = (("wrap_public_key", "TEXT"),)


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
        """CREATE TABLE IF NOT EXISTS library_key_grants (
            key_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            granted_at TEXT NOT NULL,
            PRIMARY KEY (key_id, device_id))""",
        *added_columns(dialect, "audit_devices", _ADDED_COLUMNS),
    ]


class RegistryStore(SqlStore):
    """Device keys and revocations in SQLite (a path or ``sqlite:///path``) or PostgreSQL (``postgresql://``)."""

    def __init__(self, url: str | Path) -> None:
        super().__init__(url, schema=_schema, lock_id=772004, error=StoreError, what="device registry")
        try:
            self._add_missing_columns("audit_devices", _ADDED_COLUMNS)
        except Exception as e:  # sqlite3.Error: the same one line as a store that cannot open
            self.close()
            raise StoreError(f"Cannot open the device registry: {e}") from e
        self._key_cache: dict[str, str] = {}

    def register_device(self, device_id: str, public_key_hex: str, when: datetime | None = None,
                        wrap_public_key_hex: str | None = None) -> None:
        """Record (or replace) the device's Ed25519 public key and, if given, its X25519 key-wrapping key
        (a registration without one keeps the wrapping key already registered)."""
        with self._lock:
            self._execute(
                "INSERT INTO audit_devices (device_id, public_key, registered_at, wrap_public_key) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (device_id) DO UPDATE SET public_key = excluded.public_key,"
                " registered_at = excluded.registered_at,"
                " wrap_public_key = COALESCE(excluded.wrap_public_key, audit_devices.wrap_public_key)",
                (device_id, public_key_hex, iso(when or datetime.now(UTC)), wrap_public_key_hex))
            self._key_cache.pop(device_id, None)

    def wrapping_keys(self) -> dict[str, str]:
        """Every registered, unrevoked desk with a key-wrapping key: who central wraps library keys for."""
        with self._lock:
            rows = self._rows("SELECT d.device_id, d.wrap_public_key FROM audit_devices d"
                              " WHERE d.wrap_public_key IS NOT NULL AND NOT EXISTS"
                              " (SELECT 1 FROM device_revocations r WHERE r.device_id = d.device_id)"
                              " ORDER BY d.device_id")
        return {r["device_id"]: r["wrap_public_key"] for r in rows}

    def wrapping_key(self, device_id: str) -> str | None:
        with self._lock:
            return self._scalar("SELECT wrap_public_key FROM audit_devices WHERE device_id = ?", (device_id,))

    def record_grants(self, key_id: str, devices: list[str], when: datetime | None = None) -> None:
        """Remember that ``key_id`` was wrapped for ``devices`` (a repeat grant is kept once)."""
        moment = iso(when or datetime.now(UTC))
        with self._write_transaction():
            for device in devices:
                self._execute("INSERT INTO library_key_grants (key_id, device_id, granted_at) VALUES (?, ?, ?)"
                              " ON CONFLICT DO NOTHING", (key_id, device, moment))

    def revoked_holders(self, key_id: str) -> list[str]:
        """Revoked desks that were given ``key_id``: while there is one, that key must not encrypt anything new."""
        with self._lock:
            rows = self._rows("SELECT g.device_id FROM library_key_grants g JOIN device_revocations r"
                              " ON r.device_id = g.device_id WHERE g.key_id = ? ORDER BY g.device_id", (key_id,))
        return [r["device_id"] for r in rows]

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
