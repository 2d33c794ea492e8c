"""Fixtures for central: a fresh audit store and app per test, events to put in them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from central.audit.store import AuditStore
from central.web import create_app
from core.events import AuditEvent


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


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    s = AuditStore(tmp_path / "central.db")
    yield s
    s.close()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(test_config={"TESTING": True, "SECRET_KEY": "test-secret-key-0123456789",
                                  "DATABASE": str(tmp_path / "central.db")})
    yield app
    app.extensions["central.audit_store"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def app_store(app: Flask) -> AuditStore:
    store: AuditStore = app.extensions["central.audit_store"]
    return store
