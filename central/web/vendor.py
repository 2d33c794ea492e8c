"""Front-end libraries served from the verified supply cache, never from a CDN.

The file is the one inside the pinned, sha256-checked npm tarball, so nothing is
copied into git and an air-gapped site serves exactly what was tested.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, abort, send_file
from werkzeug.wrappers import Response

from supply import pinned

logger = logging.getLogger(__name__)

bp = Blueprint("vendor", __name__)

_ASSETS = {"htmx.min.js": ("htmx", "package/dist/htmx.min.js")}
_ONE_DAY = 24 * 3600


def _asset_path(name: str) -> Path:
    key, member = _ASSETS[name]
    return pinned.member(key, member)


@bp.get("/static/vendor/<name>")
def asset(name: str) -> Response:
    if name not in _ASSETS:
        abort(404)
    try:
        path = _asset_path(name)
    except pinned.SupplyError as e:
        logger.error("vendored asset %s unavailable: %s", name, e)
        abort(503, f"{name} is not available on this server: run scripts/setup.sh (see the server log).")
    response = send_file(path, mimetype="text/javascript", max_age=_ONE_DAY)
    response.headers["Cache-Control"] = f"public, max-age={_ONE_DAY}"
    return response
