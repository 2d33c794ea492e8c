"""The search names its libraries (#18 point 3): the form's choice, the search over every chosen library, the
refusal when one can no longer be searched, candidates labelled by library, and what the case and audit keep.

Real parts throughout: two SQLCipher libraries built with the real pipeline (the session's demo library as
the national one, and a temporary operation library beside it), the desk's encrypted database, its routes.
Record ids are per library and both libraries number theirs from 1, so a look-up by record id alone would
show the wrong image: the tests compare each candidate's image with its own library's.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from appliance.storage.cases import CaseStore
from central.peer_review.references import LibraryFile, ReferenceLibraries
from core.errors import WireFormatError
from core.peer_review import CandidateSummary
from tests.appliance.desk_helpers import (
    PASSWORD,
    Desk,
    add_users,
    case_id_from,
    events,
    fast_kdf,
    state_of,
)
from tests.appliance.library_manifest import NATIONAL_NAME, authorise, entry, hold

OPERATION = "op-tango"
OPERATION_NAME = "Operation Tango"
EXPIRES = datetime.now(UTC).replace(microsecond=0) + timedelta(days=20)


@pytest.fixture(scope="session")
def operation_library(default_pipeline, face_photo, tmp_path_factory):
    """A temporary library for one operation: Obama's second photo mirrored (so its score differs from the
    national library's copy), Biden, and the faces of one group photo."""
    import cv2

    from library.records import ReferenceRecord
    from library.snapshot import SnapshotWriter, new_key, write_key_file
    from supply.pinned import member

    pipeline = default_pipeline
    folder = tmp_path_factory.mktemp("operation-library")
    key = new_key()
    write_key_file(folder / "op.key", key)
    with SnapshotWriter.create(folder / "op.db", key, embedder_id=pipeline.embedder_id, dim=pipeline.dim) as w:
        mirrored = cv2.flip(cv2.imread(str(face_photo("obama2.jpg"))), 1)
        face = pipeline.detect(mirrored)[0]
        w.add(ReferenceRecord(subject_ref="OP-TANGO-7", source="tango/obama2-mirrored.jpg"),
              pipeline.embed(mirrored, face), pipeline.thumbnail_jpeg(mirrored, face))
        result = pipeline.process(face_photo("biden.jpg").read_bytes())
        w.add(ReferenceRecord(subject_ref="OP-TANGO-2", source="tango/biden.jpg"), result.template, result.thumbnail)
        image = cv2.imread(str(member("vladmandic-face-api", "package/demo/sample2.jpg")))
        for i, face in enumerate(pipeline.detect(image)):
            w.add(ReferenceRecord(subject_ref=f"OP-F{i}", source=f"tango/sample2.jpg#{i}"),
                  pipeline.embed(image, face), pipeline.thumbnail_jpeg(image, face))
    return folder / "op.db", folder / "op.key"


@pytest.fixture
def desk_app(app, monkeypatch, operation_library):
    """The desk holding the national library and Operation Tango's, both authorised for custody; only the
    national one is in the default set."""
    fast_kdf(monkeypatch)
    add_users(app)
    desk = app.extensions["desk"]
    hold(desk, OPERATION, operation_library)
    authorise(desk, entry(), entry(OPERATION, OPERATION_NAME, kind="temporary", default=False, expires_at=EXPIRES))
    return app


def submitted(app, libraries: list[str]) -> tuple[Desk, str]:
    officer = Desk(app, "officer")
    case_id = case_id_from(officer.submit(libraries=libraries))
    assert Desk(app, "inspector").post(f"/cases/{case_id}/approve", {"password": PASSWORD}).status_code == 302
    return officer, case_id


def photographed(app, face_photo, libraries: list[str]) -> tuple[Desk, str]:
    officer, case_id = submitted(app, libraries)
    assert officer.upload(case_id, face_photo("obama3.jpg").read_bytes()).status_code == 200
    return officer, case_id


# ---- The form -------------------------------------------------------------------------------------------------


def test_the_form_offers_the_authorised_libraries_with_the_default_set_ticked(desk_app):
    html = Desk(desk_app, "officer").get("/cases/new").get_data(as_text=True)
    national = re.search(r'<input type="checkbox" id="library-national"[^>]*>', html, re.S)
    operation = re.search(rf'<input type="checkbox" id="library-{OPERATION}"[^>]*>', html, re.S)
    assert national and "checked" in national.group(0), "the manifest's default set is ticked"
    assert operation and "checked" not in operation.group(0)
    assert f'aria-describedby="library-{OPERATION}-hint"' in operation.group(0)
    hint = re.search(rf'id="library-{OPERATION}-hint">([^<]*)<time[^>]*>([^<]*)</time>', html)
    assert hint and hint.group(1).startswith("Temporary library") and "expires" in hint.group(1)
    assert str(EXPIRES.year) in hint.group(2)
    assert "Permitted library (substantive)" in html and NATIONAL_NAME in html and OPERATION_NAME in html


