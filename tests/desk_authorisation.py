"""Give a test desk its library authorisation manifest, as central would, through the desk's own apply path.

A desk searches only libraries its signed authorisation manifest lists (issue #18). Test desks get one
through ``AuthorisationUpdater.apply_verified``: the step the updater runs once TUF has verified the
manifest target, so the seed passes every check a real one does (this desk, newer, digest) and is audited
the same way. ``manifest`` builds the document; ``entry`` one library in it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from appliance.runtime import open_records
from appliance.settings import ApplianceSettings
from appliance.storage.authorisation import AuthorisationStore
from appliance.updates.authorisation import AuthorisationResult, AuthorisationUpdater
from core.library_authorisation import AuthorisationTargetInfo


def entry(library_id: str = "national", *, name: str | None = None, kind: str = "substantive",
          default: bool = True, status: str = "authorised", review_due: date | None = None,
          expires_at: datetime | None = None, **over: Any) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    data = {"library_id": library_id, "name": name or f"{library_id.title()} custody images", "kind": kind,
            "purposes": ["custody"], "default": default, "status": status, "authorised_by": "A. Authoriser",
            "authorised_rank": "Chief Superintendent", "authority_reference": f"RFR-AUTH-{library_id}",
            "authorised_on": (today - timedelta(days=30)).isoformat(),
            "review_due": (review_due or today + timedelta(days=365)).isoformat(),
            "expires_at": expires_at.isoformat() if expires_at else None}
    data.update(over)
    return data


def manifest(device_id: str, version: int = 1, libraries: list[dict[str, Any]] | None = None,
             retired: list[str] | None = None) -> bytes:
    import json

    doc = {"version": version, "device_id": device_id, "issued_at": datetime.now(UTC).isoformat(),
           "libraries": [entry()] if libraries is None else libraries, "retired": retired or []}
    return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


def seed_authorisation(settings: ApplianceSettings, document: bytes | None = None) -> AuthorisationResult | None:
    """Apply ``document`` (default: the provisioned library, authorised for a year) on the desk at
    ``settings.data_dir`` unless a manifest is already applied there (a restarted test desk)."""
    document = document or manifest(settings.device_id, libraries=[entry(settings.library.library_id)])
    records = open_records(settings)
    try:
        store = AuthorisationStore(records.db)
        info = AuthorisationTargetInfo.of(document)
        if store.applied_version() >= info.manifest_version:
            return None
        return AuthorisationUpdater(store, records.audit, settings.device_id).apply_verified(document, info,
                                                                                             info.name)
    finally:
        records.db.close()
