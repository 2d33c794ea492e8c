"""Central's sign-in cannot be used to lock staff out, and tells a stranger nothing about who has an account."""

from __future__ import annotations

import logging
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from central.accounts.service import AccountService
from tests.central_signin import PASSWORD, add_account, log_in

UNKNOWN_TYPED = "Hunter2-typed-in-the-wrong-box"


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(app: Flask) -> Clock:
    """The app's account service on a clock the test moves (the store and the pages stay the real ones)."""
    clock = Clock()
    app.extensions["central.accounts"] = AccountService(app.extensions["central.account_store"], clock=clock)
    return clock


def _from(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _reply(response, typed: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """The status and the page, without what differs by design (the CSRF token, the name typed back)."""
    page = re.sub(r'name="csrf_token" value="[^"]+"', "", response.get_data(as_text=True))
    return response.status_code, page.replace(typed, "NAME")


def test_unknown_wrong_and_throttled_get_the_same_reply(app: Flask, clock: Clock) -> None:
    add_account(app, "auditor1", ["auditor"])
    add_account(app, "auditor2", ["auditor"])
    stranger = _from(app, "198.51.100.66")
    unknown = _reply(log_in(stranger, "no.such.person", PASSWORD), "no.such.person")
    wrong = _reply(log_in(stranger, "auditor1", "not-the-password"), "auditor1")
    for _ in range(6):
        log_in(stranger, "auditor1", "not-the-password")
    throttled = _reply(log_in(stranger, "auditor1", PASSWORD), "auditor1")  # even the right password waits
    assert unknown == wrong == throttled
    assert unknown[0] == 401 and "too many attempts" in unknown[1]
    assert "This account is locked" not in unknown[1] and "now locked" not in unknown[1]


def test_a_strangers_failures_do_not_keep_the_owner_out(app: Flask, clock: Clock) -> None:
    """A stranger guesses as fast as the throttle lets them; the owner, from their own address, signs in at
    most a minute after the stranger's last guess, and their open session is never ended."""
    add_account(app, "inspector", ["auditor"])
    owner = _from(app, "203.0.113.5")
    assert log_in(owner, "inspector").status_code == 302
    store = app.extensions["central.account_store"]
    stranger = _from(app, "198.51.100.66")
    last_guess = clock.now
    for _ in range(40):
        assert log_in(stranger, "inspector", "guess").status_code == 401
        row = store.get("inspector")
        if row.locked_until > clock.now:
            last_guess = clock.now
        clock.now = max(clock.now + 1, row.locked_until)
    assert store.get("inspector").failed_logins >= 12
    assert owner.get("/audit").status_code == 200  # the owner's session was not ended
    clock.now = last_guess + 60
    assert log_in(_from(app, "203.0.113.5"), "inspector").status_code == 302
    # The stranger's address waits longer than the account did: even the right password is refused there.
    assert log_in(stranger, "inspector").status_code == 401


def test_an_unknown_name_is_never_logged_as_typed_and_throttled_attempts_are(app: Flask, clock: Clock,
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    add_account(app, "auditor1", ["auditor"])
    caplog.set_level(logging.DEBUG)
    stranger = _from(app, "198.51.100.66")
    for _ in range(7):
        log_in(stranger, UNKNOWN_TYPED, PASSWORD)
    assert UNKNOWN_TYPED not in caplog.text
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 7 and all("(unknown account)" in m and "198.51.100.66" in m for m in refused)
    assert any(m.endswith("throttled") for m in refused)
