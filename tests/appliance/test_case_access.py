"""Per-case access on the desk: a case is open only to the people taking part in it.

Every page and image of a case is tried by its officer, by another user of the same role and by
the other roles; a refusal must be the very page a case number that names no case gets (404), and
must be recorded as ``access_refused`` with who and what. Real models, library and device database.
"""

from __future__ import annotations

import pytest

from tests.appliance.desk_helpers import (
    MATCH_REPORT,
    PASSWORD,
    USERS,
    Desk,
    add_users,
    approved_case,
    case_id_from,
    events,
    fast_kdf,
    judgement,
    same_page,
    state_of,
    to_candidates,
)

OTHERS = {"officer_b": "custody_officer", "super2": "superintendent", "auditor2": "auditor", "admin2": "device_admin"}
# The reads of one case: the page, the candidates page, the three kinds of image, the side-by-side comparison,
# the printable summary.
READS = {
    "case page": "/cases/{id}",
    "candidates page": "/cases/{id}/candidates",
    "probe image": "/cases/{id}/probe.jpg",
    "reference image": "/cases/{id}/candidates/1.jpg",
    "comparison": "/cases/{id}/candidates/1/compare",
    "summary": "/cases/{id}/summary",
}
MISSING = "0000FFFF"


@pytest.fixture
def desk_app(app, monkeypatch):
    fast_kdf(monkeypatch)
    add_users(app, {**USERS, **OTHERS})
    return app


def refused_like_missing(desk: Desk, path: str, case_id: str) -> None:
    """``path`` for ``case_id`` answers exactly as it does for a case number nobody used."""
    response = desk.get(path.format(id=case_id))
    missing = desk.get(path.format(id=MISSING))
    assert (response.status_code, missing.status_code) == (404, 404), path
    assert same_page(response.get_data(as_text=True)) == same_page(missing.get_data(as_text=True)), path
    assert "There is no case with that number on this device." in response.get_data(as_text=True)


def refusals(app, actor: str) -> list[tuple[str, str, str]]:
    return [(e["outcome"], e["details"]["case_id"], e["details"]["action"])
            for e in events(app, "access_refused") if e["actor"] == actor]


def at_candidates(app, face_photo) -> tuple[Desk, str]:
    """officer's case, approved by inspector, searched: every read of the case has something to show."""
    desk, case_id = approved_case(app)
    to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    assert state_of(app, case_id) == "candidates_shown"
    return desk, case_id


def test_the_officer_and_the_approver_open_every_read_of_the_case(desk_app, face_photo):
    officer, case_id = at_candidates(desk_app, face_photo)
    inspector = Desk(desk_app, "inspector")
    for name, path in READS.items():
        assert officer.get(path.format(id=case_id)).status_code == 200, name
        assert inspector.get(path.format(id=case_id)).status_code == 200, name
    assert events(desk_app, "access_refused") == []


@pytest.mark.parametrize("other", ["officer_b", "inspector2", "adviser", "auditor", "admin"])
def test_anyone_else_gets_the_missing_case_page_and_is_recorded(desk_app, face_photo, other):
    """Another officer of the same role, another inspector, an adviser, the auditor while it is open, the admin."""
    _, case_id = at_candidates(desk_app, face_photo)
    stranger = Desk(desk_app, other)
    for path in READS.values():
        refused_like_missing(stranger, path, case_id)
    assert case_id not in stranger.get("/").get_data(as_text=True)
    assert sorted(refusals(desk_app, other)) == sorted(
        [("not_a_party", case_id, a) for a in READS] + [("no_such_case", MISSING, a) for a in READS])
    recorded = next(e for e in events(desk_app, "access_refused") if e["details"]["case_id"] == case_id)
    assert recorded["details"]["role"] == USERS.get(other, OTHERS.get(other))
    assert recorded["details"]["custody_ref"] == "CR-2025-00123"
    assert len(events(desk_app, "candidate_viewed")) == 1, "only the officer's own viewing"


def test_face_crops_of_a_group_photo_are_the_officers_only(desk_app, group_photo):
    officer, case_id = approved_case(desk_app)
    assert 'name="face_index"' in officer.upload(case_id, group_photo.read_bytes()).get_data(as_text=True)
    assert officer.get(f"/cases/{case_id}/faces/0.jpg").status_code == 200
    refused_like_missing(Desk(desk_app, "officer_b"), "/cases/{id}/faces/0.jpg", case_id)
    assert ("not_a_party", case_id, "face image") in refusals(desk_app, "officer_b")


def test_steps_by_someone_not_taking_part_change_nothing(desk_app, face_photo):
    officer, case_id = at_candidates(desk_app, face_photo)
    stranger = Desk(desk_app, "officer_b")
    decisions = {f"decision-{i}": "not_viable" for i in range(1, 11)}
    for path, form in [("adjudicate", decisions), ("search", {}), ("withdraw", {}), ("peer-review", {}),
                       ("match-report", {"rank": "1"}), ("face", {"face_index": "0"}), ("probe", {}),
                       ("advice", {"advice": "Not my case to advise on."}), ("approve", {"password": PASSWORD})]:
        response = stranger.post(f"/cases/{case_id}/{path}", form)
        assert response.status_code == 404, path
    assert state_of(desk_app, case_id) == "candidates_shown"
    assert len(refusals(desk_app, "officer_b")) == 9
    assert officer.get(f"/cases/{case_id}/probe.jpg").status_code == 200