def test_a_suspended_library_is_not_offered(desk_app):
    authorise(desk_app.extensions["desk"], entry(),
              entry(OPERATION, OPERATION_NAME, kind="temporary", default=False, status="suspended"))
    html = Desk(desk_app, "officer").get("/cases/new").get_data(as_text=True)
    assert 'id="library-national"' in html and f'id="library-{OPERATION}"' not in html


def test_the_form_refuses_a_library_it_did_not_offer_and_an_empty_choice(desk_app):
    officer = Desk(desk_app, "officer")
    before = len(desk_app.extensions["desk"].cases.list())
    response = officer.submit(libraries=["national", "covert-watchlist"])
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "covert-watchlist&#39; is not authorised for this desk" in html
    refused = events(desk_app, "search_refused")[-1]
    assert refused["outcome"] == "library_not_authorised"
    assert refused["details"]["library_id"] == "covert-watchlist" and refused["details"]["refusal"] == "not_listed"
    # A library the manifest lists but has suspended, sent by a page loaded before the suspension.
    authorise(desk_app.extensions["desk"], entry(),
              entry(OPERATION, OPERATION_NAME, kind="temporary", default=False, status="suspended"))
    response = officer.submit(libraries=[OPERATION])
    assert response.status_code == 422 and "has been suspended" in response.get_data(as_text=True)
    assert events(desk_app, "search_refused")[-1]["details"] == {
        **events(desk_app, "search_refused")[-1]["details"], "library_id": OPERATION, "refusal": "suspended"}
    response = officer.submit(libraries=[])
    assert response.status_code == 422 and "Choose at least one library to search." in response.get_data(as_text=True)
    assert len(desk_app.extensions["desk"].cases.list()) == before, "no case was made"


# ---- The search ---------------------------------------------------------------------------------------------


def test_a_search_of_two_libraries_merges_their_top_k_by_score_and_names_each_candidates_library(
        desk_app, face_photo):
    desk = desk_app.extensions["desk"]
    officer, case_id = photographed(desk_app, face_photo, ["national", OPERATION])
    assert officer.post(f"/cases/{case_id}/search").status_code == 302
    rows = desk.cases.candidates(case_id)
    top_k = desk.cases.top_k() if callable(desk.cases.top_k) else desk.cases.top_k
    # The expected list: each library searched on its own, then the k best of both by score.
    template = desk.cases.probe(case_id).template
    import numpy as np

    vector = np.frombuffer(template, dtype="<f4")
    both = [(c.score, lib, c.record.record_id) for lib in ("national", OPERATION)
            for c in desk.libraries.current(lib).search(vector, top_k)]
    expected = sorted(both, key=lambda t: -t[0])[:top_k]
    assert [(r.library_id, r.record_id) for r in rows] == [(lib, rid) for _, lib, rid in expected]
    assert [r.rank for r in rows] == list(range(1, len(rows) + 1))
    assert [r.score for r in rows] == sorted((r.score for r in rows), reverse=True)
    assert {r.library_id for r in rows} == {"national", OPERATION}, "both libraries contributed"

    # Each candidate's image comes from its own library (record ids overlap between the two).
    for row in rows:
        jpeg = officer.get(f"/cases/{case_id}/candidates/{row.rank}.jpg").data
        assert jpeg == desk.libraries.snapshot(row.library_id).thumbnail(row.record_id), row

    # The case and the audit event record the libraries and versions searched.
    searched = [{"library_id": "national", "name": NATIONAL_NAME, "kind": "substantive",
                 "version": desk.libraries.current("national").version},
                {"library_id": OPERATION, "name": OPERATION_NAME, "kind": "temporary",
                 "version": desk.libraries.current(OPERATION).version}]
    assert desk.cases.get(case_id).libraries_searched == searched
    event = events(desk_app, "search")[-1]
    assert event["details"]["libraries"] == searched
    assert sum(event["details"]["candidates_by_library"].values()) == len(rows)

    # The candidates page names each person's library in words.
    html = officer.get(f"/cases/{case_id}/candidates").get_data(as_text=True)
    tango = re.search(r'data-subject="OP-TANGO-7".*?<legend>.*?<span class="library-label"[^>]*>([^<]*)<', html, re.S)
    assert tango and tango.group(1) == f"from {OPERATION_NAME} (temporary library)"
    obama = re.search(r'data-subject="DEMO-OBAMA".*?<legend>.*?<span class="library-label"[^>]*>([^<]*)<', html, re.S)
    assert obama and obama.group(1) == f"from {NATIONAL_NAME} (permitted library)"
    assert "in 2 libraries" in html, "the scale says how many libraries the records were in"

    # The side-by-side comparison names the library too, and shows that library's image.
    tango_rank = next(r.rank for r in rows if r.subject_ref == "OP-TANGO-7")
    page = officer.get(f"/cases/{case_id}/candidates/{tango_rank}/compare").get_data(as_text=True)
    assert f'id="reference-library">{OPERATION_NAME} (temporary library)<' in page
    page = officer.get(f"/cases/{case_id}/candidates/{tango_rank}/features").get_data(as_text=True)
    assert f"From the library: {OPERATION_NAME} (temporary library)." in page
    # The printable summary (the export) names the libraries and versions searched.
    page = officer.get(f"/cases/{case_id}/summary").get_data(as_text=True)
    versions = {lib["library_id"]: lib["version"] for lib in searched}
    assert (f"{NATIONAL_NAME} (permitted library, version {versions['national']}); "
            f"{OPERATION_NAME} (temporary library, version {versions[OPERATION]})") in page


