"""Central's sessions: rows in its database, a cookie that is only a token, and no way to forge or outlive one."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from flask.testing import FlaskClient

from central.web import close_stores, create_app
from tests.central_signin import add_account, copied_session, csrf_token, log_in, signed_in

SECRET = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"


def _rows(app: Flask) -> list[tuple]:
    """The session rows, read from the database file as an administrator would."""
    with sqlite3.connect(app.config["DATABASE"]) as db:
        rows = db.execute("SELECT username, data, created_at, last_seen FROM central_sessions").fetchall()
    db.close()
    return rows


def _refused(response) -> bool:  # type: ignore[no-untyped-def]
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_a_cookie_minted_with_the_secret_key_opens_nothing(app: Flask) -> None:
    """Whoever knows the key (the example's, a leaked one) could sign a session cookie for any account."""
    add_account(app, "fleetboss", ["fleet_admin", "auditor"])
    forged = SecureCookieSessionInterface().get_signing_serializer(app)
    assert forged is not None
    value = forged.dumps({"user": "fleetboss", "username": "fleetboss", "signed_in_at": time.time(),
                          "generation": 0})
    stranger = app.test_client()
    stranger.set_cookie(app.config["SESSION_COOKIE_NAME"], value)
    stranger.set_cookie("session", value)
    for path in ("/audit", "/fleet", "/audit/export.jsonl"):
        assert _refused(stranger.get(path))


def test_the_cookie_is_a_random_token_sent_secure_httponly_and_strict(app: Flask) -> None:
    add_account(app, "auditor1", ["auditor"])
    client = app.test_client()
    response = log_in(client, "auditor1")
    assert response.status_code == 302
    cookie = next(c for c in response.headers.getlist("Set-Cookie")
                  if c.startswith(app.config["SESSION_COOKIE_NAME"] + "="))
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "secure" in flags and "httponly" in flags and "samesite=strict" in flags
    token = cookie.split(";")[0].split("=", 1)[1]
    assert "auditor1" not in token and "." not in token and len(token) >= 43  # no data, no signature: a token
    assert [row[0] for row in _rows(app)] == ["auditor1"]
    assert token not in str(_rows(app))  # the database keeps only its hash


def test_anonymous_visits_write_no_rows(app: Flask) -> None:
    add_account(app, "auditor1", ["auditor"])
    anonymous = app.test_client()
    for _ in range(20):
        assert anonymous.get("/login").status_code == 200
        assert anonymous.get("/audit").status_code == 302
    assert log_in(anonymous, "auditor1", "not-the-password").status_code == 401
    assert _rows(app) == []
    assert log_in(anonymous, "auditor1").status_code == 302  # the sign-in form's token still works
    assert len(_rows(app)) == 1


def test_a_cookie_copied_before_sign_out_is_refused_after_it(app: Flask) -> None:
    client = signed_in(app, "auditor1", ["auditor"])
    thief = copied_session(app, client)
    page = client.get("/audit").get_data(as_text=True)
    assert thief.get("/audit").status_code == 200
    assert client.post("/logout", data={"csrf_token": csrf_token(page)}).status_code == 302
    assert _refused(thief.get("/audit")) and _refused(client.get("/audit"))
    assert _rows(app) == []


def test_a_cookie_copied_before_a_disable_is_refused_after_it(app: Flask) -> None:
    client = signed_in(app, "auditor1", ["auditor"])
    thief = copied_session(app, client)
    assert thief.get("/audit").status_code == 200
    app.extensions["central.accounts"].disable("auditor1")
    assert _rows(app) == []
    app.extensions["central.accounts"].enable("auditor1")
    assert _refused(thief.get("/audit")) and _refused(client.get("/audit"))


def test_a_cookie_copied_before_a_new_password_is_refused_after_it(app: Flask) -> None:
    client = signed_in(app, "auditor1", ["auditor"])
    thief = copied_session(app, client)
    assert thief.get("/audit").status_code == 200
    app.extensions["central.accounts"].change_password("auditor1", "a-new-central-password")
    assert _rows(app) == []
    assert _refused(thief.get("/audit")) and _refused(client.get("/audit"))


@pytest.mark.parametrize("column", ["last_seen", "created_at"])
def test_a_session_ends_when_idle_or_too_old(app: Flask, column: str) -> None:
    client = signed_in(app, "auditor1", ["auditor"])
    assert client.get("/audit").status_code == 200
    limit = app.config["SESSION_IDLE_MINUTES"] * 60 if column == "last_seen" else app.config["SESSION_HOURS"] * 3600
    with sqlite3.connect(app.config["DATABASE"]) as db:
        db.execute(f"UPDATE central_sessions SET {column} = {column} - ?", (limit + 1,))
    db.close()
    assert _refused(client.get("/audit"))
    assert _rows(app) == []


def test_timeouts_and_the_secure_flag_come_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from central.settings import load

    monkeypatch.setenv("RFR_CENTRAL__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RFR_CENTRAL__MQTT__HOST", "127.0.0.1")
    monkeypatch.setenv("RFR_CENTRAL__MQTT__PORT", "1883")
    monkeypatch.setenv("RFR_CENTRAL__WEB__SECRET_KEY", SECRET)
    monkeypatch.setenv("RFR_CENTRAL__WEB__SESSION_IDLE_MINUTES", "5")
    monkeypatch.setenv("RFR_CENTRAL__WEB__SECURE_COOKIE", "false")
    app = create_app(load(None))
    try:
        assert app.config["SESSION_IDLE_MINUTES"] == 5 and app.config["SESSION_HOURS"] == 12
        add_account(app, "auditor1", ["auditor"])
        client: FlaskClient = app.test_client()
        response = log_in(client, "auditor1")
        cookie = next(c for c in response.headers.getlist("Set-Cookie")
                      if c.startswith(app.config["SESSION_COOKIE_NAME"] + "="))
        assert "secure" not in cookie.lower()  # a plain-HTTP test may turn it off
    finally:
        close_stores(app)
