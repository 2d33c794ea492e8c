"""The device's own encrypted database: the audit log, its outbox, and later accounts.

Its SQLCipher key is stored through ``devicekeys.keys``: sealed to the TPM when
the desk's key policy gives one (no key file on disk at all), else a 0600 file
that the health report flags as weaker. WAL with ``synchronous = FULL`` means a
committed audit event survives power loss.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlcipher3

from appliance.settings import ApplianceSettings
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
        self.conn: sqlcipher3.Connection = cipher.connect(self.path, key, create=True)
        self._key = key  # for a proof of deletion: its pages are decrypted and searched (storage.page_scan)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.lock = threading.RLock()
        self.closed = False

    def page_key(self) -> bytes:
        """The raw SQLCipher key, to decrypt pages when proving something was destroyed."""
        return self._key

    def close(self) -> None:
        with self.lock:
            if not self.closed:
                self.conn.close()
                self.closed = True