def test_the_same_subject_reference_in_two_libraries_is_two_people(desk_app):
    from appliance.services.candidate_view import CandidateView, group_by_subject

    def view(rank: int, library: str) -> CandidateView:
        return CandidateView(rank=rank, score=1 - rank / 10, band_name="strong", band_label="Strong",
                             subject_ref="S-1", image_date="2020-01-01", time_lapse="5 years",
                             age_at_image="30 years", reference_quality="Good", reference_quality_reasons=[],
                             decision=None, subject_key=f"{library}|S-1", library_id=library)

    people = group_by_subject([view(1, "national"), view(2, OPERATION), view(3, "national")])
    assert [(p.ranks, p.best.library_id) for p in people] == [([1, 3], "national"), ([2], OPERATION)]


def test_a_library_suspended_after_approval_stops_the_search_in_plain_words(desk_app, face_photo):
    desk = desk_app.extensions["desk"]
    officer, case_id = photographed(desk_app, face_photo, ["national", OPERATION])
    authorise(desk, entry(), entry(OPERATION, OPERATION_NAME, kind="temporary", default=False, status="suspended",
                                   expires_at=EXPIRES))
    searches = len(events(desk_app, "search"))
    response = officer.post(f"/cases/{case_id}/search")
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert f"The library &#39;{OPERATION_NAME}&#39; has been suspended" in html or \
        f"The library '{OPERATION_NAME}' has been suspended" in html
    assert "Nothing was searched." in html
    assert desk.cases.candidates(case_id) == [] and state_of(desk_app, case_id) == "probe_captured"
    assert len(events(desk_app, "search")) == searches, "no search ran"
    refused = events(desk_app, "search_refused")[-1]
    assert refused["outcome"] == "library_not_authorised"
    assert (refused["details"]["library_id"], refused["details"]["refusal"]) == (OPERATION, "suspended")
    assert refused["details"]["case_id"] == case_id

    # The case page says so before Search is pressed again, and offers searching the rest of the choice.
    page = officer.get(f"/cases/{case_id}").get_data(as_text=True)
    assert 'id="libraries-refused"' in page and f'data-library="{OPERATION}" data-refusal="suspended"' in page
    assert officer.post(f"/cases/{case_id}/libraries", {"libraries": [OPERATION, "national"]}).status_code == 302
    assert officer.post(f"/cases/{case_id}/search").status_code == 409, "the suspended library is still chosen"
    assert officer.post(f"/cases/{case_id}/libraries", {"libraries": ["national"]}).status_code == 302
    narrowed = events(desk_app, "submission")[-1]
    assert narrowed["outcome"] == "libraries_narrowed" and narrowed["details"]["libraries_removed"] == [OPERATION]
    assert officer.post(f"/cases/{case_id}/search").status_code == 302
    assert {r.library_id for r in desk.cases.candidates(case_id)} == {"national"}
    html = officer.get(f"/cases/{case_id}/candidates").get_data(as_text=True)
    assert f"all in {NATIONAL_NAME}." in html, "one library searched: said once for every candidate"
    assert 'class="library-label"' not in html
    assert [lib["library_id"] for lib in events(desk_app, "search")[-1]["details"]["libraries"]] == ["national"]


