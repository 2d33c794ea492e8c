"""Central's signed configuration as applied on this desk, in the encrypted device database.

Applying one is a single transaction: the accounts it lists are created or
updated and the configuration row is written together, or nothing changes.
Accounts are never deleted (their names are in the audit trail); an account
the configuration disables stays, unable to sign in, and its sessions end.
Accounts the configuration does not list (made locally with
``python -m appliance accounts add``) are left as they are. A listed account's
authorisation to search is what the configuration says (none when it says
none); a change to it alone keeps the account's sessions, since the desk reads
it afresh at every submission and search.

The trust decisions (is this version newer, was it signed) are made before
this module is called, in ``appliance.updates.config``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from appliance.storage.accounts import AccountStore, authorisation_columns
from appliance.storage.device_db import DeviceDatabase
from core.desk_config import DeskConfig

_SCHEMA = """
CREATE TABLE IF NOT EXISTS desk_config (
    version INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    applied_at REAL NOT NULL,
    document TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class AppliedConfig:
    """The configuration in effect: the newest one applied."""

    version: int
    digest: str
    config: DeskConfig


@dataclass(frozen=True)
class AccountChanges:
    """What applying a configuration did to accounts, for the audit event."""

    created: list[str]
    updated: list[str]
    disabled: list[str]
    authorisations: list[str] = field(default_factory=list)  # listed accounts whose authorisation to search changed


class DeskConfigStore:
    def __init__(self, db: DeviceDatabase) -> None:
        self._db = db
        AccountStore(db)  # the accounts table this module writes to
        with db.lock:
            db.conn.executescript(_SCHEMA)
            db.conn.commit()

    def applied(self) -> AppliedConfig | None:
        with self._db.lock:
            row = self._db.conn.execute(
                "SELECT version, digest, document FROM desk_config ORDER BY version DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return AppliedConfig(int(row[0]), row[1], DeskConfig.parse(row[2].encode()))

    def top_k(self, default: int) -> int:
        """The number of candidates a search shows: central's value once applied, else the settings file's."""
        applied = self.applied()
        return applied.config.thresholds.top_k if applied else default

    def apply(self, config: DeskConfig, digest: str, now: float) -> AccountChanges:
        """Upsert the accounts and record the configuration, all in one transaction."""
        created, updated, disabled, authorisations = [], [], [], []
        with self._db.lock:
            conn = self._db.conn
            try:
                for account in config.accounts:
                    row = conn.execute("SELECT role, password_hash, disabled, trained_on, search_authorised_until,"
                                       " business_area FROM accounts WHERE username = ?",
                                       (account.username,)).fetchone()
                    wanted = (account.role, account.password_hash, int(account.disabled))
                    authorisation = authorisation_columns(account.search_authorisation)
                    if row is None:
                        conn.execute("INSERT INTO accounts (username, role, password_hash, disabled, created_at,"
                                     " trained_on, search_authorised_until, business_area) VALUES (?,?,?,?,?,?,?,?)",
                                     (account.username, *wanted, now, *authorisation))
                        created.append(account.username)
                        continue
                    if tuple(row[3:]) != authorisation:
                        conn.execute("UPDATE accounts SET trained_on = ?, search_authorised_until = ?,"
                                     " business_area = ? WHERE username = ?", (*authorisation, account.username))
                        authorisations.append(account.username)
                    if tuple(row[:3]) != wanted:
                        # A new password also clears a lockout; any change ends the user's open sessions.
                        reset = row[1] != account.password_hash
                        conn.execute("UPDATE accounts SET role = ?, password_hash = ?, disabled = ?,"
                                     " failed_logins = CASE WHEN ? THEN 0 ELSE failed_logins END,"
                                     " locked_until = CASE WHEN ? THEN 0 ELSE locked_until END"
                                     " WHERE username = ?", (*wanted, reset, reset, account.username))
                        conn.execute("DELETE FROM sessions WHERE json_extract(data, '$.username') = ?",
                                     (account.username,))
                        (disabled if account.disabled and not row[2] else updated).append(account.username)
                conn.execute("INSERT INTO desk_config (version, digest, issued_at, applied_at, document)"
                             " VALUES (?,?,?,?,?)", (config.version, digest, config.issued_at.isoformat(), now,
                                                     json.dumps(config.model_dump(mode="json"))))
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        return AccountChanges(created, updated, disabled, authorisations)
