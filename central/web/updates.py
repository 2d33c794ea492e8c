"""Serve the TUF repository to desks: ``/tuf/metadata/<name>`` and ``/tuf/targets/<name>``.

Nothing here needs to be trusted: every byte a desk downloads is checked
against signed metadata, so this blueprint only has to hand out files. It
still serves only the two public folders (never ``keys/``), refuses names
that could leave them, and answers single HTTP Range requests (206, or 416
past the end) so a desk whose link drops half-way through a large library
resumes instead of starting again. Files are streamed by a generator that
owns the open file, so a desk hanging up mid-download never leaks it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Flask, abort, current_app, request
from werkzeug.security import safe_join
from werkzeug.wrappers import Response

bp = Blueprint("updates", __name__, url_prefix="/tuf")

ENV_VAR = "RFR_CENTRAL_TUF_REPO"
# Metadata: "timestamp.json", "3.snapshot.json"; targets: "<sha256>.library-v000002.db". Flat names only.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$")
CHUNK_BYTES = 256 * 1024


def init_app(app: Flask) -> None:
    """Register the blueprint; the repository folder is ``TUF_REPO_DIR`` (or ``RFR_CENTRAL_TUF_REPO``)."""
    app.config.setdefault("TUF_REPO_DIR", os.environ.get(ENV_VAR) or None)
    app.register_blueprint(bp)


def _chunks(path: Path, start: int, length: int) -> Iterator[bytes]:
    """The file's bytes from ``start``; the ``with`` closes it even when a desk hangs up mid-download."""
    with open(path, "rb") as fh:
        fh.seek(start)
        while length > 0:
            chunk = fh.read(min(CHUNK_BYTES, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk


def _serve(folder: str, name: str, mimetype: str) -> Response:
    repo = current_app.config.get("TUF_REPO_DIR")
    if not repo:
        abort(404, "This server does not publish library updates.")
    path = safe_join(str(Path(repo) / folder), name) if _NAME.fullmatch(name) and ".." not in name else None
    if path is None or not os.path.isfile(path):
        abort(404, "There is no such file in the library repository.")
    size = os.path.getsize(path)
    start, length, status = 0, size, 200
    if request.range is not None:
        span = request.range.range_for_length(size)
        if span is None:
            abort(Response(status=416, headers={"Content-Range": f"bytes */{size}"}))
        start, stop = span
        length, status = stop - start, 206
    response = Response(_chunks(Path(path), start, length), status=status, mimetype=mimetype,
                        direct_passthrough=True)
    response.headers["Content-Length"] = str(length)
    response.headers["Accept-Ranges"] = "bytes"
    if status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/metadata/<name>")
def metadata(name: str) -> Response:
    return _serve("metadata", name, "application/json")


@bp.get("/targets/<name>")
def targets(name: str) -> Response:
    return _serve("targets", name, "application/octet-stream")
