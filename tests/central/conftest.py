"""Fixtures for central: a fresh database and app per test, signed-in clients, events to put in them."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from central.audit.store import AuditStore
from central.fleet.registry_store import RegistryStore
from central.web import close_stores, create_app
from core.events import AuditEvent
from tests.central_signin import signed_in


@pytest.fixture
def make_event() -> Callable[..., AuditEvent]:
    counter = {"seq": 0}

    def make(device_id: str = "desk-a", **fields: Any) -> AuditEvent:
        counter["seq"] += 1
        values: dict[str, Any] = {
            "seq": counter["seq"],
            "type": "search",
            "actor": "PC 1234",
            "outcome": "candidates_shown",
            "details": {"reason": "identity doubt", "candidates": 3},
        }
        values.update(fields)
        return AuditEvent(device_id=device_id, **values)

    return make


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty central database, once as an SQLite file and once in PostgreSQL: one test covers both forms."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    url: str = request.getfixturevalue("postgres").create_database()
    return url


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    s = AuditStore(tmp_path / "central.db")
    yield s
    s.close()


@pytest.fixture
def registry(store: AuditStore) -> Iterator[RegistryStore]:
    """The device registry in the ``store`` fixture's database."""
    r = RegistryStore(store.url)
    yield r
    r.close()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(test_config={"TESTING": True, "SECRET_KEY": "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k",
                                  "DATABASE": str(tmp_path / "central.db")})
    yield app
    close_stores(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Signed in as ``tester`` with every role, so page tests exercise the pages, not the guard."""
    return signed_in(app)


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    """Not signed in."""
    return app.test_client()


@pytest.fixture
def app_store(app: Flask) -> AuditStore:
    store: AuditStore = app.extensions["central.audit_store"]
    return store


@pytest.fixture
def app_registry(app: Flask) -> RegistryStore:
    registry: RegistryStore = app.extensions["central.registry"]
    return registry


def _blank_jpeg() -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((240, 240, 3), 128, dtype=np.uint8))
    assert ok
    return data.tobytes()


@pytest.fixture
def import_dir(tmp_path: Path, face_photo, group_photo) -> Path:
    """Good photos, a text file, a faceless image, a group photo, a hidden file and a loose file."""
    root = tmp_path / "import"
    for subject, name in [("DEMO-OBAMA", "obama.jpg"), ("DEMO-OBAMA", "obama2.jpg"), ("DEMO-BIDEN", "biden.jpg")]:
        (root / subject).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(face_photo(name), root / subject / name)
    (root / "DEMO-BIDEN" / "notes.txt").write_text("not a photo")
    (root / "DEMO-BLANK").mkdir()
    (root / "DEMO-BLANK" / "wall.jpg").write_bytes(_blank_jpeg())
    (root / "DEMO-GROUP").mkdir()
    shutil.copyfile(group_photo, root / "DEMO-GROUP" / "group.jpg")
    (root / "DEMO-OBAMA" / ".DS_Store").write_bytes(b"\0\0")
    shutil.copyfile(face_photo("obama3.jpg"), root / "loose.jpg")
    return root
