"""Each desk's authorisation manifest, built from the library tables.

A desk's manifest lists the libraries granted to it (or to every desk) that are authorised or
suspended, with their authorisation record; libraries granted to it that central has retired are
listed under ``retired`` so the desk destroys its copy. Requested and refused libraries never reach
a desk. The version is one more than the newest kept for that desk, so it only ever goes up; a
manifest that would say the same as the newest one is not made again (:func:`changed`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from central.libraries.store import LibraryRecord, LibraryStore
from core.library_authorisation import AuthorisationManifest, AuthorisedLibrary

ON_DESKS = ("authorised", "suspended")


def entry(record: LibraryRecord) -> AuthorisedLibrary:
    """The manifest's copy of one library's authorisation record."""
    if record.authorised_by is None or record.authorised_rank is None or record.authorised_at is None \
            or record.review_due is None:
        raise ValueError(f"library {record.library_id} is {record.status} without a complete authorisation")
    return AuthorisedLibrary(
        library_id=record.library_id, name=record.name, kind=record.kind,  # type: ignore[arg-type]
        purposes=list(record.purposes), default=record.default_for_custody,
        status=record.status,  # type: ignore[arg-type]
        authorised_by=record.authorised_by, authorised_rank=record.authorised_rank,
        authority_reference=record.authority_reference,
        authorised_on=datetime.fromisoformat(record.authorised_at).date(),
        review_due=date.fromisoformat(record.review_due),
        expires_at=datetime.fromisoformat(record.expires_at) if record.expires_at else None)


def build(store: LibraryStore, device_id: str, now: datetime) -> AuthorisationManifest:
    """The next manifest for ``device_id`` (version: one more than the newest kept)."""
    granted = store.granted_to(device_id)
    return AuthorisationManifest(
        version=store.manifest_version(device_id) + 1, device_id=device_id, issued_at=now,
        libraries=[entry(r) for r in granted if r.status in ON_DESKS],
        retired=sorted(r.library_id for r in granted if r.status == "retired"))


def changed(store: LibraryStore, manifest: AuthorisationManifest) -> bool:
    """Whether ``manifest`` says anything the desk's newest kept manifest does not."""
    newest = store.newest_manifest(manifest.device_id)
    if newest is None:
        return True
    previous = AuthorisationManifest.parse(newest["document"].encode())
    return (previous.libraries, previous.retired) != (manifest.libraries, manifest.retired)


def desks(store: LibraryStore, registered: Iterable[str], revoked: Iterable[str] = ()) -> list[str]:
    """The desks a manifest is made for: every registered desk when something is granted to every desk,
    plus each desk named in a grant, plus each desk that has had a manifest (so a withdrawn grant reaches it);
    never a revoked desk (it can no longer fetch, and has been told to wipe)."""
    names = set(store.granted_devices()) | set(store.manifest_devices())
    if store.has_fleet_grant():
        names |= set(registered)
    return sorted(names - set(revoked))
