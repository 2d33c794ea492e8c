"""Fixtures for library updates: real libraries, a real TUF repository, central's app on a real port.

Libraries are built with ``SnapshotWriter`` from synthetic unit vectors (no face
models needed). Record ``i`` always has the same template, so a search for it
works in every version; each version drops its two oldest records, adds two
and changes one thumbnail, so consecutive versions make a delta with all
three kinds of change.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from werkzeug.serving import BaseWSGIServer, make_server

from central.publish.repository import TufRepository, init_repository
from central.web import close_stores, create_app
from library.records import ReferenceRecord
from library.snapshot import SnapshotWriter, new_key

DIM = 192
EMBEDDER = "test-embedder@1"


def vector(i: int) -> np.ndarray:
    v = np.random.default_rng(1000 + i).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def members(version: int, offset: int = 0) -> range:
    return range(2 * version + offset, 20 + 2 * version + offset)


def build_library(path: Path, key: bytes, version: int, embedder: str = EMBEDDER, offset: int = 0) -> Path:
    """Library ``version``; a non-zero ``offset`` gives different content under the same version number."""
    with SnapshotWriter.create(path, key, embedder_id=embedder, dim=DIM, version=version) as writer:
        for i in members(version, offset):
            thumb = b"\xff\xd8thumb-%d-%d\xff\xd9" % (i, version if i == 2 * version + 5 else 0)
            writer.add(ReferenceRecord(subject_ref=f"SUBJ-{i:04d}", source=f"SUBJ-{i:04d}/1.jpg"), vector(i), thumb)
    return path


@pytest.fixture(scope="session")
def library_key() -> bytes:
    return new_key()


@pytest.fixture
def make_library(tmp_path: Path, library_key: bytes) -> Callable[..., Path]:
    """``make_library(version)``: a library file built on central's side (a folder of its own)."""
    folder = tmp_path / "central-builds"
    folder.mkdir()

    def make(version: int, embedder: str = EMBEDDER, offset: int = 0) -> Path:
        path = folder / f"library-{version}-{embedder}-{offset}.db"
        return path if path.exists() else build_library(path, library_key, version, embedder, offset)

    return make


@dataclass
class Central:
    """Central's repository, served over HTTP by central's own Flask app."""

    repo: TufRepository
    url: str
    server: BaseWSGIServer
    database: str = ""  # central's database: the device registry publishing wraps keys for

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/tuf/metadata/"

    @property
    def targets_url(self) -> str:
        return f"{self.url}/tuf/targets/"


def serve(app: object) -> tuple[BaseWSGIServer, threading.Thread]:
    server = make_server("127.0.0.1", 0, app, threaded=True)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    repo = init_repository(tmp_path / "repo", tmp_path / "offline-root-keys")
    app = create_app(test_config={"TESTING": True, "SECRET_KEY": "test-secret-key-0123456789",
                                  "DATABASE": str(tmp_path / "central.db"), "TUF_REPO_DIR": str(repo.repo_dir)})
    server, thread = serve(app)
    yield Central(repo, f"http://127.0.0.1:{server.port}", server, f"sqlite:///{tmp_path / 'central.db'}")
    server.shutdown()
    thread.join()
    server.server_close()
    close_stores(app)


class CuttingProxy:
    """A TCP proxy that drops the connection after ``cut_after`` response bytes, ``cuts`` times.

    Only requests whose first line contains ``match`` are cut: a cut link, as a
    desk on a flaky line sees it, between it and a healthy central.
    """

    def __init__(self, upstream_port: int, cut_after: int, match: bytes = b"/tuf/targets/", cuts: int = 1) -> None:
        self.upstream_port, self.cut_after, self.match, self.cuts = upstream_port, cut_after, match, cuts
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
            request = b""
            while b"\r\n\r\n" not in request:
                data = client.recv(65536)
                if not data:
                    return
                request += data
            self.requests.append(request)
            cut = self.cuts > 0 and self.match in request.split(b"\r\n", 1)[0]
            if cut:
                self.cuts -= 1
            upstream.sendall(request)
            sent = 0
            while data := upstream.recv(65536):
                if cut and sent + len(data) >= self.cut_after:
                    client.sendall(data[: self.cut_after - sent])
                    client.shutdown(socket.SHUT_RDWR)
                    while upstream.recv(65536):  # let central finish writing; only the desk's side is cut
                        pass
                    return
                client.sendall(data)
                sent += len(data)

    def close(self) -> None:
        self._listener.close()
