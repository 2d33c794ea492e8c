"""Flask sessions kept on the server: the cookie carries only a random token.

Flask's default session is a signed cookie holding the data itself, which
cannot be ended from the server and outlives a sign-out if copied (and anyone
holding the secret key can forge one). Here the data (username, CSRF token)
lives in the product's database via ``SessionManager``, which applies the idle
and absolute timeouts; sign-in rotates the token (no session fixation) and
sign-out deletes the row. Both cookies are HttpOnly, SameSite=Strict and, unless
a plain-HTTP test turns it off, Secure.

Only a signed-in session gets a row. Before sign-in the only thing kept is the sign-in
form's CSRF token, and writing (and fsyncing) a row for it let anyone fill the
database by fetching ``/login`` in a loop; it travels instead in a short-lived cookie signed
with the app's secret key, and is dropped at sign-in.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.datastructures import CallbackDict

from websession.manager import SessionManager

_SIGNIN_SALT = "rfr-signin-form"
#: The session key that marks a signed-in session (the only kind that gets a row).
SIGNED_IN_KEY = "username"


class ServerSession(CallbackDict[str, Any], SessionMixin):
    def __init__(self, initial: dict[str, Any] | None = None, token: str | None = None,
                 expired: bool = False) -> None:
        def on_update(_: CallbackDict[str, Any]) -> None:
            self.modified = True

        super().__init__(initial or {}, on_update)
        self.token = token
        self.expired = expired  # the browser sent a token that has timed out or was ended
        self.modified = False
        self.rotate = False
        self.ended = False
        self.passive = False  # a request the page made by itself: not activity (``not_activity``)

    def regenerate(self) -> None:
        """Issue a new token at the end of this request (call at sign-in)."""
        self.rotate = True

    def end(self) -> None:
        """Delete the server-side session and the cookie at the end of this request (sign-out)."""
        self.ended = True


def not_activity(session: SessionMixin) -> None:
    """Mark this request as one the page made by itself (a status poll), not the person using it.

    It does not mark the session as used, so a page left open and polling still signs out after the
    idle timeout, as one left open and quiet does.
    """
    if isinstance(session, ServerSession):
        session.passive = True


class ServerSessionInterface(SessionInterface):
    """``cookie`` carries a signed-in session's token, ``signin_cookie`` the sign-in form's CSRF token."""

    def __init__(self, manager: SessionManager, *, secure: bool, cookie: str, signin_cookie: str) -> None:
        self.manager, self.secure, self.cookie, self.signin_cookie = manager, secure, cookie, signin_cookie

    def _signin_serializer(self, app: Flask) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(app.secret_key or "", salt=_SIGNIN_SALT)

    def _cookie(self, response: Response, name: str, value: str | None) -> None:
        if value is None:
            response.delete_cookie(name, path="/", httponly=True, samesite="Strict", secure=self.secure)
        else:
            response.set_cookie(name, value, path="/", httponly=True, samesite="Strict", secure=self.secure)

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        token = request.cookies.get(self.cookie)
        if token:
            data = self.manager.load(token)
            if data is None:
                return ServerSession(expired=True)
            return ServerSession(data, token=token)
        signin = request.cookies.get(self.signin_cookie)
        if signin:
            try:
                data = self._signin_serializer(app).loads(signin, max_age=self.manager.idle_s)
            except BadSignature:
                return ServerSession()
            if isinstance(data, dict) and SIGNED_IN_KEY not in data:
                return ServerSession(data)
        return ServerSession()

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, ServerSession)
        if session.ended:
            if session.token:
                self.manager.end(session.token)
            self._cookie(response, self.cookie, None)
            return
        if SIGNED_IN_KEY in session and (session.rotate or session.token is None):
            if session.token:
                self.manager.end(session.token)
            self._cookie(response, self.cookie, self.manager.create(dict(session)))
            self._cookie(response, self.signin_cookie, None)
            return
        if session.token:
            if not (session.passive and not session.modified):
                self.manager.save(session.token, dict(session))  # also marks the session as used now
            return
        if session.expired:
            self._cookie(response, self.cookie, None)
        if session.modified and session:
            self._cookie(response, self.signin_cookie, self._signin_serializer(app).dumps(dict(session)))

