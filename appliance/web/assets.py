"""Front-end assets pinned from npm and verified at setup, served by the app (sites are air-gapped)."""

from __future__ import annotations

import mimetypes
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, abort
from werkzeug.security import safe_join

from supply.pinned import member

STATIC_DIR = Path(__file__).with_name("static")

bp = Blueprint("assets", __name__)


@cache
def _htmx() -> bytes:
    return member("htmx", "package/dist/htmx.min.js").read_bytes()


@bp.get("/vendor/htmx.min.js")
def htmx_js() -> Response:
    response = Response(_htmx(), mimetype="text/javascript")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@cache
def _static(filename: str) -> tuple[bytes, str] | None:
    path = safe_join(str(STATIC_DIR), filename)
    if path is None or not Path(path).is_file():
        return None
    return Path(path).read_bytes(), mimetypes.guess_type(path)[0] or "application/octet-stream"


def static_file(filename: str) -> Response:
    """The app's own CSS and JS, read once and answered from memory."""
    found = _static(filename)
    if found is None:
        abort(404, "There is no such file on this device.")
    data, mimetype = found
    response = Response(data, mimetype=mimetype)
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
