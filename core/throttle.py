"""The sign-in throttle the desks and central share: growing delays instead of a lock anyone can trigger.

A hard lock (so many wrong passwords lock an account for a quarter of an hour) is a weapon: anyone
who knows an Inspector's username can keep them out of the desk. Here wrong passwords are counted
twice, for the account and for the client address they came from, and after ``free`` failures each
further attempt on that account, or from that address, is refused until a delay has passed that
doubles with every failure, up to a cap. The account's cap is low (a minute by default), so a
stranger can at worst make the real user wait that long after each of their guesses, and each of
those guesses costs the stranger's address a delay that keeps growing to a much higher cap. An
attempt refused by the throttle is not counted (it was never checked), and the reply is the same for
an unknown name, a wrong password and a throttled attempt (``REFUSED``), so the throttle tells a
stranger nothing about which names exist. Nothing here ends an account's sessions.

Pure rules, a bounded in-memory table of address counters, and ``SignInThrottle.attempt``, the one
order of checks both sign-ins follow. The account counters live with the accounts (each store keeps
``failed_logins`` and the time until which attempts are refused); audit records stay with the callers.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from core.passwords import DUMMY_HASH, verify_password

#: The one reply to a refused sign-in, whatever the reason: unknown name, wrong password, disabled, throttled.
REFUSED = ("The username or password is wrong, or there have been too many attempts. "
           "Wait a minute and try again.")
#: What audit events and logs record instead of a typed name that matches no account (it may be a password).
UNKNOWN_ACCOUNT = "(unknown account)"
NOT_REFUSED = 0.0  # the stored "refused until" of a counter with no delay running


@dataclass(frozen=True)
class Counter:
    """Failures in a row and the time (UNIX seconds) until which further attempts are refused."""

    failures: int = 0
    refused_until: float = NOT_REFUSED


@dataclass(frozen=True)
class ThrottleRule:
    """After ``free`` failures in a row, each failure delays the next attempt by ``first_delay_s``,
    doubling with each further failure, never more than ``max_delay_s``."""

    free: int
    first_delay_s: float
    max_delay_s: float

    def delay_after(self, failures: int) -> float:
        """Seconds an attempt must wait after the ``failures``-th failure in a row."""
        beyond = failures - self.free
        if beyond < 0:
            return 0.0
        return min(self.max_delay_s, self.first_delay_s * 2.0 ** min(beyond, 62))

    def after_failure(self, counter: Counter, now: float) -> Counter:
        """The counter to store after one more failure at ``now``."""
        failures = counter.failures + 1
        delay = self.delay_after(failures)
        return Counter(failures, now + delay if delay else NOT_REFUSED)

    @staticmethod
    def refuses(counter: Counter, now: float) -> bool:
        """Whether an attempt at ``now`` must be refused unchecked (a delay is still running)."""
        return counter.refused_until > now


def address_key(address: str | None) -> str | None:
    """The key an address is counted under: IPv4 as it is, IPv6 by its /64 (one host holds a whole /64)."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class AddressCounters:
    """Failure counters by client address, in memory and bounded.

    At most ``capacity`` addresses are kept (the least recently failing are forgotten first), and an
    address that has not failed for ``forget_after_s`` starts afresh, so a stranger cannot grow the
    table without bound by trying from many addresses. A success does not clear an address's count:
    otherwise anyone with an account could sign in to it between guesses at other people's.
    """

    def __init__(self, rule: ThrottleRule, *, capacity: int = 10_000, forget_after_s: float = 3600.0) -> None:
        self.rule, self.capacity, self.forget_after_s = rule, capacity, forget_after_s
        self._counters: OrderedDict[str, tuple[Counter, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, address: str | None, now: float) -> Counter:
        key = address_key(address)
        with self._lock:
            held = self._counters.get(key) if key else None
        if held is None or now - held[1] > self.forget_after_s:
            return Counter()
        return held[0]

    def failed(self, address: str | None, now: float) -> None:
        key = address_key(address)
        if key is None:
            return
        counter = self.rule.after_failure(self.get(address, now), now)
        with self._lock:
            self._counters[key] = (counter, now)
            self._counters.move_to_end(key)
            while len(self._counters) > self.capacity:
                self._counters.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._counters)


@dataclass(frozen=True)
class Attempt:
    """The outcome of one sign-in attempt."""

    #: None when the password was right; else why it was refused, for the audit log only.
    refused: str | None
    #: The account counter to store, or None to leave it as it is.
    store: Counter | None = None


class AccountLike(Protocol):
    """What the throttle reads of a stored account (both products' account rows have these)."""

    @property
    def username(self) -> str: ...
    @property
    def password_hash(self) -> str: ...
    @property
    def failed_logins(self) -> int: ...
    @property
    def locked_until(self) -> float: ...
    @property
    def disabled(self) -> bool: ...


@dataclass(frozen=True)
class Refusal:
    """Who a refused attempt was for (the account, or ``UNKNOWN_ACCOUNT``) and why, for the audit log only."""

    actor: str
    reason: str


class SignInThrottle:
    """The account rule and the address counters together, and the order of checks both sign-ins follow."""

    def __init__(self, account_rule: ThrottleRule, addresses: AddressCounters) -> None:
        self.account_rule, self.addresses = account_rule, addresses

    def attempt(self, account: Counter | None, password_hash: str | None, password: str, address: str | None,
                now: float) -> Attempt:
        """Check one attempt. ``account`` is the account's counter (None: no such account) and
        ``password_hash`` its hash (None: it may not sign in, e.g. disabled).

        A throttled attempt is refused unchecked (even with the right password) and not counted;
        every path costs one scrypt hash, so neither the reply nor its timing says which happened.
        """
        address_counter = self.addresses.get(address, now)
        if (account is not None and self.account_rule.refuses(account, now)) or \
                self.addresses.rule.refuses(address_counter, now):
            verify_password(password, DUMMY_HASH)
            return Attempt("throttled")
        if password_hash is None:
            verify_password(password, DUMMY_HASH)
            self.addresses.failed(address, now)
            return Attempt("unknown account" if account is None else "account may not sign in")
        assert account is not None
        if not verify_password(password, password_hash):
            self.addresses.failed(address, now)
            return Attempt("wrong password", self.account_rule.after_failure(account, now))
        return Attempt(None, Counter() if account.failures else None)

    def check(self, row: AccountLike | None, password: str, address: str | None, now: float,
              set_failures: Callable[[str, int, float], None]) -> Refusal | None:
        """``attempt`` for a stored account (None: no such name): stores the account's new count through
        ``set_failures(username, failures, refused_until)`` and says why it was refused, or None if not."""
        counter = Counter(row.failed_logins, row.locked_until) if row is not None else None
        usable_hash = row.password_hash if row is not None and not row.disabled else None
        attempt = self.attempt(counter, usable_hash, password, address, now)
        if attempt.store is not None and row is not None:
            set_failures(row.username, attempt.store.failures, attempt.store.refused_until)
        if attempt.refused is None and row is not None:
            return None
        return Refusal(row.username if row is not None else UNKNOWN_ACCOUNT, attempt.refused or "unknown account")


def sign_in_throttle(*, free: int = 5, first_delay_s: float = 1.0, account_max_s: float = 60.0,
                     address_max_s: float = 900.0) -> SignInThrottle:
    """The throttle with its defaults: five free failures, then 1, 2, 4... seconds, an account waiting at
    most a minute and an address at most a quarter of an hour."""
    return SignInThrottle(ThrottleRule(free, first_delay_s, account_max_s),
                          AddressCounters(ThrottleRule(free, first_delay_s, address_max_s)))
