"""Fleet commands held on a doubted clock, kept in the encrypted device database until they are judged.

A wipe that arrives while the desk's clock is in doubt is held, not judged (``appliance.services.wipe``). Held
only in memory, a restart would lose it; and a revoked desk cannot reconnect to be sent it again (its
certificate is on the CRL), so a lost hold would be a wipe lost. Each row keeps the signed command as received
and when it arrived: the wall clock (doubted, for the record only), the monotonic clock since boot and the boot it
counts from, so a restart within the same boot still knows how long ago it arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.storage.device_db import DeviceDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS held_fleet_commands (
    payload BLOB PRIMARY KEY,
    arrived_wall REAL NOT NULL,
    arrived_since_boot REAL NOT NULL,
    boot_id TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class HeldCommand:
    """One held command as received, and when."""

    payload: bytes
    arrived_wall: float
    arrived_since_boot: float
    boot_id: str


class HeldCommandStore:
    def __init__(self, db: DeviceDatabase) -> None:
        self._db = db
        with db.lock:
            db.conn.executescript(_SCHEMA)

    def hold(self, held: HeldCommand) -> bool:
        """Keep ``held``; False when the same command is already held (a resend)."""
        with self._db.transaction() as conn:
            cur = conn.execute("INSERT OR IGNORE INTO held_fleet_commands VALUES (?, ?, ?, ?)",
                               (held.payload, held.arrived_wall, held.arrived_since_boot, held.boot_id))
            return cur.rowcount == 1

    def held(self) -> list[HeldCommand]:
        with self._db.lock:
            rows = self._db.conn.execute("SELECT payload, arrived_wall, arrived_since_boot, boot_id FROM "
                                         "held_fleet_commands ORDER BY arrived_wall").fetchall()
        return [HeldCommand(bytes(r[0]), float(r[1]), float(r[2]), str(r[3])) for r in rows]

    def release(self, payload: bytes) -> None:
        """The command has been judged (carried out or refused): no longer held."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM held_fleet_commands WHERE payload = ?", (payload,))
