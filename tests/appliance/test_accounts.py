"""Accounts: scrypt hashes, the sign-in throttle, session timeouts, and the device administrator's command."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.services.accounts import AccountError, AccountService, LoginRefusedError
from appliance.settings import AuthSettings
from appliance.storage.accounts import AccountStore, SessionStore
from appliance.storage.device_db import DeviceDatabase
from core.passwords import verify_password
from core.throttle import REFUSED
from tests.appliance.desk_helpers import accounts_command, fast_kdf
from websession.manager import SessionManager

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts(tmp_path, monkeypatch):
    fast_kdf(monkeypatch)
    db = DeviceDatabase(tmp_path)
    clock = Clock()
    settings = AuthSettings()
    service = AccountService(AccountStore(db), settings, clock=clock)
    yield service, SessionManager(SessionStore(db), idle_s=settings.idle_timeout_minutes * 60,
                                  absolute_s=settings.absolute_timeout_hours * 3600, clock=clock), clock, db
    db.close()


def test_password_is_stored_as_scrypt_not_plaintext(parts):
    service, _, _, db = parts
    service.add("sam", "custody_officer", "a long passphrase here")
    stored = db.conn.execute("SELECT password_hash FROM accounts").fetchone()[0]
    assert stored.startswith("scrypt$") and "passphrase" not in stored
    assert verify_password("a long passphrase here", stored) and not verify_password("wrong", stored)


def test_account_rules(parts):
    service, *_ = parts
    with pytest.raises(AccountError, match="at least 12"):
        service.add("sam", "custody_officer", "short")
    with pytest.raises(AccountError, match="not a role"):
        service.add("sam", "sergeant", "a long passphrase here")
    service.add("sam", "custody_officer", "a long passphrase here")
    with pytest.raises(AccountError, match="already exists"):
        service.add("sam", "auditor", "a long passphrase here")


def test_repeated_failures_make_further_attempts_wait_even_with_the_right_password(parts):
    service, _, clock, _ = parts
    service.add("sam", "custody_officer", "a long passphrase here")
    for _ in range(5):
        with pytest.raises(LoginRefusedError) as refused:
            service.authenticate("sam", "guess", "10.0.0.66")
        assert refused.value.reason == "wrong password"
    with pytest.raises(LoginRefusedError) as refused:
        service.authenticate("sam", "a long passphrase here", "10.0.0.7")
    assert (refused.value.reason, refused.value.actor, str(refused.value)) == ("throttled", "sam", REFUSED)
    clock.now += 1  # the first wait is a second, not a quarter of an hour
    assert service.authenticate("sam", "a long passphrase here", "10.0.0.7").username == "sam"


def test_unknown_user_gets_the_same_message_and_is_not_named(parts):
    service, *_ = parts
    with pytest.raises(LoginRefusedError) as refused:
        service.authenticate("nobody", "whatever")
    assert str(refused.value) == REFUSED and refused.value.actor == "(unknown account)"


def test_sessions_end_after_idle_and_absolute_timeouts(parts):
    _, sessions, clock, _ = parts
    token = sessions.create({"username": "sam"})
    clock.now += 14 * 60
    assert sessions.load(token) == {"username": "sam"}
    sessions.save(token, {"username": "sam"})
    clock.now += 16 * 60
    assert sessions.load(token) is None, "idle for 16 minutes"
    token = sessions.create({"username": "sam"})
    for _ in range(40):  # busy all shift: used every 14 minutes (9 h 20 min), never idle
        clock.now += 14 * 60
        if sessions.load(token) is None:
            break
        sessions.save(token, {"username": "sam"})
    assert sessions.load(token) is None, "absolute timeout after 8 hours"


def test_session_token_is_not_stored(parts):
    _, sessions, _, db = parts
    token = sessions.create({"username": "sam"})
    stored = [r[0] for r in db.conn.execute("SELECT token_hash FROM sessions")]
    assert token not in stored and len(stored) == 1


def test_device_admin_command_creates_an_account(tmp_path, demo_library):
    run = accounts_command(tmp_path, "desk-cli-01", demo_library)
    made = run("add", "--username", "insp1", "--role", "inspector", "--password-stdin",
               stdin="a long passphrase here\n")
    assert made.returncode == 0, made.stderr
    assert "insp1" in made.stdout
    bad = run("add", "--username", "x", "--role", "chief", "--password-stdin", stdin="a long passphrase here\n")
    assert bad.returncode == 1 and "not a role" in bad.stderr
    listed = run("list")
    assert "insp1\tinspector" in listed.stdout
