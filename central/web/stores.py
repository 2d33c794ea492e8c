"""How request handlers reach the app's shared objects, typed, in one place."""

from __future__ import annotations

from central.audit.store import AuditStore
from central.fleet.health_store import HealthStore
from central.fleet.library_register import LibraryRegister
from central.fleet.registry_store import RegistryStore
from central.ingest.status import IngestStatus
from central.peer_review.store import PeerReviewStore
from central.web.guards import extension, optional_extension


def audit_store() -> AuditStore:
    return extension("central.audit_store", AuditStore)


def registry_store() -> RegistryStore:
    return extension("central.registry", RegistryStore)


def health_store() -> HealthStore:
    return extension("central.health_store", HealthStore)


def ingest_status() -> IngestStatus | None:
    return optional_extension("central.ingest", IngestStatus)


def library_register() -> LibraryRegister:
    """The governed libraries, read-only (the fleet page and the reports)."""
    return extension("central.library_register", LibraryRegister)


def peer_reviews() -> PeerReviewStore:
    """The peer review requests and their log (the reviewers' pages and the auditors' case view)."""
    return extension("central.peer_reviews", PeerReviewStore)
