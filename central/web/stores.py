"""How request handlers reach the app's shared objects, typed, in one place."""

from __future__ import annotations

from flask import current_app

from central.audit.storage import SqlAuditStore
from central.ingest.status import IngestStatus


def audit_store() -> SqlAuditStore:
    store: SqlAuditStore = current_app.extensions["central.audit_store"]
    return store


def ingest_status() -> IngestStatus | None:
    ingest: IngestStatus | None = current_app.extensions.get("central.ingest")
    return ingest
