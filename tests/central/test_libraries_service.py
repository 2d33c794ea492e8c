"""Libraries as governed objects at central: the two-person rule, expiry, the lifecycle, the log, the manifests.

Each test runs on a real SQLite file and a real PostgreSQL database (``database_url``). What is asserted is
what an oversight board would check: who authorised what, whether the requester could authorise their own
library, what each desk's next manifest says, and that the library log shows every action and any tampering.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from central.libraries import manifest as manifests
from central.libraries.service import Actor, LibraryActionError, LibraryRequest, LibraryService
from central.libraries.store import LibraryStore
from core.library_authorisation import AuthorisationManifest

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ALICE = Actor("alice", frozenset({"library_authoriser"}))
BOB = Actor("bob", frozenset({"library_authoriser"}))
AUDITOR = Actor("carol", frozenset({"auditor"}))
REVIEW = date(2026, 9, 1)


@pytest.fixture
def store(database_url: str) -> Iterator[LibraryStore]:
    s = LibraryStore(database_url)
    yield s
    s.close()


@pytest.fixture
def service(store: LibraryStore) -> LibraryService:
    return LibraryService(store, clock=lambda: NOW)


def request(service: LibraryService, library_id: str = "national-custody", kind: str = "substantive",
            expires_at: datetime | None = None, by: Actor = ALICE) -> None:
    service.request(by, LibraryRequest(
        library_id=library_id, name=library_id.replace("-", " ").title(), kind=kind,
        purpose_text="Identify people in custody who refuse or give doubtful details.",
        legal_basis="PACE 1984 s.64A; common law policing purpose.", authority_reference="RFR-AUTH-2026-001",
        expires_at=expires_at))


def authorised(service: LibraryService, library_id: str = "national-custody", kind: str = "substantive",
               expires_at: datetime | None = None, desk: str = "*") -> None:
    request(service, library_id, kind, expires_at)
    service.authorise(BOB, library_id, authoriser_name="B. Hughes", authoriser_rank="Superintendent",
                      review_due=REVIEW)
    service.grant(BOB, library_id, desk)


def test_the_requester_cannot_authorise_their_own_library(service: LibraryService, store: LibraryStore) -> None:
    request(service)
    with pytest.raises(LibraryActionError, match="two-person rule"):
        service.authorise(ALICE, "national-custody", authoriser_name="A. Jones", authoriser_rank="Chief Inspector",
                          review_due=REVIEW)
    with pytest.raises(LibraryActionError, match="second person"):
        service.refuse(ALICE, "national-custody", "Changed my mind.")
    assert store.get("national-custody").status == "requested"  # type: ignore[union-attr]
    record = service.authorise(BOB, "national-custody", authoriser_name="B. Hughes", authoriser_rank="Superintendent",
                               review_due=REVIEW)
    assert (record.status, record.authorised_by, record.authorised_rank, record.authorised_account) == \
        ("authorised", "B. Hughes", "Superintendent", "bob")
    assert record.requested_by == "alice" and record.review_due == "2026-09-01"


def test_whoever_suspended_a_library_cannot_reinstate_it(service: LibraryService, store: LibraryStore) -> None:
    authorised(service)
    service.suspend(ALICE, "national-custody", "Data quality issue found.")
    with pytest.raises(LibraryActionError, match="two-person rule"):
        service.reinstate(ALICE, "national-custody", "Fixed.")
    assert store.get("national-custody").status == "suspended"  # type: ignore[union-attr]
    assert service.reinstate(BOB, "national-custody", "Checked the fix.").status == "authorised"


def test_only_library_authorisers_act(service: LibraryService) -> None:
    with pytest.raises(LibraryActionError, match="library_authoriser role"):
        request(service, by=AUDITOR)
    request(service)
    with pytest.raises(LibraryActionError, match="library_authoriser role"):
        service.authorise(AUDITOR, "national-custody", authoriser_name="C", authoriser_rank="Inspector",
                          review_due=REVIEW)


def test_a_temporary_library_without_an_expiry_is_refused(service: LibraryService, store: LibraryStore) -> None:
    with pytest.raises(LibraryActionError, match="must have an expiry"):
        request(service, "temp-op-kestrel", "temporary", expires_at=None)
    with pytest.raises(LibraryActionError, match="in the future"):
        request(service, "temp-op-kestrel", "temporary", expires_at=NOW - timedelta(minutes=1))
    assert store.get("temp-op-kestrel") is None and store.log() == []
    request(service, "temp-op-kestrel", "temporary", expires_at=NOW + timedelta(days=30))
    record = service.authorise(BOB, "temp-op-kestrel", authoriser_name="B. Hughes", authoriser_rank="Superintendent",
                               review_due=REVIEW)
    # A temporary library is reviewed by its expiry at the latest.
    assert record.expires_at == "2026-04-01T09:30:00.000+00:00" and record.review_due == "2026-04-01"


def test_purpose_legal_basis_and_authority_are_required(service: LibraryService) -> None:
    with pytest.raises(LibraryActionError, match="legal basis"):
        service.request(ALICE, LibraryRequest("lib-a", "A", "substantive", "purpose", " ", "REF-1"))
    with pytest.raises(LibraryActionError, match="library id"):
        service.request(ALICE, LibraryRequest("Not An Id", "A", "substantive", "purpose", "basis", "REF-1"))


def test_only_the_allowed_transitions_happen(service: LibraryService) -> None:
    request(service)
    with pytest.raises(LibraryActionError, match="is requested, so it cannot be suspended"):
        service.suspend(BOB, "national-custody", "Data quality.")
    service.refuse(BOB, "national-custody", "Not proportionate.")
    with pytest.raises(LibraryActionError, match="is refused, so it cannot be authorised"):
        service.authorise(BOB, "national-custody", authoriser_name="B", authoriser_rank="Supt", review_due=REVIEW)
    with pytest.raises(LibraryActionError, match="cannot be given to a desk"):
        service.grant(BOB, "national-custody", "desk-01")


def test_each_action_is_in_the_log_and_tampering_shows(service: LibraryService, store: LibraryStore) -> None:
    authorised(service)
    service.review(ALICE, "national-custody", review_due=date(2026, 12, 1), notes="Still needed; error rates fine.")
    service.suspend(ALICE, "national-custody", "Data quality issue found.")
    service.retire(BOB, "national-custody", "Replaced by the 2026 library.")
    entries = store.log("national-custody")
    assert [(e.action, e.actor) for e in entries] == [
        ("request", "alice"), ("authorise", "bob"), ("grant", "bob"), ("review", "alice"), ("suspend", "alice"),
        ("retire", "bob")]
    assert entries[1].detail["authorised_by"] == "B. Hughes" and entries[4].detail["reason"] == \
        "Data quality issue found."
    assert store.verify_log() == []
    # Someone with database access rewrites who authorised it: the chain says so.
    store._execute("UPDATE library_log SET actor = 'alice' WHERE action = 'authorise'")
    problems = store.verify_log()
    assert len(problems) == 1 and "authorise of national-custody" in problems[0]


def test_suspend_and_retire_change_the_next_manifest(service: LibraryService, store: LibraryStore) -> None:
    authorised(service, "national-custody")
    authorised(service, "temp-op-kestrel", "temporary", NOW + timedelta(days=10), desk="desk-01")

    def next_manifest() -> AuthorisationManifest:
        manifest = manifests.build(store, "desk-01", NOW)
        document = manifest.to_bytes()
        assert store.add_manifest("desk-01", NOW, document, "sha256:" + "0" * 64, manifest.version)
        return AuthorisationManifest.parse(document)

    first = next_manifest()
    assert [(lib.library_id, lib.status) for lib in first.libraries] == [
        ("national-custody", "authorised"), ("temp-op-kestrel", "authorised")]
    assert first.refusal("temp-op-kestrel", NOW) is None and first.retired == []
    kestrel = first.library("temp-op-kestrel")
    assert kestrel is not None and kestrel.authorised_by == "B. Hughes" and kestrel.expires_at is not None

    service.suspend(ALICE, "temp-op-kestrel", "Operation paused.")
    second = next_manifest()
    assert second.version == first.version + 1 and second.refusal("temp-op-kestrel", NOW) == "suspended"

    service.retire(ALICE, "temp-op-kestrel", "Operation closed.")
    third = next_manifest()
    assert third.version == second.version + 1
    assert [lib.library_id for lib in third.libraries] == ["national-custody"] and third.retired == ["temp-op-kestrel"]
    # Another desk never sees the temporary library (granted to desk-01 only).
    other = manifests.build(store, "desk-02", NOW)
    assert [lib.library_id for lib in other.libraries] == ["national-custody"] and other.retired == []


def test_manifest_versions_increase_per_desk_and_an_unchanged_one_is_not_made(service: LibraryService,
                                                                            store: LibraryStore) -> None:
    authorised(service)
    for desk in ("desk-01", "desk-02", "desk-01"):
        manifest = manifests.build(store, desk, NOW)
        assert store.add_manifest(desk, NOW, manifest.to_bytes(), "sha256:" + "1" * 64, manifest.version)
    assert store.manifest_version("desk-01") == 2 and store.manifest_version("desk-02") == 1
    # A replayed or stale version is refused by the store itself.
    assert not store.add_manifest("desk-01", NOW, b"{}", "sha256:" + "1" * 64, 2)
    assert not manifests.changed(store, manifests.build(store, "desk-01", NOW))
    service.suspend(ALICE, "national-custody", "Paused.")
    assert manifests.changed(store, manifests.build(store, "desk-01", NOW))


def test_requested_and_refused_libraries_never_reach_a_desk(service: LibraryService, store: LibraryStore) -> None:
    request(service, "lib-pending")
    service.grant(BOB, "lib-pending", "desk-01")
    request(service, "lib-refused")
    service.grant(BOB, "lib-refused", "desk-01")
    service.refuse(BOB, "lib-refused", "Not necessary.")
    manifest = manifests.build(store, "desk-01", NOW)
    assert manifest.libraries == [] and manifest.retired == []
    assert manifests.desks(store, ["desk-09"]) == ["desk-01"]  # no fleet-wide grant: registered desks not added


def test_compositions_are_kept_with_the_library(store: LibraryStore) -> None:
    counts = {"library_version": 3, "records": 10, "subjects": 4, "by_sex": {"F": 6, "M": 4}}
    store.record_composition("national-custody", 3, counts, NOW)
    store.record_composition("national-custody", 3, {**counts, "records": 11}, NOW)  # a rebuild replaces it
    [kept] = store.compositions("national-custody")
    assert kept["library_version"] == 3 and kept["composition"]["records"] == 11
    assert [e.action for e in store.log("national-custody")] == ["built", "built"]


def test_a_revoked_desk_gets_no_new_manifest(service: LibraryService, store: LibraryStore) -> None:
    authorised(service, desk="desk-01")
    service.grant(BOB, "national-custody", "desk-02")
    assert manifests.desks(store, ["desk-03"], revoked=["desk-02"]) == ["desk-01"]
    service.grant(BOB, "national-custody", "*")
    assert manifests.desks(store, ["desk-03", "desk-02"], revoked=["desk-02"]) == ["desk-01", "desk-03"]
