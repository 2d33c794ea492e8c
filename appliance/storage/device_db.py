"""The device's own encrypted database: the audit log, its outbox, and later accounts.

Its key lives in a 0600 file beside it until keys are sealed to a TPM by the
fleet work; the health report will say which protection is in use. WAL with
``synchronous = FULL`` means a committed audit event survives power loss.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlcipher3

from library import cipher


class DeviceDatabase:
    """One connection shared by the app's threads, serialised by a lock."""

    def __init__(self, data_dir: Path) -> None:
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        key_path = data_dir / "device.key"
        if not key_path.exists():
            cipher.write_key_file(key_path, cipher.new_key())
        self.path = data_dir / "device.db"
        self.conn: sqlcipher3.Connection = cipher.connect(self.path, cipher.read_key_file(key_path), create=True)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.lock = threading.RLock()

    def close(self) -> None:
        with self.lock:
            self.conn.close()
