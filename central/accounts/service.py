"""Who may use central's web interface: account creation, password checks with a throttle, roles.

Roles follow the RFR team's separation of duties: an ``auditor`` reads the
audit trail, exports and reports; a ``peer_reviewer`` decides desks' peer
review requests; a ``fleet_admin`` runs the fleet pages (health, revocation); a
``library_authoriser`` requests, authorises (never their own request), reviews,
suspends and retires reference libraries. One person may hold several. An unknown username costs the same scrypt hash as
a known one, so timing does not reveal which accounts exist, and wrong passwords
slow further attempts on the account and from the client's address by the same
rule as the desks (``core.throttle``), never locking anyone out. Disabling an
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
from core.passwords import hash_password
from core.throttle import REFUSED, SignInThrottle, sign_in_throttle

ROLES = ("auditor", "peer_reviewer", "fleet_admin", "library_authoriser")
MIN_PASSWORD_LENGTH = 12
Clock = Callable[[], float]


class AccountError(CustodyRfrError):
    """An account could not be created or changed; the message says why."""


class LoginRefusedError(CustodyRfrError):
    """Sign-in failed. The message is the same whatever the reason (``core.throttle.REFUSED``);
    ``actor`` (the account, or ``UNKNOWN_ACCOUNT``) and ``reason`` are for the log only."""

    def __init__(self, actor: str, reason: str) -> None:
        super().__init__(REFUSED)
        self.actor, self.reason = actor, reason


@dataclass(frozen=True)
class Account:
    username: str
    roles: frozenset[str]
    session_generation: int = 0
    disabled: bool = False

    def may(self, role: str) -> bool:
        return role in self.roles


class AccountService:
    def __init__(self, store: AccountStore, clock: Clock = time.time, throttle: SignInThrottle | None = None) -> None:
        """``throttle`` holds the per-address counters of this process; the per-account ones are in the store."""
        self._store, self._clock = store, clock
        self._throttle = throttle or sign_in_throttle()

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
        """Also clears the account's wrong-password count: the administrator has vouched for the person."""
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

    def authenticate(self, username: str, password: str, address: str | None = None) -> Account:
        """The account, or ``LoginRefusedError``. Each wrong password delays further attempts on the account
        and from ``address`` (the client's); a delayed attempt is refused unchecked, even with the right
        password. Every path costs one scrypt hash, so the timing tells nothing either."""
        now = self._clock()
        name = username.strip()
        row = self._store.get(name) if USERNAME.fullmatch(name) else None
        refusal = self._throttle.check(row, password, address, now, self._store.set_failures)
        if refusal is not None:
            raise LoginRefusedError(refusal.actor, refusal.reason)
        assert row is not None, "the throttle refuses a name with no account"
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
