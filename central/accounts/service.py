"""Who may use central's web interface: account creation, password checks with lockout, roles.

Roles follow the RFR team's separation of duties: an ``auditor`` reads the
audit trail, exports and reports; a ``peer_reviewer`` decides desks' peer
review requests; a ``fleet_admin`` runs the fleet pages (health, revocation).
One person may hold several. An unknown username costs the same scrypt hash as
a known one, so timing does not reveal which accounts exist, and repeated
wrong passwords lock the account for a while, as on the desks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from central.accounts.store import AccountStore
from core.desk_config import USERNAME
from core.errors import CustodyRfrError
from core.passwords import DUMMY_HASH, hash_password, verify_password

ROLES = ("auditor", "peer_reviewer", "fleet_admin")
MIN_PASSWORD_LENGTH = 12
LOCKOUT_AFTER = 5
LOCKOUT_MINUTES = 15
Clock = Callable[[], float]

WRONG = "The username or password is wrong."


class AccountError(CustodyRfrError):
    """An account could not be created; the message says why."""


class LoginRefusedError(CustodyRfrError):
    """Sign-in failed: wrong username or password, or the account is locked."""


@dataclass(frozen=True)
class Account:
    username: str
    roles: frozenset[str]

    def may(self, role: str) -> bool:
        return role in self.roles


class AccountService:
    def __init__(self, store: AccountStore, clock: Clock = time.time) -> None:
        self._store, self._clock = store, clock

    def add(self, username: str, roles: Iterable[str], password: str) -> Account:
        username = username.strip()
        if not USERNAME.fullmatch(username):
            raise AccountError("A username is 1 to 64 letters, digits, dots, dashes or underscores.")
        wanted = frozenset(r.strip() for r in roles)
        if not wanted:
            raise AccountError(f"Give at least one role: {', '.join(ROLES)}.")
        unknown = sorted(wanted.difference(ROLES))
        if unknown:
            raise AccountError(f"There is no role {unknown[0]!r}. Roles: {', '.join(ROLES)}.")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AccountError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters.")
        if self._store.get(username) is not None or not self._store.insert(
                username, wanted, hash_password(password), self._clock()):
            raise AccountError(f"An account called {username} already exists.")
        return Account(username, wanted)

    def list(self) -> list[Account]:
        return [Account(a.username, a.roles) for a in self._store.all()]

    def authenticate(self, username: str, password: str) -> Account:
        """The account, or ``LoginRefusedError``; a lock refuses even the right password until it expires."""
        now = self._clock()
        name = username.strip()
        row = self._store.get(name) if USERNAME.fullmatch(name) else None
        if row is None or row.disabled:
            verify_password(password, DUMMY_HASH)
            raise LoginRefusedError(WRONG)
        if row.locked_until > now:
            minutes = max(1, round((row.locked_until - now) / 60))
            raise LoginRefusedError(f"This account is locked after {LOCKOUT_AFTER} wrong passwords. "
                                    f"Try again in {minutes} minutes, or ask the RFR team's administrator.")
        if not verify_password(password, row.password_hash):
            failed = row.failed_logins + 1
            if failed >= LOCKOUT_AFTER:
                self._store.set_failures(row.username, 0, now + LOCKOUT_MINUTES * 60)
                raise LoginRefusedError(f"The password is wrong. The account is now locked for {LOCKOUT_MINUTES} "
                                        "minutes.")
            self._store.set_failures(row.username, failed, 0)
            raise LoginRefusedError(WRONG)
        if row.failed_logins:
            self._store.set_failures(row.username, 0, 0)
        return Account(row.username, row.roles)

    def account(self, username: str) -> Account | None:
        """The current account for a session, so a disabled account or changed roles take effect at once."""
        row = self._store.get(username)
        return None if row is None or row.disabled else Account(row.username, row.roles)
