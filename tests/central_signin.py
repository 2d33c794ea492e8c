"""Signing in to central's web interface from tests: make an account, then log in through the real form."""

from __future__ import annotations

import re
from collections.abc import Iterable

from flask import Flask
from flask.testing import FlaskClient

from central.accounts.service import ROLES, AccountService

PASSWORD = "central-test-password"


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def add_account(app: Flask, username: str, roles: Iterable[str] = ROLES, password: str = PASSWORD) -> None:
    service: AccountService = app.extensions["central.accounts"]
    if service.account(username) is None:
        service.add(username, roles, password)


def log_in(client: FlaskClient, username: str, password: str = PASSWORD, next_url: str | None = None):  # type: ignore[no-untyped-def]
    """POST the sign-in form with the token from the form page; returns the (unfollowed) response."""
    page = client.get("/login").get_data(as_text=True)
    target = "/login" + (f"?next={next_url}" if next_url else "")
    return client.post(target, data={"csrf_token": csrf_token(page), "username": username, "password": password})


def signed_in(app: Flask, username: str = "tester", roles: Iterable[str] = ROLES) -> FlaskClient:
    """A test client signed in as ``username`` (created with ``roles`` if new; every role by default)."""
    add_account(app, username, roles)
    client = app.test_client()
    response = log_in(client, username)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def copied_session(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another browser holding ``client``'s session cookie, as someone who copied it would."""
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = client.get_cookie(name)
    assert cookie is not None, "the client holds no session cookie"
    thief = app.test_client()
    thief.set_cookie(name, cookie.value)
    return thief
