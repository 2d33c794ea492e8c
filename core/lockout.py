"""The sign-in lockout rule the desks and central share: so many wrong passwords in a row lock an account.

Pure: it is given the account's failure count, its lock time and the clock, and says what to
store. The callers keep the rest: reading and writing the rows, the messages they show, and what
else a lock ends (a desk also ends the account's sessions). A lock refuses even the right password
until it passes; reaching the limit starts the lock and sets the count back to zero, so an account
whose lock has passed gets the full number of tries again.
"""

from __future__ import annotations

from dataclasses import dataclass

NOT_LOCKED = 0  # the stored lock time of an account that is not locked


@dataclass(frozen=True)
class Failures:
    """What to store for an account after a wrong password, and whether that password started a lock."""

    count: int
    locked_until: float
    locked: bool


@dataclass(frozen=True)
class LockoutRule:
    """``after`` wrong passwords in a row lock an account for ``minutes``.

    Central fixes 5 and 15 (``central.accounts.service.LOCKOUT``); a desk takes them from its
    ``[auth] lockout_after`` and ``lockout_minutes`` settings, which default to the same.
    """

    after: int
    minutes: int

    def minutes_left(self, locked_until: float, now: float) -> int | None:
        """Whole minutes (at least one) until the lock passes, or None when the account is not locked."""
        if locked_until > now:
            return max(1, round((locked_until - now) / 60))
        return None

    def after_failure(self, failed_logins: int, now: float) -> Failures:
        """The count and lock time to store after one more wrong password."""
        failed = failed_logins + 1
        if failed >= self.after:
            return Failures(0, now + self.minutes * 60, locked=True)
        return Failures(failed, NOT_LOCKED, locked=False)
