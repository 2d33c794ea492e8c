"""Candidates by person, one decision per person, the probe named by its version, the comparison page.

The pure rules first (grouping, what a posted judgement means), then the same rules through the desk's
routes with the real pipeline, library and device database: a form that decides two images of one person
differently is refused and audited; a search or face choice sent from a page showing an older photo runs
nothing; an image asked for under an older photo's name is not served.
"""

from __future__ import annotations

import re

import pytest

from appliance.services.adjudication import (
    ContradictoryJudgement,
    JudgementInvalid,
    decisions_by_rank,
    spread_to_people,
)
from appliance.services.candidate_view import CandidateView, group_by_subject
from tests.appliance.desk_helpers import (
    Desk,
    add_users,
    approved_case,
    events,
    fast_kdf,
    judgement,
    people_in_order,
    state_of,
    to_candidates,
)


def view(rank: int, subject: str, score: float, band: str = "strong") -> CandidateView:
    return CandidateView(rank=rank, score=score, band_name=band, band_label=band.capitalize(), subject_ref=subject,
                         image_date="2020-01-01", time_lapse="5 years", age_at_image="30 years",
                         reference_quality="Good", reference_quality_reasons=[], decision=None, subject_key=subject)


# A search as the library returns it: A twice (ranks 1 and 3), B once, C twice below the threshold.
RESULTS = [view(1, "A", 0.80), view(2, "B", 0.70, "moderate"), view(3, "A", 0.60, "weak"),
           view(4, "C", 0.20, "below threshold"), view(5, "C", 0.10, "below threshold")]


# ---- The rules ----------------------------------------------------------------------------------------------


def test_each_person_once_best_image_first_ranked_by_best_score():
    people = group_by_subject(list(reversed(RESULTS)))  # whatever order they come in
    assert [(p.number, p.subject_ref, p.ranks) for p in people] == [(1, "A", [1, 3]), (2, "B", [2]), (3, "C", [4, 5])]
    assert [p.below_threshold for p in people] == [False, False, True]
    assert [p.best.bars for p in people] == [3, 2, 0]


def test_images_the_library_no_longer_names_stand_alone():
    unknown = [view(1, "Not available", 0.9), view(2, "Not available", 0.8)]
    unknown = [CandidateView(**{**v.__dict__, "subject_key": f"record:{v.rank}"}) for v in unknown]
    assert [p.ranks for p in group_by_subject(unknown)] == [[1], [2]], "strangers are never merged"


def test_one_decision_covers_every_image_of_a_person():
    people = group_by_subject(RESULTS)
    decided, undecided = decisions_by_rank(people, {1: "viable", 2: "not_viable"})
    assert decided == {1: "viable", 3: "viable", 2: "not_viable", 4: "not_viable", 5: "not_viable"}
    assert undecided == 1, "C was below the threshold and left undecided"
    decided, undecided = decisions_by_rank(people, {3: "needs_peer_review", 2: "not_viable", 5: "viable"})
    assert decided[1] == decided[3] == "needs_peer_review" and decided[4] == decided[5] == "viable"
    assert undecided == 0


def test_contradictory_decisions_on_one_person_are_refused():
    people = group_by_subject(RESULTS)
    with pytest.raises(ContradictoryJudgement, match=r"Person 1 \(A\) was marked both “Not viable” and “Viable”"):
        decisions_by_rank(people, {1: "viable", 3: "not_viable", 2: "not_viable"})
    with pytest.raises(ContradictoryJudgement, match="Person 3"):  # below the threshold too, once decided
        decisions_by_rank(people, {1: "viable", 2: "not_viable", 4: "viable", 5: "not_viable"})


def test_people_above_the_threshold_must_be_decided_and_nothing_else_accepted():
    people = group_by_subject(RESULTS)
    with pytest.raises(JudgementInvalid, match=r"Person 2 \(B\) not decided"):
        decisions_by_rank(people, {1: "viable"})
    with pytest.raises(JudgementInvalid, match="not part of this case"):
        decisions_by_rank(people, {1: "viable", 2: "viable", 9: "viable"})
    with pytest.raises(JudgementInvalid, match="Choose viable"):
        decisions_by_rank(people, {1: "viable", 2: "maybe"})


def test_a_peer_review_of_a_persons_best_image_applies_to_the_person():
    people = group_by_subject(RESULTS)
    assert spread_to_people(people, {1: "viable"}) == {1: "viable", 3: "viable"}
    assert spread_to_people(people, {1: "viable", 3: "not_viable"}) == {1: "viable", 3: "not_viable"}, (
        "an outcome that itself differs within a person is applied as it came")


# ---- Through the desk ---------------------------------------------------------------------------------------


