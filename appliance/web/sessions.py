"""Flask sessions kept on the server: the cookie carries only a random token.

Flask's default session is a signed cookie holding the data itself, which
cannot be ended from the server and outlives a sign-out if copied. Here the
data (username, CSRF token) lives in the encrypted device database via
``SessionManager``, which applies the idle and absolute timeouts; sign-in
rotates the token (no session fixation) and sign-out deletes the row.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from appliance.services.accounts import SessionManager

COOKIE_NAME = "rfr_session"


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

    def regenerate(self) -> None:
        """Issue a new token at the end of this request (call at sign-in)."""
        self.rotate = True

    def end(self) -> None:
        """Delete the server-side session and the cookie at the end of this request (sign-out)."""
        self.ended = True


class ServerSessionInterface(SessionInterface):
    def __init__(self, manager: SessionManager, secure: bool) -> None:
        self.manager, self.secure = manager, secure

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        token = request.cookies.get(COOKIE_NAME)
        if not token:
            return ServerSession()
        data = self.manager.load(token)
        if data is None:
            return ServerSession(expired=True)
        return ServerSession(data, token=token)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, ServerSession)
        if session.ended:
            if session.token:
                self.manager.end(session.token)
            response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="Strict", secure=self.secure)
            return
        if session.rotate or (session.token is None and session):
            if session.token:
                self.manager.end(session.token)
            token = self.manager.create(dict(session))
            response.set_cookie(COOKIE_NAME, token, path="/", httponly=True, samesite="Strict", secure=self.secure)
            return
        if session.token:
            self.manager.save(session.token, dict(session))  # also marks the session as used now
        elif session.expired:
            response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="Strict", secure=self.secure)
