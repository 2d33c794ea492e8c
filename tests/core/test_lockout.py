"""The lockout rule both sign-ins use: the count, the lock, and the minutes a person is told to wait."""

from __future__ import annotations

import pytest

from core.lockout import NOT_LOCKED, Failures, LockoutRule

RULE = LockoutRule(after=5, minutes=15)
NOW = 1_900_000_000.0


def test_wrong_passwords_below_the_limit_only_count():
    assert RULE.after_failure(0, NOW) == Failures(1, NOT_LOCKED, locked=False)
    assert RULE.after_failure(3, NOW) == Failures(4, NOT_LOCKED, locked=False)


def test_the_fifth_wrong_password_locks_for_fifteen_minutes_and_resets_the_count():
    failures = RULE.after_failure(4, NOW)
    assert failures == Failures(0, NOW + 15 * 60, locked=True)
    assert RULE.minutes_left(failures.locked_until, NOW) == 15


def test_a_count_already_past_the_limit_locks_at_once():
    """A desk whose setting was lowered after the failures were counted locks on the next wrong password."""
    assert LockoutRule(after=3, minutes=1).after_failure(7, NOW) == Failures(0, NOW + 60, locked=True)


def test_a_lock_holds_until_its_time_and_not_at_it():
    until = NOW + 15 * 60
    assert RULE.minutes_left(until, until - 0.5) == 1
    assert RULE.minutes_left(until, until) is None
    assert RULE.minutes_left(until, until + 1) is None
    assert RULE.minutes_left(NOT_LOCKED, NOW) is None


@pytest.mark.parametrize(("seconds_left", "minutes"), [(1, 1), (89, 1), (91, 2), (14 * 60 + 29, 14), (900, 15)])
def test_the_minutes_left_are_rounded_and_never_zero(seconds_left, minutes):
    assert RULE.minutes_left(NOW + seconds_left, NOW) == minutes


def test_a_desk_sets_its_own_limit_and_length():
    rule = LockoutRule(after=1, minutes=60)
    failures = rule.after_failure(0, NOW)
    assert failures.locked and failures.locked_until == NOW + 3600
    assert rule.minutes_left(failures.locked_until, NOW + 1800) == 30
