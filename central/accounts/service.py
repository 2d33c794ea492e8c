"""Who may use central's web interface: account creation, password checks with lockout, roles.

Roles follow the RFR team's separation of duties: an ``auditor`` reads the
audit trail, exports and reports; a ``peer_reviewer`` decides desks' peer
review requests; a ``fleet_admin`` runs the fleet pages (health, revocation).
One person may hold several. An unknown username costs the same scrypt hash as
a known one, so timing does not reveal which accounts exist, and repeated
wrong passwords lock the account for a while, as on the desks. Disabling an
account or giving it a new password ends its sessions at their next request
(a session remembers the account's session generation from sign-in), so a
leaked password or copied cookie can be shut out without waiting 12 hours.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from central.accounts.store import AccountRow, AccountStore
from core.desk_config import USERNAME
from core.errors import CustodyRfrError
from core.lockout import NOT_LOCKED, LockoutRule
from core.passwords import DUMMY_HASH, hash_password, verify_password

ROLES = ("auditor", "peer_reviewer", "fleet_admin")
MIN_PASSWORD_LENGTH = 12
LOCKOUT = LockoutRule(after=5, minutes=15)
Clock = Callable[[], float]

WRONG = "The username or password is wrong."


class AccountError(CustodyRfrError):
    """An account could not be created or changed; the message says why."""


class LoginRefusedError(CustodyRfrError):
    """Sign-in failed: wrong username or password, or the account is locked."""


@dataclass(frozen=True)
class Account:
    username: str
    roles: frozenset[str]
    session_generation: int = 0
    disabled: bool = False

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
        _check_password(password)
        if self._store.get(username) is not None or not self._store.insert(
                username, wanted, hash_password(password), self._clock()):
            raise AccountError(f"An account called {username} already exists.")
        return Account(username, wanted)

    def list(self) -> list[Account]:
        return [Account(a.username, a.roles, a.session_generation, a.disabled) for a in self._store.all()]

    def change_password(self, username: str, password: str) -> Account:
        """Also lifts a lock: the administrator setting the password has already vouched for the person."""
        row = self._existing(username)
        _check_password(password)
        if not self._store.set_password(row.username, hash_password(password)):
            raise _unknown(row.username)
        return self.existing(row.username)

    def disable(self, username: str) -> bool:
        """False if it was already disabled; either way it cannot sign in and no session of it works."""
        row = self._existing(username)
        if not self._store.set_disabled(row.username, True):
            raise _unknown(row.username)
        return not row.disabled

    def enable(self, username: str) -> bool:
        """False if it was not disabled. Sessions from before the disable stay ended: sign in afresh."""
        row = self._existing(username)
        if not self._store.set_disabled(row.username, False):
            raise _unknown(row.username)
        return row.disabled

    def authenticate(self, username: str, password: str) -> Account:
        """The account, or ``LoginRefusedError``; a lock refuses even the right password until it expires."""
        now = self._clock()
        name = username.strip()
        row = self._store.get(name) if USERNAME.fullmatch(name) else None
        if row is None or row.disabled:
            verify_password(password, DUMMY_HASH)
            raise LoginRefusedError(WRONG)
        minutes = LOCKOUT.minutes_left(row.locked_until, now)
        if minutes is not None:
            raise LoginRefusedError(f"This account is locked after {LOCKOUT.after} wrong passwords. "
                                    f"Try again in {minutes} minutes, or ask the RFR team's administrator.")
        if not verify_password(password, row.password_hash):
            failures = LOCKOUT.after_failure(row.failed_logins, now)
            self._store.set_failures(row.username, failures.count, failures.locked_until)
            if failures.locked:
                raise LoginRefusedError(f"The password is wrong. The account is now locked for {LOCKOUT.minutes} "
                                        "minutes.")
            raise LoginRefusedError(WRONG)
        if row.failed_logins:
            self._store.set_failures(row.username, 0, NOT_LOCKED)
        return Account(row.username, row.roles, row.session_generation)

    def account(self, username: str) -> Account | None:
        """The account as it is now, so a disabled account or changed roles take effect at once."""
        row = self._store.get(username)
        return None if row is None or row.disabled else Account(row.username, row.roles, row.session_generation)

    def for_session(self, username: str, session_generation: int) -> Account | None:
        """The account behind a session, or None once a new password or a disable has ended its sessions."""
        account = self.account(username)
        return account if account is not None and account.session_generation == session_generation else None

    def existing(self, username: str) -> Account:
        """The account even if disabled, for the administrator's commands; ``AccountError`` if there is none."""
        row = self._existing(username)
        return Account(row.username, row.roles, row.session_generation, row.disabled)

    def _existing(self, username: str) -> AccountRow:
        row = self._store.get(username.strip())
        if row is None:
            raise _unknown(username.strip())
        return row


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters.")


def _unknown(username: str) -> AccountError:
    return AccountError(f"There is no account called {username} (python -m central accounts list shows them).")
