"""The last wall-clock reading the desk trusted before a doubt, kept so a service restart keeps its estimate.

While the clock is doubted, ``ClockGuard.limits_now`` tests every end (an authorisation's last day, an expiry)
against the last trusted reading plus the monotonic time since. Held only in memory, a restart under the doubt
(an update, a crash) left no estimate, and the desk refused every search until central's time cleared the doubt.
The time since boot (``CLOCK_BOOTTIME``) survives a service restart but not a reboot, so the reading is kept
with the boot it counts from and used only within that boot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.storage.device_db import DeviceDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clock_trusted_reading (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    wall REAL NOT NULL,
    since_boot REAL NOT NULL,
    boot_id TEXT NOT NULL
);
"""


def current_boot_id() -> str:
    """This boot's id from the kernel (a new one at every boot); "" where there is none to read."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class TrustedReading:
    """The wall clock as last trusted, and the time since boot it was read at."""

    wall: float
    since_boot: float
    boot_id: str


class TrustedReadingStore:
    def __init__(self, db: DeviceDatabase) -> None:
        self._db = db
        with db.lock:
            db.conn.executescript(_SCHEMA)

    def keep(self, wanted: Callable[[], TrustedReading | None], saved: TrustedReading | None) -> TrustedReading | None:
        """Store what ``wanted()`` says (or nothing) if it differs from ``saved``; returns it. ``wanted`` is called
        under the database's lock, so the reading stored is never an older one written after a newer."""
        with self._db.lock:
            reading = wanted()
            if reading != saved:
                if reading is None:
                    self.forget()
                else:
                    self.remember(reading)
            return reading

    def remember(self, reading: TrustedReading) -> None:
        with self._db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO clock_trusted_reading VALUES (1, ?, ?, ?)",
                         (reading.wall, reading.since_boot, reading.boot_id))

    def forget(self) -> None:
        """No reading to go on (the clock is trusted again, or was wrong before the doubt)."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM clock_trusted_reading")

    def recall(self) -> TrustedReading | None:
        with self._db.lock:
            row = self._db.conn.execute("SELECT wall, since_boot, boot_id FROM clock_trusted_reading").fetchone()
        return None if row is None else TrustedReading(float(row[0]), float(row[1]), str(row[2]))
