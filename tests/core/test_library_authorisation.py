"""The authorisation manifest both sides parse: what it refuses to carry, and what it refuses to search."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import WireFormatError
from core.library_announce import LibraryTargetInfo
from core.library_authorisation import AuthorisationManifest, AuthorisationTargetInfo, manifest_target_name

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _library(library_id: str = "national", **changes: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "library_id": library_id, "name": "National custody images", "kind": "substantive",
        "purposes": ["custody"], "default": True, "status": "authorised", "authorised_by": "A. Smith",
        "authorised_rank": "Chief Superintendent", "authority_reference": "RFR-AUTH-2026-004",
        "authorised_on": "2026-06-01", "review_due": "2027-06-01", "expires_at": None}
    entry.update(changes)
    return entry


def _manifest(*libraries: dict[str, object], **changes: object) -> AuthorisationManifest:
    body: dict[str, object] = {"version": 3, "device_id": "desk-001", "issued_at": NOW.isoformat(),
                               "libraries": list(libraries), "retired": []}
    body.update(changes)
    return AuthorisationManifest.model_validate(body, strict=False)


def test_a_library_is_searchable_only_while_authorised_in_date_and_for_custody() -> None:
    expires = NOW + timedelta(hours=1)
    manifest = _manifest(_library(), _library("op-kestrel", kind="temporary", expires_at=expires.isoformat(),
                                              default=False),
                         _library("paused", status="suspended"), _library("late", review_due="2026-12-03"),
                         _library("other", purposes=["custody"]))
    assert manifest.refusal("national", NOW) is None
    assert manifest.refusal("op-kestrel", NOW) is None
    assert manifest.refusal("op-kestrel", expires) == "expired"
    assert manifest.library("op-kestrel").has_expired(expires + timedelta(seconds=1))  # type: ignore[union-attr]
    assert manifest.refusal("paused", NOW) == "suspended"
    assert manifest.refusal("late", NOW) == "review_overdue"
    assert manifest.refusal("unknown", NOW) == "not_listed"
    assert [lib.library_id for lib in manifest.searchable(NOW)] == ["national", "op-kestrel", "other"]


@pytest.mark.parametrize(("change", "words"), [
    ({"kind": "temporary"}, "expiry"),
    ({"purposes": ["marketing"]}, "unknown purposes"),
    ({"review_due": "2026-01-01"}, "before the date of authorisation"),
])
def test_a_manifest_central_must_not_sign_is_refused_with_its_reason(change: dict[str, object], words: str) -> None:
    body = _manifest(_library()).model_dump(mode="json")
    body["libraries"][0].update(change)
    with pytest.raises(WireFormatError, match=words):
        AuthorisationManifest.parse(json.dumps(body).encode())


def test_a_library_listed_twice_or_both_listed_and_retired_is_refused() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        _manifest(_library(), _library())
    with pytest.raises(ValueError, match="both authorised and retired"):
        _manifest(_library(), retired=["national"])


def test_the_target_describes_the_manifest_from_its_own_bytes() -> None:
    document = _manifest(_library()).to_bytes()
    info = AuthorisationTargetInfo.of(document)
    assert info.name == "authorisation-desk-001-v000003.json" == manifest_target_name("desk-001", 3)
    assert AuthorisationTargetInfo.from_dict(info.to_dict()) == info
    assert AuthorisationManifest.parse(document) == _manifest(_library())
    with pytest.raises(WireFormatError):
        AuthorisationTargetInfo.from_dict({**info.to_dict(), "extra": 1})


def test_library_targets_name_their_lineage_and_old_targets_read_as_national() -> None:
    base = {"kind": "full", "library_version": 2, "embedder_id": "e@1", "result_digest": "sha256:" + "a" * 64,
            "key_id": "b" * 32}
    legacy = LibraryTargetInfo.from_dict(base)
    assert (legacy.library_id, legacy.name) == ("national", "library-v000002.db")
    assert legacy.to_dict() == base
    named = LibraryTargetInfo.from_dict({**base, "library_id": "op-kestrel"})
    assert named.name == "library-op-kestrel-v000002.db"
    assert LibraryTargetInfo.from_dict(named.to_dict()) == named
    with pytest.raises(WireFormatError):
        LibraryTargetInfo.from_dict({**base, "library_id": "../etc"})
