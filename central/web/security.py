"""Security headers on every response.

The CSP allows only this origin's scripts and styles (no inline code), which is
why htmx is served from our own verified copy and told, by a meta tag, not to
inject its indicator styles. Pages carry audit data, so nothing is cached.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.wrappers import Response

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Same-origin only: over HTTPS Flask-WTF also checks that a form's Referer is this site (no-referrer would
    # fail every form); other sites get no referrer at all.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def _add_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    app.after_request(_add_headers)