def test_an_approver_sees_the_details_of_what_they_may_approve_and_nothing_more(desk_app):
    officer = Desk(desk_app, "officer")
    adult = case_id_from(officer.submit())
    child = case_id_from(officer.submit(age_band="under_13"))
    inspector, superintendent = Desk(desk_app, "inspector"), Desk(desk_app, "super")
    page = inspector.get(f"/cases/{adult}").get_data(as_text=True)
    assert "Approve this search" in page and "Printable case summary" not in page
    refused_like_missing(inspector, "/cases/{id}/summary", adult)
    refused_like_missing(inspector, "/cases/{id}", child)  # needs a Superintendent: not the Inspector's
    assert "Approve this search" in superintendent.get(f"/cases/{child}").get_data(as_text=True)
    assert superintendent.post(f"/cases/{child}/approve", {"password": PASSWORD}).status_code == 302
    # Approved: the approver keeps the case; another Superintendent no longer sees it.
    assert superintendent.get(f"/cases/{child}").status_code == 200
    refused_like_missing(Desk(desk_app, "super2"), "/cases/{id}", child)


def test_the_adviser_who_gave_the_advice_keeps_the_case_and_no_other_adviser_does(desk_app, face_photo):
    officer = Desk(desk_app, "officer")
    case_id = case_id_from(officer.submit(disability="yes"))
    adviser, adviser2 = Desk(desk_app, "adviser"), Desk(desk_app, "adviser2")
    assert "Record technical advice" in adviser2.get(f"/cases/{case_id}").get_data(as_text=True)
    assert adviser.post(f"/cases/{case_id}/advice", {
        "advice": "Facial palsy on the left side: weigh the right side of the face."}).status_code == 302
    refused_like_missing(adviser2, "/cases/{id}", case_id)  # advice given: nothing left for another adviser
    assert Desk(desk_app, "inspector").post(f"/cases/{case_id}/approve", {"password": PASSWORD}).status_code == 302
    to_candidates(officer, case_id, face_photo("obama3.jpg").read_bytes())
    for name, path in READS.items():
        if name != "candidates page":  # the working page of the officer's adjudication
            assert adviser.get(path.format(id=case_id)).status_code == 200, name
        refused_like_missing(adviser2, path, case_id)


def test_a_peer_review_on_the_desk_opens_the_case_to_an_adviser_for_the_review(desk_app, face_photo):
    officer, case_id = at_candidates(desk_app, face_photo)
    html = officer.get(f"/cases/{case_id}/candidates").get_data(as_text=True)
    officer.post(f"/cases/{case_id}/adjudicate", judgement(html, "needs_peer_review"))
    adviser = Desk(desk_app, "adviser")
    assert adviser.get(f"/cases/{case_id}/probe.jpg").status_code == 200
    assert adviser.get(f"/cases/{case_id}/candidates/1.jpg").status_code == 200
    assert adviser.post(f"/cases/{case_id}/peer-review", {
        "review-1": "viable", "notes": "Same ear shape and scar."}).status_code == 302
    assert state_of(desk_app, case_id) == "awaiting_match_report"
    assert adviser.get(f"/cases/{case_id}").status_code == 200, "the reviewer keeps the case they reviewed"
    refused_like_missing(Desk(desk_app, "adviser2"), "/cases/{id}/probe.jpg", case_id)


def test_the_auditor_reads_a_case_only_once_it_has_closed_and_never_its_images(desk_app, face_photo):
    officer, case_id = at_candidates(desk_app, face_photo)
    auditor = Desk(desk_app, "auditor")
    refused_like_missing(auditor, "/cases/{id}", case_id)
    refused_like_missing(auditor, "/cases/{id}/summary", case_id)
    html = officer.get(f"/cases/{case_id}/candidates").get_data(as_text=True)
    officer.post(f"/cases/{case_id}/adjudicate", judgement(html, "viable"))
    assert officer.post(f"/cases/{case_id}/match-report", MATCH_REPORT).status_code == 302
    assert state_of(desk_app, case_id) == "closed_viable"
    assert officer.get(f"/cases/{case_id}/probe.jpg").status_code == 200, "a viable match keeps its probe"
    for auditor_name in ("auditor", "auditor2"):
        reader = Desk(desk_app, auditor_name)
        assert reader.get(f"/cases/{case_id}").status_code == 200
        summary = reader.get(f"/cases/{case_id}/summary").get_data(as_text=True)
        assert "Ear shape and scar agree." in summary
        for name in ("probe image", "reference image", "candidates page", "comparison"):
            refused_like_missing(reader, READS[name], case_id)
        assert reader.post(f"/cases/{case_id}/withdraw").status_code == 403, "read only"
    refused_like_missing(Desk(desk_app, "officer_b"), "/cases/{id}/summary", case_id)
    assert state_of(desk_app, case_id) == "closed_viable"
