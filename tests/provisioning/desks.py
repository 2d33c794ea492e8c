"""Helpers for the fleet tests: a live desk app on a broker, and central's ingest and web app beside it."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask

from appliance.web import create_app
from central.audit.store import AuditStore
from central.fleet.health_store import HealthStore
from central.fleet.registry_store import RegistryStore
from central.ingest.mqtt import AuditIngest
from central.settings import CentralMqttSettings as CentralMqtt
from central.web import close_stores
from central.web import create_app as create_central
from core.audit.checkpoint import public_key_hex
from tests.appliance.conftest import appliance_settings
from tests.fleet_key import COMMAND_KEY


@dataclass
class Central:
    web: Flask
    ingest: AuditIngest
    store: AuditStore
    registry: RegistryStore
    health: HealthStore
    db: Path


@contextmanager
def running_central(tmp_path: Path, port: int, *, command_key: Ed25519PrivateKey = COMMAND_KEY,
                    **config: object) -> Iterator[Central]:
    """Central's ingest worker and web app on one SQLite database, on the plain test broker; it signs with the
    test fleet-command key (``tests.fleet_key``), which ``appliance_settings`` desks trust, unless given another
    ``command_key`` (a ``FollowedCommandKey``, to follow a rotation as ``python -m central`` does)."""
    db = tmp_path / "central.db"
    store, registry, health = AuditStore(db), RegistryStore(db), HealthStore(db)
    ingest = AuditIngest(CentralMqtt(host="127.0.0.1", port=port, client_id=f"central-{uuid.uuid4().hex[:8]}"),
                         store, command_key=command_key)
    ingest.start()
    assert ingest.wait_connected(10)
    web = create_central(test_config={"TESTING": True, "SECRET_KEY": "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k",
                                      "DATABASE": str(db), **config})
    try:
        yield Central(web, ingest, store, registry, health, db)
    finally:
        ingest.stop()
        for each in (store, registry, health):
            each.close()
        close_stores(web)


def copy_library(tmp_path: Path, library: tuple[Path, Path]) -> tuple[Path, Path]:
    """A desk's own copy of the demo library (a wipe destroys it; the session's copy must survive)."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    return Path(shutil.copy(library[0], folder)), Path(shutil.copy(library[1], folder))


def live_desk(tmp_path: Path, library: tuple[Path, Path], pipeline, port: int, central: Central,
              **over: object) -> tuple[Flask, str]:
    """A desk app with sync started and its audit key registered at central; a fresh id (sessions persist)."""
    device = f"desk-{uuid.uuid4().hex[:8]}"
    settings = appliance_settings(tmp_path, copy_library(tmp_path, library), mqtt_port=port, device_id=device,
                                  **over)
    app = create_app(settings, pipeline=pipeline, start_sync=False)
    app.config["TESTING"] = True
    central.registry.register_device(device, public_key_hex(app.extensions["desk"].outbox.public_key))
    app.extensions["desk"].mqtt.start()
    return app, device
