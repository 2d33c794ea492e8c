"""Who may use the device: password checks with lockout, and session lifetimes.

Passwords are hashed by ``core.passwords`` (scrypt, the format central's
accounts and signed desk configuration share). An unknown
username costs the same hash as a known one, so timing does not reveal which
accounts exist. Accounts work offline; they arrive in central's signed
configuration (``appliance.updates.config``), and a device administrator can
also create them with ``python -m appliance accounts add``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance.services.policy import PolicyRefusal, Role, role_of
from appliance.settings import AuthSettings
from appliance.storage.accounts import AccountStore, SessionStore
from core import passwords
from core.errors import CustodyRfrError
from core.lockout import NOT_LOCKED, LockoutRule
from core.passwords import DUMMY_HASH, verify_password

Clock = Callable[[], float]
_N = passwords.SCRYPT_N  # the cost of new hashes; tests lower it, stored hashes carry their own


class LoginRefusedError(CustodyRfrError):
    """Sign-in failed: wrong username or password, or the account is locked."""


class AccountError(CustodyRfrError):
    """An account could not be created or changed; the message says why."""


def hash_password(password: str) -> str:
    return passwords.hash_password(password, _N)


@dataclass(frozen=True)
class User:
    username: str
    role: Role


class AccountService:
    def __init__(self, store: AccountStore, sessions: SessionStore, settings: AuthSettings,
                 clock: Clock = time.time) -> None:
        self._store, self._sessions, self.settings, self._clock = store, sessions, settings, clock
        self._lockout = LockoutRule(after=settings.lockout_after, minutes=settings.lockout_minutes)

    def add(self, username: str, role: str, password: str) -> User:
        username = username.strip()
        if not username or len(username) > 64 or not all(c.isalnum() or c in "._-" for c in username):
            raise AccountError("A username is 1 to 64 letters, digits, dots, dashes or underscores.")
        try:
            parsed = role_of(role)
        except PolicyRefusal as e:
            raise AccountError(f"{e} Roles: {', '.join(r.value for r in Role)}.") from e
        if len(password) < self.settings.min_password_length:
            raise AccountError(f"The password must be at least {self.settings.min_password_length} characters.")
        if self._store.get(username) is not None:
            raise AccountError(f"An account called {username} already exists.")
        self._store.insert(username, parsed.value, hash_password(password), self._clock())
        return User(username, parsed)

    def list(self) -> list[User]:
        return [User(a.username, Role(a.role)) for a in self._store.all()]

    def authenticate(self, username: str, password: str) -> User:
        """The user, or ``LoginRefusedError``; failures count towards a lockout and a lock refuses even
        the right password until it expires."""
        now = self._clock()
        row = self._store.get(username.strip())
        if row is None or row.disabled:
            verify_password(password, DUMMY_HASH)
            raise LoginRefusedError("The username or password is wrong.")
        minutes = self._lockout.minutes_left(row.locked_until, now)
        if minutes is not None:
            raise LoginRefusedError(f"This account is locked after {self._lockout.after} wrong passwords. "
                                    f"Try again in {minutes} minutes, or ask the device administrator.")
        if not verify_password(password, row.password_hash):
            failures = self._lockout.after_failure(row.failed_logins, now)
            self._store.set_failures(row.username, failures.count, failures.locked_until)
            if failures.locked:
                self._sessions.delete_user(row.username)
                raise LoginRefusedError(
                    f"The password is wrong. The account is now locked for {self._lockout.minutes} minutes.")
            raise LoginRefusedError("The username or password is wrong.")
        if row.failed_logins:
            self._store.set_failures(row.username, 0, NOT_LOCKED)
        return User(row.username, Role(row.role))

    def user(self, username: str) -> User | None:
        row = self._store.get(username)
        return None if row is None or row.disabled else User(row.username, Role(row.role))


class SessionManager:
    """Server-side sessions: the cookie holds a random token, the data stays in the encrypted database."""

    def __init__(self, store: SessionStore, settings: AuthSettings, clock: Clock = time.time) -> None:
        self._store, self._clock = store, clock
        self.idle_s = settings.idle_timeout_minutes * 60
        self.absolute_s = settings.absolute_timeout_hours * 3600

    def create(self, data: dict[str, Any]) -> str:
        token = secrets.token_urlsafe(32)
        self._store.create(token, data, self._clock())
        return token

    def load(self, token: str) -> dict[str, Any] | None:
        """The session's data, or None if it does not exist or has timed out (a timed-out row is deleted)."""
        row = self._store.get(token)
        if row is None:
            return None
        now = self._clock()
        if now - row.last_seen > self.idle_s or now - row.created_at > self.absolute_s:
            self._store.delete(token)
            return None
        return row.data

    def save(self, token: str, data: dict[str, Any]) -> None:
        self._store.save(token, data, self._clock())

    def end(self, token: str) -> None:
        self._store.delete(token)

    def purge(self) -> None:
        now = self._clock()
        self._store.purge(now - self.idle_s, now - self.absolute_s)
