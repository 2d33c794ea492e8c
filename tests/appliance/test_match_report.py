"""The Match Report: pre-filled from what the desk measured, a feature-by-feature comparison, plain-English
errors; the comparison kept with the report, in the summary and in the peer review request sent to central."""

from __future__ import annotations

import html as html_lib
import re
import time
from datetime import date

import pytest

from appliance.services.candidate_view import describe
from appliance.services.match_report import CONFIRM_ERROR, ReportFacts, prefill
from appliance.services.morphology import AT_LEAST_ONE, read_morphology
from appliance.storage.peer_review_outbox import PeerReviewOutbox
from appliance.web import create_app
from core.morphology import COMPONENTS, MAX_NOTE
from core.peer_review import PeerReviewRequest
from library.records import ReferenceRecord
from tests.appliance.conftest import appliance_settings
from tests.appliance.desk_helpers import (
    FEATURES,
    MATCH_REPORT,
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


@pytest.fixture
def desk_app(app, monkeypatch):
    fast_kdf(monkeypatch)
    add_users(app)
    return app


PROBE_QUALITY = {"verdict": "warn", "reasons": ["Face rather dark: more light on the face would help."],
                 "measures": {"inter_eye_px": 41.6, "sharpness": 1.23, "brightness": 52.4, "contrast": 31.0,
                              "bright_fraction": 0.0, "dark_fraction": 0.07, "yaw_deg": -6.2, "roll_deg": 2.9}}


def facts(**over) -> ReportFacts:  # type: ignore[no-untyped-def]
    record = ReferenceRecord(subject_ref="DEMO-X", source="", image_date=date(2019, 3, 3),
                             date_of_birth=date(1985, 6, 1))
    view = describe(1, 0.71, record, date(2026, 12, 4), None, "viable")
    base = {"probe_quality": PROBE_QUALITY, "probe_taken": "4 December 2026", "apparent_age": "18 or over",
            "faces_found": 1, "disability": False, "predates_reassignment": False, "view": view,
            "reference_quality": {"verdict": "pass", "reasons": [], "measures": {"brightness": 140.0,
                                                                                "contrast": 44.0}}}
    return ReportFacts(**{**base, **over})


# ---- Pre-filled answers (pure) --------------------------------------------------------------------


def test_prefill_says_what_the_desk_measured_in_words():
    answers = prefill(facts())
    assert answers["probe_quality"] == (
        "Detainee's photo, measured: Usable with care. Face rather dark: more light on the face would help. "
        "(42 pixels between the eyes; sharpness 1.23; head turned 6° and tilted 3°.)")
    assert answers["reference_quality"].startswith("Reference image, measured: Good (passed every check).")
    assert answers["time_lapse"] == ("Reference image dated 2019-03-03; detainee's photo taken 4 December 2026. "
                                     "Time lapse: 7 years 9 months.")
    assert answers["lighting"] == (
        "Detainee's photo: face brightness 52 of 255 (dark), contrast 31, 0% of the face over-exposed, "
        "7% in deep shadow. Reference image: face brightness 140 of 255 (within the usual range), contrast 44.")
    assert answers["age_judgement"] == ("Apparent age at the desk: 18 or over. Age at the reference image: "
                                        "33 years.")
    assert "rationale" not in answers, "why the candidate is viable is the officer's own judgement"


def test_prefill_names_the_factors_the_submission_recorded():
    other = prefill(facts(disability=True, predates_reassignment=True, faces_found=2))["other_factors"]
    assert "disability may affect" in other and "pre-date gender reassignment" in other and "2 faces" in other
    assert prefill(facts())["other_factors"].startswith("None recorded by the system.")


def test_prefill_is_honest_when_nothing_was_measured():
    answers = prefill(facts(probe_quality=None, reference_quality=None))
    assert answers["probe_quality"] == "Detainee's photo: not graded. Judge it from the image."
    assert answers["reference_quality"] == "Reference image, recorded in the library: Not assessed."
    assert "no light measures" in answers["lighting"]


# ---- The feature comparison form (pure) ------------------------------------------------------------


def test_every_component_needs_a_finding_and_the_message_names_it():
    morphology, errors = read_morphology({k: v for k, v in FEATURES.items() if k != "feature-eyes"},
                                         need_one_compared=True)
    assert morphology is None
    assert errors == {"feature-eyes": "Choose similar, dissimilar, not visible or not assessed for the eyes."}


def test_dissimilar_needs_a_note_and_notes_are_bounded():
    form = FEATURES | {"feature-nose": "dissimilar", "feature-chin-note": "c" * (MAX_NOTE + 1)}
    _, errors = read_morphology(form, need_one_compared=True)
    assert errors == {"feature-nose-note": "Say what differs in the nose.",
                      "feature-chin-note": f"The note on the chin and jaw line must be {MAX_NOTE} characters or fewer."}


def test_a_match_report_rests_on_at_least_one_feature_compared():
    nothing = {f"feature-{k}": "not_assessed" for k in COMPONENTS} | {"feature-ears": "not_visible"}
    assert read_morphology(nothing, need_one_compared=True) == (None, {"feature-head_outline": AT_LEAST_ONE})
    assert read_morphology(nothing, need_one_compared=False)[0] is not None, "a draft comparison may be partial"


def test_unknown_findings_are_not_accepted():
    _, errors = read_morphology(FEATURES | {"feature-mouth": "identical"}, need_one_compared=False)
    assert set(errors) == {"feature-mouth"}


# ---- Through the desk ------------------------------------------------------------------------------


def viable(desk_app, face_photo) -> tuple[Desk, str]:  # type: ignore[no-untyped-def]
    desk, case_id = approved_case(desk_app)
    html = to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    decisions = judgement(html, "viable")
    assert desk.post(f"/cases/{case_id}/adjudicate", decisions).status_code == 302
    assert state_of(desk_app, case_id) == "awaiting_match_report"
    return desk, case_id


def textarea(page: str, name: str) -> str:
    match = re.search(rf'<textarea id="{name}" name="{name}"[^>]*>(.*?)</textarea>', page, re.S)
    assert match, name
    return html_lib.unescape(match.group(1))


def test_the_report_shows_both_images_and_starts_from_the_measured_facts(desk_app, face_photo):
    desk, case_id = viable(desk_app, face_photo)
    page = desk.get(f"/cases/{case_id}").get_data(as_text=True)
    assert f'src="/cases/{case_id}/probe.jpg"' in page and f'src="/cases/{case_id}/candidates/1.jpg"' in page
    probe = desk_app.extensions["desk"].cases.probe(case_id)
    words = {"pass": "Good (passed every check)", "warn": "Usable with care", "fail": "Poor"}
    verdict = words[probe.quality["verdict"]]
    assert textarea(page, "probe_quality").startswith(f"Detainee's photo, measured: {verdict}.")
    brightness = probe.quality["measures"]["brightness"]
    assert f"Detainee's photo: face brightness {brightness:.0f} of 255" in textarea(page, "lighting")
    assert "Time lapse:" in textarea(page, "time_lapse")
    assert textarea(page, "age_judgement").startswith("Apparent age at the desk: 18 or over.")
    assert textarea(page, "rationale") == ""
    assert page.count('type="radio"') == 4 * len(COMPONENTS)


def test_errors_are_in_plain_english_and_nothing_is_lost(desk_app, face_photo):
    desk, case_id = viable(desk_app, face_photo)
    form = MATCH_REPORT | {"lighting": " ", "rationale": "", "feature-nose": "dissimilar", "checked_prefill": ""}
    del form["feature-eyes"]
    response = desk.post(f"/cases/{case_id}/match-report", form)
    page = html_lib.unescape(response.get_data(as_text=True))
    assert response.status_code == 422 and state_of(desk_app, case_id) == "awaiting_match_report"
    for message in ("Describe the lighting in the two images.", "Explain why this candidate is a viable match.",
                    "Choose similar, dissimilar, not visible or not assessed for the eyes.",
                    "Say what differs in the nose.", CONFIRM_ERROR):
        assert f">{message}</a>" in page, message  # in the error summary, linked to its field
    assert 'href="#feature-eyes"' in page and 'id="feature-eyes"' in page
    assert textarea(page, "probe_quality") == MATCH_REPORT["probe_quality"], "the officer's answers are kept"
    assert 'id="feature-nose-dissimilar" name="feature-nose" value="dissimilar" checked' in page


def test_the_comparison_is_kept_with_the_report_and_shown_in_the_summary(desk_app, face_photo):
    desk, case_id = viable(desk_app, face_photo)
    form = MATCH_REPORT | {"feature-facial_marks": "dissimilar",
                           "feature-facial_marks-note": "Scar above the left eyebrow in the probe only."}
    assert desk.post(f"/cases/{case_id}/match-report", form).status_code == 302
    report = desk_app.extensions["desk"].cases.match_report(case_id)
    assert report["morphology"]["facial_marks"] == {"finding": "dissimilar",
                                                    "note": "Scar above the left eyebrow in the probe only."}
    assert report["morphology"]["ears"]["finding"] == "not_visible"
    [recorded] = events(desk_app, "match_report")
    assert recorded["details"]["dissimilar"] == 1 and recorded["details"]["not_visible"] == 1
    assert "Scar above" not in str(recorded), "the audit event counts findings; the notes stay in the report"
    summary = desk.get(f"/cases/{case_id}/summary").get_data(as_text=True)
    assert "Feature-by-feature comparison (FISWG feature list, ENFSI method)" in summary
    assert re.search(r"<th scope=\"row\">Facial marks \(scars, tattoos, moles, piercings\)</th><td>Dissimilar</td>"
                     r"<td>Scar above the left eyebrow in the probe only.</td>", summary)
    assert 'id="lead-subject">DEMO-OBAMA<' in summary


def test_a_comparison_recorded_before_judging_starts_the_report(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    html = to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    page = desk.get(f"/cases/{case_id}/candidates/1/features").get_data(as_text=True)
    assert f'src="/cases/{case_id}/candidates/1.jpg"' in page and "Compare features: candidate 1" in page
    bad = desk.post(f"/cases/{case_id}/candidates/1/features", FEATURES | {"feature-nose": "dissimilar"})
    assert bad.status_code == 422 and "Say what differs in the nose." in bad.get_data(as_text=True)
    good = FEATURES | {"feature-nose": "dissimilar", "feature-nose-note": "Wider nostrils in the probe."}
    assert desk.post(f"/cases/{case_id}/candidates/1/features", good).status_code == 302
    assert desk_app.extensions["desk"].cases.store.comparisons(case_id)[1]["nose"]["finding"] == "dissimilar"
    decisions = judgement(html, "viable")
    desk.post(f"/cases/{case_id}/adjudicate", decisions)
    report_page = desk.get(f"/cases/{case_id}").get_data(as_text=True)
    assert 'id="feature-nose-dissimilar" name="feature-nose" value="dissimilar" checked' in report_page
    assert 'value="Wider nostrils in the probe."' in report_page
    read_only = desk.get(f"/cases/{case_id}/candidates/1/features").get_data(as_text=True)
    assert "<td>Dissimilar</td><td>Wider nostrils in the probe.</td>" in read_only and 'type="radio"' not in read_only
    other = Desk(desk_app, "officer2")
    assert other.post(f"/cases/{case_id}/candidates/1/features", good).status_code == 404


def test_the_peer_review_request_carries_the_comparisons(tmp_path, demo_library, pipeline, face_photo, monkeypatch):
    settings = appliance_settings(tmp_path, demo_library, peer_review={"channel": "central"})
    app = create_app(settings, pipeline=pipeline, start_sync=False)
    app.config["TESTING"] = True
    fast_kdf(monkeypatch)
    add_users(app)
    desk, case_id = approved_case(app)
    html = to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    form = FEATURES | {"feature-ears": "dissimilar", "feature-ears-note": "Lobes attached in the reference."}
    assert desk.post(f"/cases/{case_id}/candidates/2/features", form).status_code == 302
    decisions = judgement(html, "not_viable") | {f"decision-{people_in_order(html)[1][0]}": "needs_peer_review"}
    assert desk.post(f"/cases/{case_id}/adjudicate", decisions).status_code == 302
    [queued] = PeerReviewOutbox(app.extensions["desk"].db).due(time.time(), 0, everything=True)
    sent = PeerReviewRequest.from_bytes(queued.payload)
    assert [m.rank for m in sent.morphology] == [2]
    ears = sent.morphology[0].findings.findings["ears"]
    assert (ears.finding, ears.note) == ("dissimilar", "Lobes attached in the reference.")
    app.extensions["desk"].close()
