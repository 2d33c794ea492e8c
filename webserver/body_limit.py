"""Refuse an over-long request body from its declared length, before the app does any work for it.

Flask enforces ``MAX_CONTENT_LENGTH`` only when something reads the form: by then the session has been
loaded from the database (and is saved again, marking it used) and the CSRF check has started parsing.
A body that is too large is refused here instead, from ``Content-Length`` alone, without reading a byte
of it; a chunked body, which declares no length, is refused too (browsers send forms with a length).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from html import escape
from typing import Any

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class BodyLimit:
    """WSGI middleware in front of a Flask app: 413 for a declared length over ``max_bytes``, 411 for none."""

    def __init__(self, app: WsgiApp, max_bytes: int, too_large: str) -> None:
        self.app, self.max_bytes, self.too_large = app, max_bytes, too_large

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        declared = environ.get("CONTENT_LENGTH") or ""
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not declared:
            return self._refuse(start_response, "411 Length Required",
                                "This request did not say how large it is. Reload the page and try again.")
        try:
            length = int(declared) if declared else 0
        except ValueError:
            length = -1
        if length < 0:
            return self._refuse(start_response, "400 Bad Request", "That request could not be read.")
        if length > self.max_bytes:
            return self._refuse(start_response, "413 Request Entity Too Large", self.too_large)
        return self.app(environ, start_response)

    @staticmethod
    def _refuse(start_response: Callable[..., Any], status: str, message: str) -> list[bytes]:
        body = (f'<!doctype html><html lang="en-GB"><head><meta charset="utf-8"><title>Not accepted</title></head>'
                f'<body><p class="error" role="alert">{escape(message)}</p></body></html>').encode()
        start_response(status, [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                                ("Connection", "close"), ("Cache-Control", "no-store")])
        return [body]
