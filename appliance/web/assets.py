"""Front-end assets pinned from npm and verified at setup, served by the app (sites are air-gapped)."""

from __future__ import annotations

from functools import cache

from flask import Blueprint, Response

from supply.pinned import member

bp = Blueprint("assets", __name__)


@cache
def _htmx() -> bytes:
    return member("htmx", "package/dist/htmx.min.js").read_bytes()


@bp.get("/vendor/htmx.min.js")
def htmx_js() -> Response:
    response = Response(_htmx(), mimetype="text/javascript")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


axe_bp = Blueprint("axe", __name__)


@cache
def _axe() -> bytes:
    return member("axe-core", "package/axe.min.js").read_bytes()


@axe_bp.get("/vendor/axe.min.js")
def axe_js() -> Response:
    """axe-core for the browser accessibility tests; registered only when testing (see create_app)."""
    return Response(_axe(), mimetype="text/javascript")