@pytest.fixture
def desk_app(app, monkeypatch):
    fast_kdf(monkeypatch)
    add_users(app)
    return app


def decisions_of(app, case_id: str) -> dict[int, str | None]:
    return {c.rank: c.decision for c in app.extensions["desk"].cases.candidates(case_id)}


def test_the_page_shows_each_person_once_and_folds_those_below_the_threshold(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    html = to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    assert people_in_order(html)[0] == (1, "DEMO-OBAMA")
    assert html.count('data-subject="DEMO-OBAMA"') == 1 and 'data-ranks="1 2"' in html
    folded = html.split('<details class="below"', 1)[1]
    assert "Other results below the threshold" in folded and 'data-subject="DEMO-OBAMA"' not in folded
    assert 'name="decision-2"' not in html, "one choice per person, under their best image's rank"
    assert html.count(f'href="/cases/{case_id}/candidates/2/compare"') == 1, "each image can be compared"
    assert 'class="meter"' in html and "Strong similarity" in html


def test_only_people_above_the_threshold_need_a_decision(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    html = to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    # Who is above and below the threshold depends on the face models, so the counts are read from the page.
    above_html, below_html = html.split('<details class="below"', 1)
    above, below = people_in_order(above_html), people_in_order(below_html)
    assert above[0] == (1, "DEMO-OBAMA") and below, "the rule needs people on both sides of the threshold"
    lead_ranks = [int(r) for r in re.search(r'data-subject="DEMO-OBAMA"\s+data-rank="1" data-ranks="([\d ]+)"',
                                            html).group(1).split()]
    assert len(lead_ranks) >= 2, "the lead person has several images, which one decision covers"
    # Only the people above the threshold are decided; the form says nothing of those below it.
    form = {f"decision-{rank}": "viable" if i == 0 else "not_viable" for i, (rank, _) in enumerate(above)}
    assert desk.post(f"/cases/{case_id}/adjudicate", form).status_code == 302
    decided = decisions_of(desk_app, case_id)
    assert {rank for rank, d in decided.items() if d == "viable"} == set(lead_ranks)
    assert set(decided.values()) <= {"viable", "not_viable"}, "an undecided person below the threshold is not viable"
    assert {decided[rank] for rank, _ in below} == {"not_viable"}
    recorded = events(desk_app, "adjudication")[-1]["details"]
    assert recorded["people"] == len(above) + len(below)
    assert recorded["below_threshold_not_judged"] == len(below) and recorded["viable"] == len(lead_ranks)


def test_a_form_deciding_one_person_two_ways_is_refused_and_audited(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    html = to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    # As a stale per-image page (or a crafted request) would send it: rank 2 is DEMO-OBAMA's second image.
    response = desk.post(f"/cases/{case_id}/adjudicate", judgement(html, "viable") | {"decision-2": "not_viable"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Person 1 (DEMO-OBAMA) was marked both" in page and "One decision covers every image" in page
    assert state_of(desk_app, case_id) == "candidates_shown" and set(decisions_of(desk_app, case_id).values()) == {
        None}
    assert [e["outcome"] for e in events(desk_app, "adjudication")] == ["refused_contradictory"]
    # The same rank sent twice with two values is no decision either.
    twice = desk.client.post(f"/cases/{case_id}/adjudicate", data={
        "csrf_token": desk.token, "decision-1": ["viable", "not_viable"]})
    assert twice.status_code == 422 and state_of(desk_app, case_id) == "candidates_shown"
    assert desk.post(f"/cases/{case_id}/adjudicate", judgement(html, "viable")).status_code == 302
    assert state_of(desk_app, case_id) == "awaiting_match_report"


def test_peer_review_is_asked_once_per_person_and_its_outcome_covers_them(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    html = to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    desk.post(f"/cases/{case_id}/adjudicate", judgement(html, "needs_peer_review"))
    assert desk_app.extensions["desk"].cases.peer_review(case_id).ranks == [1]
    Desk(desk_app, "adviser").post(f"/cases/{case_id}/peer-review", {"review-1": "viable",
                                                                      "notes": "Same ears and hairline."})
    decided = decisions_of(desk_app, case_id)
    assert decided[1] == decided[2] == "viable" and state_of(desk_app, case_id) == "awaiting_match_report"


def probe_version(html: str) -> str:
    return re.search(r'name="probe_version" value="([0-9a-f]+)"', html).group(1)


def test_a_search_from_a_page_showing_an_older_photo_runs_nothing(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    first = desk.upload(case_id, face_photo("obama3.jpg").read_bytes()).get_data(as_text=True)
    old = probe_version(first)
    assert f"/cases/{case_id}/probe.jpg?v={old}" in first
    second = desk.upload(case_id, face_photo("biden.jpg").read_bytes()).get_data(as_text=True)
    new = probe_version(second)
    assert new != old and f"/cases/{case_id}/probe.jpg?v={new}" in second
    service = desk_app.extensions["desk"].cases
    assert desk.get(f"/cases/{case_id}/probe.jpg?v={old}").status_code == 404, "the older face is not served"
    shown = desk.get(f"/cases/{case_id}/probe.jpg?v={new}")
    assert shown.status_code == 200 and shown.data == service.probe(case_id).thumbnail
    refused = desk.post(f"/cases/{case_id}/search", {"probe_version": old})
    assert refused.status_code == 409 and "nothing was searched" in refused.get_data(as_text=True)
    assert state_of(desk_app, case_id) == "probe_captured" and service.candidates(case_id) == []
    assert [e["outcome"] for e in events(desk_app, "search_refused")] == ["probe_replaced"]
    assert desk.post(f"/cases/{case_id}/search", {"probe_version": new}).status_code == 302
    assert people_in_order(desk.get(f"/cases/{case_id}/candidates").get_data(as_text=True))[0][1] == "DEMO-BIDEN"


def test_another_face_of_a_group_photo_can_be_chosen_and_only_from_the_photo_shown(desk_app, group_photo):
    desk, case_id = approved_case(desk_app)
    choice = desk.upload(case_id, group_photo.read_bytes()).get_data(as_text=True)
    version = probe_version(choice)
    assert f"/cases/{case_id}/faces/0.jpg?v={version}" in choice
    first = desk.post(f"/cases/{case_id}/face", {"face_index": "0", "probe_version": version}, htmx=True)
    first_version = probe_version(first.get_data(as_text=True))
    assert "Choose a different face in this photo" in first.get_data(as_text=True)
    again = desk.post(f"/cases/{case_id}/face/again", htmx=True).get_data(as_text=True)
    assert 'name="face_index"' in again and state_of(desk_app, case_id) == "approved"
    assert probe_version(again) != first_version, "the chosen face is no longer what would be searched"
    stale = desk.post(f"/cases/{case_id}/face", {"face_index": "1", "probe_version": "0" * 20}, htmx=True)
    assert stale.status_code == 409 and "photo was replaced" in stale.get_data(as_text=True)
    second = desk.post(f"/cases/{case_id}/face", {"face_index": "1", "probe_version": probe_version(again)},
                       htmx=True).get_data(as_text=True)
    assert "2 of" in second and probe_version(second) not in (first_version, version)


def test_the_comparison_page_shows_both_images_and_their_facts(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    response = desk.get(f"/cases/{case_id}/candidates/2/compare")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    version = desk_app.extensions["desk"].cases.probe(case_id).version
    assert f'src="/cases/{case_id}/probe.jpg?v={version}"' in page
    assert f'src="/cases/{case_id}/candidates/2.jpg"' in page
    assert re.search(r'width="(\d+)"', page.split('class="compare-pair"')[1]).group(1) == "320"
    for fact in ("Photo taken", "Image dated", "Quality", "Age at this image", "Apparent age now",
                 "Time lapse to the probe"):
        assert fact in page, fact
    assert 'id="zoom-in"' in page and 'aria-keyshortcuts="+"' in page and "compare.js" in page
    assert f"/cases/{case_id}/candidates/1/compare" in page, "the person's other image is one link away"
    assert [(e["outcome"], e["details"]["candidate_rank"]) for e in events(desk_app, "candidate_viewed")
            if e["outcome"] == "compared"] == [("compared", 2)]
    assert desk.get(f"/cases/{case_id}/candidates/99/compare").status_code == 404


def test_a_candidate_list_from_before_the_subject_was_kept_still_opens(tmp_path):
    """A desk database made before candidates recorded their subject gains the column, its rows read as unknown."""
    from appliance.storage.cases import CandidateRow, CaseStore
    from appliance.storage.device_db import DeviceDatabase

    db = DeviceDatabase(tmp_path)
    with db.lock:
        db.conn.execute("CREATE TABLE case_candidates (case_id TEXT NOT NULL, rank INTEGER NOT NULL, "
                        "record_id INTEGER NOT NULL, score REAL NOT NULL, decision TEXT, PRIMARY KEY (case_id, rank))")
        db.conn.execute("INSERT INTO case_candidates VALUES ('OLD', 1, 7, 0.8, NULL)")
        db.conn.commit()
    store = CaseStore(db)
    assert store.candidates("OLD") == [CandidateRow(1, 7, 0.8, None, None)]
    store.put_candidates("NEW", [CandidateRow(1, 3, 0.9, None, "DEMO-A")])
    assert store.candidates("NEW")[0].subject_ref == "DEMO-A"
    db.close()
