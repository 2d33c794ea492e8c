"""The sign-in throttle both sign-ins use: growing, capped delays by account and by address, and one reply."""

from __future__ import annotations

import pytest

import core.throttle
from core.passwords import hash_password
from core.throttle import (
    NOT_REFUSED,
    AddressCounters,
    Attempt,
    Counter,
    ThrottleRule,
    address_key,
    sign_in_throttle,
)

RULE = ThrottleRule(free=5, first_delay_s=1.0, max_delay_s=60.0)
NOW = 1_900_000_000.0
PASSWORD = "a long passphrase here"


def test_failures_below_the_free_number_only_count():
    assert RULE.after_failure(Counter(), NOW) == Counter(1, NOT_REFUSED)
    assert RULE.after_failure(Counter(3), NOW) == Counter(4, NOT_REFUSED)


def test_the_delay_doubles_with_each_further_failure_up_to_the_cap():
    delays = [RULE.delay_after(n) for n in range(4, 14)]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert RULE.delay_after(10_000) == 60.0  # no overflow however many
    counter = RULE.after_failure(Counter(6), NOW)
    assert counter == Counter(7, NOW + 4.0)
    assert RULE.refuses(counter, NOW + 3.9) and not RULE.refuses(counter, NOW + 4.0)


def test_address_counters_are_bounded_and_forget_quiet_addresses():
    addresses = AddressCounters(RULE, capacity=3, forget_after_s=100)
    for n in range(10):
        addresses.failed(f"10.0.0.{n}", NOW)
    assert len(addresses) == 3
    assert addresses.get("10.0.0.0", NOW) == Counter()  # the oldest went first
    assert addresses.get("10.0.0.9", NOW).failures == 1
    assert addresses.get("10.0.0.9", NOW + 101) == Counter()


def test_an_ipv6_host_is_counted_by_its_slash_64():
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert address_key("2001:db8:0:1::1") != address_key("2001:db8::1")
    assert address_key("192.0.2.7") == "192.0.2.7" and address_key(None) is None


@pytest.fixture
def hashes(monkeypatch):
    """Counts the scrypt checks each attempt makes (the real checks still run)."""
    calls: list[str] = []
    real = core.throttle.verify_password

    def counting(password: str, stored: str) -> bool:
        calls.append(stored)
        return real(password, stored)

    monkeypatch.setattr(core.throttle, "verify_password", counting)
    return calls


def test_every_refusal_costs_one_hash_and_a_throttled_attempt_is_refused_even_with_the_right_password(hashes):
    throttle = sign_in_throttle()
    stored = hash_password(PASSWORD, 2**10)
    counter = Counter()
    for _ in range(5):
        attempt = throttle.attempt(counter, stored, "wrong", "192.0.2.1", NOW)
        assert attempt.refused == "wrong password" and attempt.store is not None
        counter = attempt.store
    assert counter == Counter(5, NOW + 1.0)
    hashes.clear()
    assert throttle.attempt(counter, stored, PASSWORD, "192.0.2.2", NOW) == Attempt("throttled")
    assert throttle.attempt(None, None, PASSWORD, "192.0.2.2", NOW) == Attempt("unknown account")
    assert throttle.attempt(counter, None, PASSWORD, "192.0.2.2", NOW + 2).refused == "account may not sign in"
    assert len(hashes) == 3  # one scrypt each, whatever the outcome
    assert throttle.attempt(counter, stored, PASSWORD, "192.0.2.2", NOW + 2) == Attempt(None, Counter())


def test_a_stranger_cannot_keep_the_owner_out_but_slows_themselves_more_and_more():
    """The account's wait is capped at a minute; the stranger's address waits up to a quarter of an hour."""
    throttle = sign_in_throttle()
    stored = hash_password(PASSWORD, 2**10)
    counter, now, tried = Counter(), NOW, 0
    for _ in range(40):  # the stranger tries again the moment each delay allows
        attempt = throttle.attempt(counter, stored, "guess", "198.51.100.66", now)
        if attempt.refused == "wrong password":
            assert attempt.store is not None
            counter, tried = attempt.store, tried + 1
        now = max(counter.refused_until, throttle.addresses.get("198.51.100.66", now).refused_until, now)
    assert throttle.addresses.get("198.51.100.66", now).refused_until - now >= 0  # still waiting
    assert throttle.account_rule.delay_after(counter.failures) == 60.0
    # The owner, from their own address, gets in once the account's (capped) wait has passed.
    assert throttle.attempt(counter, stored, PASSWORD, "203.0.113.5", counter.refused_until).refused is None
    # The stranger's own address now waits the full quarter of an hour after each guess.
    assert throttle.addresses.rule.delay_after(throttle.addresses.get("198.51.100.66", now).failures) == 900.0
