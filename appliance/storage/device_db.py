"""The device's own encrypted database: the audit log, its outbox, and later accounts.

Its SQLCipher key is stored through ``devicekeys.keys``: sealed to the TPM when
the desk's key policy gives one (no key file on disk at all), else a 0600 file
that the health report flags as weaker. WAL with ``synchronous = FULL`` means a
committed audit event survives power loss.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlcipher3

from appliance.settings import ApplianceSettings
from appliance.storage.storage_faults import DamageRecord, integrity_problems
from devicekeys.keys import load_or_create_secret, tpm_for_policy
from devicekeys.tpm import Tpm
from library import cipher

KEY_NAME = "device.key"
DB_NAME = "device.db"


def desk_tpm(settings: ApplianceSettings) -> Tpm | None:
    """The TPM every desk key is sealed to under ``[keys]`` (docs/fleet.md): PCR policy ``[keys] pcrs`` AND the
    authorisation value from the desk's ``tpm-auth.secret``; None for 0600 files."""
    return tpm_for_policy(settings.keys.protection, data_dir=settings.data_dir, pcrs=settings.keys.pcrs)


def _new_key_text() -> bytes:
    # The same 65-byte hex form the file fallback has always used; it fits a TPM seal (128 bytes).
    return cipher.new_key().hex().encode() + b"\n"


class DeviceDatabase:
    """One connection shared by the app's threads, serialised by a lock.

    ``tpm``: where a new key is sealed (and an existing file key moved); None keeps the file fallback.
    A key already sealed is always unsealed, from ``tpm`` or the TPM the environment names.
    """

    def __init__(self, data_dir: Path, tpm: Tpm | None = None) -> None:
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.tpm = tpm
        self.key_path = data_dir / KEY_NAME
        key = bytes.fromhex(load_or_create_secret(self.key_path, tpm, _new_key_text).decode().strip())
        self.path = data_dir / DB_NAME
        self._key = key  # for a proof of deletion: its pages are decrypted and searched (storage.page_scan)
        self.conn: sqlcipher3.Connection = self._connect()
        self.lock = threading.RLock()
        self.closed = False
        # Every page's HMAC checked once at open: damage is reported from the start, never found by chance later.
        self.damage = DamageRecord()
        self.damage.note(integrity_problems(self.conn, self.lock))

    def _connect(self) -> sqlcipher3.Connection:
        conn = cipher.connect(self.path, self._key, create=True)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def reopen(self) -> None:
        """A fresh connection after a damaged page was read: SQLCipher leaves the connection that met the bad
        HMAC refusing every write, so without this the desk could not even record the damage."""
        with self.lock:
            if self.closed:
                return
            self.conn.close()
            self.conn = self._connect()

    @contextmanager
    def transaction(self) -> Iterator[sqlcipher3.Connection]:
        """Writes committed together at the end, or rolled back on any failure. SQLite leaves a transaction
        open when its COMMIT fails (a full disk): without the rollback the next, unrelated write would
        silently join it."""
        with self.lock:
            try:
                yield self.conn
                self.conn.commit()
            except BaseException:
                self.abandon()
                raise

    def abandon(self) -> None:
        """Roll back whatever transaction a failed write left open (no-op when none is)."""
        with self.lock:
            if not self.closed and self.conn.in_transaction:
                self.conn.rollback()

    def page_key(self) -> bytes:
        """The raw SQLCipher key, to decrypt pages when proving something was destroyed."""
        return self._key

    def close(self) -> None:
        with self.lock:
            if not self.closed:
                self.conn.close()
                self.closed = True
