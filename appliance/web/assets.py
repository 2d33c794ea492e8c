"""Front-end assets pinned from npm and verified at setup, served by the app (sites are air-gapped)."""

from __future__ import annotations

import mimetypes
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, abort

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
def _files() -> dict[str, tuple[bytes, str]]:
    """Every file shipped in ``static/``, read once: the fixed set a request can name.

    A lookup in this table touches neither the disk nor a cache, so a flood of made-up or
    over-long names costs nothing and grows nothing (a per-name cache used to keep every miss).
    """
    files = {}
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            name = path.relative_to(STATIC_DIR).as_posix()
            files[name] = (path.read_bytes(), mimetypes.guess_type(name)[0] or "application/octet-stream")
    return files


def served_names() -> frozenset[str]:
    return frozenset(_files())


def static_file(filename: str) -> Response:
    """The app's own CSS and JS, answered from memory."""
    found = _files().get(filename)
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
