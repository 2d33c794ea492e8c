"""How request handlers reach the app's shared objects, typed, in one place."""

from __future__ import annotations

from flask import current_app

from central.audit.store import AuditStore
from central.fleet.health_store import HealthStore
from central.fleet.library_register import LibraryRegister
from central.fleet.registry_store import RegistryStore
from central.ingest.status import IngestStatus


def audit_store() -> AuditStore:
    store: AuditStore = current_app.extensions["central.audit_store"]
    return store


def registry_store() -> RegistryStore:
    store: RegistryStore = current_app.extensions["central.registry"]
    return store


def health_store() -> HealthStore:
    store: HealthStore = current_app.extensions["central.health_store"]
    return store


def ingest_status() -> IngestStatus | None:
    ingest: IngestStatus | None = current_app.extensions.get("central.ingest")
    return ingest


def library_register() -> LibraryRegister:
    """The governed libraries, read-only (the fleet page and the reports)."""
    register: LibraryRegister = current_app.extensions["central.library_register"]
    return register
