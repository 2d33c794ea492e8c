"""Serve the TUF repository to enrolled desks: ``/tuf/metadata/<name>`` and ``/tuf/targets/<name>``.

Every byte a desk downloads is checked against signed metadata, so the
integrity of the files needs no trust in this server. Who may download them
does: the targets are the encrypted national library and the desks'
configuration. Every request must therefore come with a client certificate
from the fleet PKI (the server asks for one on the TLS handshake; the
application checks it again here, chain and usage, and against the fleet CRL:
``provisioning.fleet_clients``), or it gets a 403 with nothing of the
repository in it. Without ``TUF_CLIENT_CA`` and ``TUF_CRL_FILE`` (``[web]
client_ca_file`` and the CRL) nobody is served. It
still serves only the two public folders (never ``keys/``), refuses names
that could leave them, and answers single HTTP Range requests (206, or 416
past the end) so a desk whose link drops half-way through a large library
resumes instead of starting again. Files are streamed by a generator that
owns the open file, so a desk hanging up mid-download never leaks it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Flask, abort, current_app, request
from werkzeug.security import safe_join
from werkzeug.wrappers import Response

from provisioning.fleet_clients import ClientRefused, FleetClients

logger = logging.getLogger(__name__)

bp = Blueprint("updates", __name__, url_prefix="/tuf")
CLIENT_CERT = "SSL_CLIENT_CERT"  # set by the server from the TLS peer (webserver.server, Werkzeug), never by a client
REFUSED = "Library updates are served only to enrolled desks presenting their fleet certificate."

ENV_VAR = "RFR_CENTRAL_TUF_REPO"
# Metadata: "timestamp.json", "3.snapshot.json"; targets: "<sha256>.library-v000002.db". Flat names only.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$")
CHUNK_BYTES = 256 * 1024


def init_app(app: Flask) -> None:
    """Register the blueprint; the repository folder is ``TUF_REPO_DIR`` (or ``RFR_CENTRAL_TUF_REPO``)."""
    app.config.setdefault("TUF_REPO_DIR", os.environ.get(ENV_VAR) or None)
    ca, crl = app.config.get("TUF_CLIENT_CA"), app.config.get("TUF_CRL_FILE")
    app.extensions["central.fleet_clients"] = FleetClients(Path(ca), Path(crl)) if ca and crl else None
    app.register_blueprint(bp)


@bp.before_request
def require_enrolled_desk() -> None:
    """A 403 unless the TLS peer is an enrolled desk whose certificate is not revoked."""
    clients: FleetClients | None = current_app.extensions.get("central.fleet_clients")
    if clients is None:
        abort(403, REFUSED)
    try:
        clients.check(request.environ.get(CLIENT_CERT))
    except ClientRefused as e:
        logger.warning("refused %s %s from %s: %s", request.method, request.path, request.remote_addr, e)
        abort(403, REFUSED)


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