def test_a_library_past_its_expiry_at_search_time_is_refused(desk_app, face_photo):
    desk = desk_app.extensions["desk"]
    officer, case_id = photographed(desk_app, face_photo, [OPERATION])
    desk.cases._clock = lambda: (EXPIRES + timedelta(minutes=1)).timestamp()  # the desk's clock, past expiry
    response = officer.post(f"/cases/{case_id}/search")
    assert response.status_code == 409 and "Nothing was searched." in response.get_data(as_text=True)
    assert events(desk_app, "search_refused")[-1]["details"]["refusal"] == "expired"
    page = officer.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "None of the libraries you chose can be searched now" in page


def test_narrowing_never_adds_a_library(desk_app, face_photo):
    officer, case_id = photographed(desk_app, face_photo, ["national"])
    response = officer.post(f"/cases/{case_id}/libraries", {"libraries": [OPERATION]})
    assert response.status_code == 409 and "Only libraries chosen on the request" in response.get_data(as_text=True)
    assert desk_app.extensions["desk"].cases.get(case_id).chosen_libraries == ["national"]


# ---- Records from before --------------------------------------------------------------------------------------


def test_candidate_rows_from_before_gain_the_library_they_came_from(app):
    db = app.extensions["desk"].db
    with db.lock:
        db.conn.execute("DROP TABLE case_candidates")
        db.conn.execute("CREATE TABLE case_candidates (case_id TEXT NOT NULL, rank INTEGER NOT NULL, record_id "
                        "INTEGER NOT NULL, score REAL NOT NULL, decision TEXT, subject_ref TEXT, "
                        "PRIMARY KEY (case_id, rank))")
        db.conn.execute("INSERT INTO case_candidates VALUES ('OLD1', 1, 7, 0.9, NULL, 'DEMO-OBAMA')")
        db.conn.commit()
    rows = CaseStore(db).candidates("OLD1")
    assert [(r.library_id, r.record_id) for r in rows] == [("national", 7)]


# ---- Peer review at central ----------------------------------------------------------------------------------


def test_a_peer_review_names_the_library_and_central_looks_only_there(demo_library, operation_library):
    summary = CandidateSummary(1, "OP-TANGO-7", 0.8, "strong", "needs_peer_review", "tango/biden.jpg",
                               library_id=OPERATION)
    assert CandidateSummary.from_dict(summary.to_dict()) == summary
    with pytest.raises(WireFormatError):
        CandidateSummary(1, "X", 0.8, "strong", "viable", library_id="../../etc")
    central = ReferenceLibraries([LibraryFile(*demo_library), LibraryFile(*operation_library, library_id=OPERATION)])
    found = central.find(1, "tango/biden.jpg", "OP-TANGO-2", OPERATION)
    assert found.found and found.record.subject_ref == "OP-TANGO-2"
    missing = central.find(1, "tango/biden.jpg", "OP-TANGO-2", "national")
    assert not missing.found, "a source is looked up only in the library the candidate came from"
    assert central.find(2, "biden.jpg", "DEMO-BIDEN", None).found, "a request naming no library: national"


def test_the_peer_review_request_names_each_candidates_library_and_source(desk_app, face_photo):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from appliance.services.peer_review import CentralPeerReviewChannel, PeerReviewRequest
    from appliance.storage.peer_review_outbox import PeerReviewOutbox
    from core import peer_review as wire

    desk = desk_app.extensions["desk"]
    officer, case_id = photographed(desk_app, face_photo, ["national", OPERATION])
    assert officer.post(f"/cases/{case_id}/search").status_code == 302
    outbox = PeerReviewOutbox(desk.db)
    channel = CentralPeerReviewChannel(desk.settings.device_id, desk.cases.reviews, outbox, desk.cases.store,
                                       desk.libraries, desk.pipeline.embedder_manifest,
                                       central_key=Ed25519PrivateKey.generate().public_key())
    sent = channel.send_request(PeerReviewRequest(case_id, "CR-2025-00123", "officer", [1], "The ears differ."))
    message = wire.PeerReviewRequest.from_bytes(outbox.get(sent["request_id"]).payload)
    by_rank = {c.rank: c for c in message.candidates}
    rows = desk.cases.candidates(case_id)
    assert {r.library_id for r in rows} == {"national", OPERATION}
    for row in rows:
        summary = by_rank[row.rank]
        assert summary.library_id == row.library_id
        assert summary.source == desk.libraries.snapshot(row.library_id).record(row.record_id).source
    versions = {lib["library_id"]: lib["version"] for lib in desk.cases.get(case_id).libraries_searched}
    assert message.library_version == f"national v{versions['national']}, {OPERATION} v{versions[OPERATION]}"
