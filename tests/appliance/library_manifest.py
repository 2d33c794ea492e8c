"""Authorising libraries on a test desk: an authorisation manifest applied as the updater would, and a
second real SQLCipher library held beside the provisioned one (``core.library_authorisation``, ``LibrarySet``).

The manifest is applied straight into the desk's store (``AuthorisationStore.apply``): how a manifest
reaches a desk through TUF is tested with the updater; these tests are about what the desk then searches.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from core.library_authorisation import AuthorisationManifest, AuthorisedLibrary, manifest_digest
from library.cipher import read_key_file
from library.snapshot import Snapshot

NATIONAL = "national"
NATIONAL_NAME = "National custody images"


def entry(library_id: str = NATIONAL, name: str = NATIONAL_NAME, kind: str = "substantive",
          default: bool = True, status: str = "authorised", expires_at: datetime | None = None,
          review_due: date | None = None) -> AuthorisedLibrary:
    if kind == "temporary" and expires_at is None:
        expires_at = datetime.now(UTC) + timedelta(days=30)
    return AuthorisedLibrary(
        library_id=library_id, name=name, kind=kind, purposes=["custody"], default=default, status=status,
        authorised_by="Ch Supt A. Example", authorised_rank="Chief Superintendent",
        authority_reference="RFR/AUTH/2026/001", authorised_on=date(2026, 1, 5),
        review_due=review_due or date.today() + timedelta(days=365), expires_at=expires_at)


def authorise(desk: Any, *libraries: AuthorisedLibrary) -> AuthorisationManifest:
    """Apply a manifest naming ``libraries`` (default: the national library) to ``desk``, newer than any before."""
    store = desk.authorisation
    manifest = AuthorisationManifest(version=store.applied_version() + 1, device_id=desk.settings.device_id,
                                     issued_at=datetime.now(UTC), libraries=list(libraries or (entry(),)))
    document = manifest.to_bytes()
    store.apply(document, manifest, manifest_digest(document), datetime.now(UTC).timestamp())
    return manifest


def hold(desk: Any, library_id: str, library: tuple[Path, Path]) -> Snapshot:
    """Hold a second library on ``desk`` (as the updater does when a library arrives for the first time)."""
    snapshot = Snapshot.open(library[0], read_key_file(library[1]), expected_embedder=desk.pipeline.embedder_id)
    desk.libraries.add(library_id, snapshot)
    return snapshot
