"""Who may use the device: accounts and password checks with a throttle.

Passwords are hashed by ``core.passwords`` (scrypt, the format central's
accounts and signed desk configuration share). An unknown
username costs the same hash as a known one, so timing does not reveal which
accounts exist, and wrong passwords slow further attempts on the account and
from the address (``core.throttle``) without ever locking anyone out or ending
their sessions. Accounts work offline; they arrive in central's signed
configuration (``appliance.updates.config``), and a device administrator can
also create them with ``python -m appliance accounts add``. Either way an
account that searches carries its authorisation to search (training date,
expiry, business area), checked by ``appliance.services.search_authority``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from pydantic import ValidationError

from appliance.services.policy import PolicyRefusal, Role, role_of
from appliance.settings import AuthSettings
from appliance.storage.accounts import AccountStore
from core import passwords
from core.desk_config import SEARCH_ROLES, SearchAuthorisation
from core.errors import CustodyRfrError
from core.throttle import REFUSED, sign_in_throttle

Clock = Callable[[], float]
_N = passwords.SCRYPT_N  # the cost of new hashes; tests lower it, stored hashes carry their own


class LoginRefusedError(CustodyRfrError):
    """Sign-in failed. The message is the same whatever the reason (``core.throttle.REFUSED``);
    ``actor`` (the account, or ``UNKNOWN_ACCOUNT``) and ``reason`` are for the audit log only."""

    def __init__(self, actor: str, reason: str) -> None:
        super().__init__(REFUSED)
        self.actor, self.reason = actor, reason


class AccountError(CustodyRfrError):
    """An account could not be created or changed; the message says why."""


def hash_password(password: str) -> str:
    return passwords.hash_password(password, _N)


def search_authorisation(trained_on: str | date, authorised_until: str | date,
                         business_area: str) -> SearchAuthorisation:
    """An authorisation from what a device administrator typed (dates as YYYY-MM-DD), checked by the same rules
    as central's signed configuration; ``AccountError`` in words saying what to correct."""
    try:
        trained = trained_on if isinstance(trained_on, date) else date.fromisoformat(trained_on.strip())
        until = authorised_until if isinstance(authorised_until, date) else date.fromisoformat(authorised_until.strip())
    except ValueError as e:
        raise AccountError("Give the training date and the last day of the authorisation as YYYY-MM-DD, "
                           "for example 2026-01-31.") from e
    try:
        return SearchAuthorisation(trained_on=trained, authorised_until=until, business_area=business_area.strip())
    except ValidationError as e:
        problems = "; ".join((f"{err['loc'][0]}: " if err["loc"] else "") + err["msg"].removeprefix("Value error, ")
                             for err in e.errors())
        raise AccountError(f"The authorisation to search is not valid: {problems}.") from e


@dataclass(frozen=True)
class User:
    username: str
    role: Role


class AccountService:
    def __init__(self, store: AccountStore, settings: AuthSettings, clock: Clock = time.time) -> None:
        self._store, self.settings, self._clock = store, settings, clock
        self._throttle = sign_in_throttle(free=settings.throttle_after, account_max_s=settings.throttle_account_max_s,
                                          address_max_s=settings.throttle_address_max_s)

    def add(self, username: str, role: str, password: str, authorisation: SearchAuthorisation | None = None) -> User:
        username = username.strip()
        if not username or len(username) > 64 or not all(c.isalnum() or c in "._-" for c in username):
            raise AccountError("A username is 1 to 64 letters, digits, dots, dashes or underscores.")
        try:
            parsed = role_of(role)
        except PolicyRefusal as e:
            raise AccountError(f"{e} Roles: {', '.join(r.value for r in Role)}.") from e
        if len(password) < self.settings.min_password_length:
            raise AccountError(f"The password must be at least {self.settings.min_password_length} characters.")
        if authorisation is not None and parsed.value not in SEARCH_ROLES:
            raise AccountError(f"A {parsed.label} does not search, so needs no authorisation to search: leave out "
                               "--trained-on, --search-authorised-until and --business-area.")
        if self._store.get(username) is not None:
            raise AccountError(f"An account called {username} already exists.")
        self._store.insert(username, parsed.value, hash_password(password), self._clock(), authorisation)
        return User(username, parsed)

    def set_authorisation(self, username: str, authorisation: SearchAuthorisation | None) -> None:
        """Record a renewed (or remove an) authorisation to search for an account on this desk."""
        row = self._store.get(username.strip())
        if row is None:
            raise AccountError(f"There is no account called {username} on this desk.")
        if authorisation is not None and row.role not in SEARCH_ROLES:
            raise AccountError(f"{row.username} is a {Role(row.role).label}, who does not search: "
                               "no authorisation to search is needed.")
        self._store.set_authorisation(row.username, authorisation)

    def authorisation(self, username: str) -> SearchAuthorisation | None:
        """The account's authorisation to search as stored now (read at every use, so a new one counts at once)."""
        row = self._store.get(username)
        return row.authorisation if row is not None else None

    def list(self) -> list[User]:
        return [User(a.username, Role(a.role)) for a in self._store.all()]

    def authenticate(self, username: str, password: str, address: str | None = None) -> User:
        """The user, or ``LoginRefusedError``. Each wrong password delays further attempts on the account
        and from ``address`` (the client's); a delayed attempt is refused unchecked, even with the right
        password. Every path costs one scrypt hash, so the timing tells nothing either."""
        now = self._clock()
        row = self._store.get(username.strip())
        refusal = self._throttle.check(row, password, address, now, self._store.set_failures)
        if refusal is not None:
            raise LoginRefusedError(refusal.actor, refusal.reason)
        assert row is not None, "the throttle refuses a name with no account"
        return User(row.username, Role(row.role))

    def user(self, username: str) -> User | None:
        row = self._store.get(username)
        return None if row is None or row.disabled else User(row.username, Role(row.role))
