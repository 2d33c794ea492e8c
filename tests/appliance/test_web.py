"""The desk workflow through Flask's test client with the real models and library.

Each safeguard has a test showing the refusal when it is not met; removing the
rule in ``appliance.services.policy`` or ``cases`` makes one of these fail.
"""

from __future__ import annotations

import json
import logging
import re
from io import BytesIO

import cv2
import numpy as np
import pytest

from tests.appliance.desk_helpers import (
    CONFIRM,
    MATCH_REPORT,
    PASSWORD,
    Desk,
    add_users,
    approved_case,
    case_id_from,
    csrf_from,
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


# ---- Sign-in, sessions, headers -------------------------------------------------------------------


def test_every_page_needs_sign_in_and_the_login_page_is_labelled(desk_app):
    client = desk_app.test_client()
    assert client.get("/").status_code == 302
    assert client.get("/cases/new").headers["Location"].startswith("/login")
    page = client.get("/login")
    html = page.get_data(as_text=True)
    assert '<label for="username">' in html and '<label for="password">' in html
    headers = page.headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    htmx = client.get("/", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/login")


UNKNOWN_TYPED = "Hunter2-typed-in-the-wrong-box"


def _from(app, address: str) -> Desk:
    desk = Desk(app)
    desk.client.environ_base["REMOTE_ADDR"] = address
    return desk


def _reply(response, typed: str) -> tuple[int, str]:
    """Status and page without what differs by design (the CSRF token, the name typed back)."""
    page = re.sub(r'name="csrf_token" value="[^"]+"|"X-CSRFToken": "[^"]+"', "", response.get_data(as_text=True))
    return response.status_code, page.replace(typed, "NAME")


@pytest.fixture
def clock(desk_app):
    """The desk's sign-in on a clock the test moves."""
    accounts = desk_app.extensions["desk"].accounts
    now = [accounts._clock()]
    real, accounts._clock = accounts._clock, lambda: now[0]
    yield now
    accounts._clock = real


def test_unknown_wrong_and_throttled_get_one_reply_and_only_known_names_are_audited(desk_app, clock, caplog):
    caplog.set_level(logging.DEBUG)
    stranger = _from(desk_app, "10.0.0.66")
    unknown = _reply(stranger.login(UNKNOWN_TYPED, PASSWORD), UNKNOWN_TYPED)
    wrong = _reply(stranger.login("inspector", "not the password"), "inspector")
    assert wrong[0] == 401 and 'role="alert"' in wrong[1]
    for _ in range(6):
        stranger.login("inspector", "not the password")
    throttled = _reply(stranger.login("inspector", PASSWORD), "inspector")  # even the right password waits
    assert unknown == wrong == throttled
    assert "too many attempts" in unknown[1] and "This account is locked" not in unknown[1]
    refusals = events(desk_app, "login")
    assert [e["outcome"] for e in refusals] == ["refused"] * 9
    assert refusals[0]["actor"] == "(unknown account)" and {e["actor"] for e in refusals[1:]} == {"inspector"}
    assert [e["details"]["reason"] for e in refusals].count("throttled") >= 2
    assert all(e["details"]["address"] == "10.0.0.66" for e in refusals)
    payloads = [p.payload for p in desk_app.extensions["desk"].outbox.pending(limit=1000)]
    assert not any(UNKNOWN_TYPED in str(p) for p in payloads)
    assert UNKNOWN_TYPED not in caplog.text


def test_a_strangers_failures_neither_end_sessions_nor_keep_the_owner_out(desk_app, clock):
    owner = _from(desk_app, "10.0.0.7")
    assert owner.login("inspector").status_code == 302
    stranger = _from(desk_app, "10.0.0.66")
    for _ in range(30):
        assert stranger.login("inspector", "not the password").status_code == 401
        clock[0] += 1
    assert owner.get("/").status_code == 200  # the stranger ended no session
    clock[0] += 61  # the account's wait is capped at a minute
    assert _from(desk_app, "10.0.0.7").login("inspector").status_code == 302


@pytest.mark.parametrize("target", ["/%09/evil.example", "/%0a/evil.example", "//evil.example",
                                    "/%5Cevil.example", "https://evil.example/"])
def test_sign_in_never_sends_anyone_off_site_or_fails_on_a_crafted_next(desk_app, target):
    # /%09/evil.example used to become "Location: //evil.example"; %0a gave a 500.
    desk = Desk(desk_app)
    desk.token = csrf_from(desk.client.get("/login").get_data(as_text=True))
    response = desk.client.post(f"/login?next={target}", data={"username": "officer", "password": PASSWORD,
                                                               "csrf_token": desk.token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_session_cookie_is_opaque_rotated_at_login_and_ended_at_logout(desk_app):
    desk = Desk(desk_app)
    desk.get("/login")  # before sign-in only the form's CSRF token is kept, in a signed cookie
    assert desk.client.get_cookie("rfr_session") is None and desk.client.get_cookie("rfr_signin") is not None
    desk.login("officer")
    after = desk.client.get_cookie("rfr_session").value
    assert "officer" not in after and desk.client.get_cookie("rfr_signin") is None
    cookie = desk.client.get_cookie("rfr_session")
    assert cookie.http_only and cookie.same_site == "Strict"
    assert desk.get("/").status_code == 200
    assert desk.post("/logout").status_code == 302
    thief = desk_app.test_client()
    thief.set_cookie("rfr_session", after)
    assert thief.get("/").status_code == 302, "the old session id must be dead after sign-out"
    assert [e["actor"] for e in events(desk_app, "logout")] == ["officer"]


def test_anonymous_visits_write_no_session_rows(desk_app):
    # Every anonymous GET /login used to write (and fsync) a session row, purged only at start.
    db = desk_app.extensions["desk"].db

    def rows() -> int:
        with db.lock:
            return db.conn.execute("SELECT count(*) FROM sessions").fetchone()[0]

    before = rows()
    for _ in range(50):
        assert desk_app.test_client().get("/login").status_code == 200
    assert rows() == before
    forged = desk_app.test_client()
    forged.set_cookie("rfr_signin", "eyJjc3JmX3Rva2VuIjoieCJ9.forged.signature")
    assert forged.get("/login").status_code == 200 and rows() == before
    desk = Desk(desk_app)
    assert desk.login("officer").status_code == 302 and rows() == before + 1


def test_idle_session_ends(desk_app):
    desk = Desk(desk_app, "officer")
    sessions = desk_app.extensions["desk"].sessions
    real = sessions._clock
    sessions._clock = lambda: real() + 16 * 60
    try:
        response = desk.get("/")
        assert response.status_code == 302
        assert "session ended" in desk.client.get(response.headers["Location"]).get_data(as_text=True)
    finally:
        sessions._clock = real


def test_posts_without_the_csrf_token_are_refused(desk_app):
    desk = Desk(desk_app, "officer")
    response = desk.client.post("/cases", data={"custody_ref": "X"}, headers={"HX-Request": "true"})
    assert response.status_code == 400 and "form has expired" in response.get_data(as_text=True)


def test_htmx_is_served_locally(desk_app):
    response = desk_app.test_client().get("/vendor/htmx.min.js")
    assert response.status_code == 200 and b"htmx" in response.data[:2000]
    assert desk_app.test_client().get("/vendor/axe.min.js").status_code == 404, "axe is for browser tests only"


# ---- The whole flow -------------------------------------------------------------------------------


def test_submission_approval_search_candidates_and_no_match(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    html = to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    people = people_in_order(html)
    assert people[0] == (1, "DEMO-OBAMA") and 'data-ranks="1 2"' in html, "one person, both images"
    assert len({s for _, s in people}) == len(people), "each person once"
    images = [int(r) for ranks in re.findall(r'data-ranks="([\d ]+)"', html) for r in ranks.split()]
    assert sorted(images) == list(range(1, min(10, desk_app.extensions["desk"].library.current.count) + 1))
    assert "A high rank or a close likeness does not make a candidate viable" in html
    assert "not evidence" in html and "Time lapse" in html and "similarity" in html
    assert "Age at that image" in html and "Its quality" in html
    assert len(events(desk_app, "candidate_viewed")) == 1
    src = re.search(r'<img src="(/cases/\w+/candidates/1\.jpg)"', html).group(1)
    image = desk.get(src)
    assert image.status_code == 200 and image.headers["Cache-Control"] == "no-store"
    assert cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR) is not None
    assert desk.post(f"/cases/{case_id}/adjudicate", judgement(html, "not_viable") | CONFIRM).status_code == 302
    assert state_of(desk_app, case_id) == "closed_no_match"
    summary = desk.get(f"/cases/{case_id}/summary").get_data(as_text=True)
    assert "Intelligence lead only" in summary and "not an identification" in summary


def test_every_person_above_the_threshold_must_be_judged(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    response = desk.post(f"/cases/{case_id}/adjudicate", {"decision-3": "not_viable"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and 'role="alert"' in page
    assert "Person 1 (DEMO-OBAMA) not decided" in page
    assert state_of(desk_app, case_id) == "candidates_shown"


def test_viable_match_needs_a_complete_match_report_and_is_retained(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    html = to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    desk.post(f"/cases/{case_id}/adjudicate", judgement(html, "viable"))
    assert state_of(desk_app, case_id) == "awaiting_match_report"
    incomplete = desk.post(f"/cases/{case_id}/match-report", {"rank": "1", "probe_quality": "Good, frontal."})
    assert incomplete.status_code == 422
    assert "Describe the lighting in the two images." in incomplete.get_data(as_text=True)
    assert state_of(desk_app, case_id) == "awaiting_match_report"
    assert desk.post(f"/cases/{case_id}/match-report", MATCH_REPORT).status_code == 302
    assert state_of(desk_app, case_id) == "closed_viable"
    service = desk_app.extensions["desk"].cases
    probe = service.probe(case_id)
    assert probe.image and probe.thumbnail and probe.template is None, "template destroyed, image retained"
    page = desk.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "probe image and face thumbnail are kept with the Match Report" in page
    summary = desk.get(f"/cases/{case_id}/summary").get_data(as_text=True)
    assert "Ear shape and scar agree." in summary and "Intelligence lead only" in summary
    assert [e["outcome"] for e in events(desk_app, "deletion")] == ["partial_viable_match_retained"]


def test_doubts_send_a_no_match_to_peer_review_before_it_can_close(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    html = to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    second = people_in_order(html)[1][0]  # a person below the threshold: a decision there is still honoured
    decisions = judgement(html, "not_viable") | {f"decision-{second}": "needs_peer_review"}
    desk.post(f"/cases/{case_id}/adjudicate", decisions)
    assert state_of(desk_app, case_id) == "awaiting_peer_review"
    assert desk.get(f"/cases/{case_id}/probe.jpg").status_code == 200, "kept until the review is back"
    # Refusals: an Inspector is not a peer reviewer; the review must decide the candidate in question.
    assert Desk(desk_app, "inspector").post(f"/cases/{case_id}/peer-review", {
        f"review-{second}": "not_viable", "notes": "Looked at it closely."}).status_code == 403
    adviser = Desk(desk_app, "adviser")
    assert "Record the peer review" in adviser.get(f"/cases/{case_id}").get_data(as_text=True)
    assert adviser.post(f"/cases/{case_id}/peer-review", {"notes": "Looked at it closely."}).status_code == 409
    assert state_of(desk_app, case_id) == "awaiting_peer_review"
    assert adviser.post(f"/cases/{case_id}/peer-review", {
        f"review-{second}": "not_viable", "notes": "Different ear shape and nose.", **CONFIRM}).status_code == 302
    assert state_of(desk_app, case_id) == "closed_no_match"
    assert [e["outcome"] for e in events(desk_app, "peer_review")] == ["requested", "refused", "completed"]
    assert desk.get(f"/cases/{case_id}/probe.jpg").status_code == 404


def test_peer_review_finding_a_viable_candidate_needs_a_match_report(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    html = to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    desk.post(f"/cases/{case_id}/adjudicate", judgement(html, "needs_peer_review"))
    Desk(desk_app, "adviser").post(f"/cases/{case_id}/peer-review",
                                   {"review-1": "viable", "notes": "Same person in my view."})
    assert state_of(desk_app, case_id) == "awaiting_match_report"


# ---- Each safeguard's refusal ----------------------------------------------------------------------


def test_no_search_or_photo_before_approval(desk_app, face_photo):
    desk = Desk(desk_app, "officer")
    case_id = case_id_from(desk.submit())
    assert "Waiting for approval" in desk.get(f"/cases/{case_id}").get_data(as_text=True)
    assert desk.upload(case_id, face_photo("obama3.jpg").read_bytes()).status_code == 409
    refused = desk.post(f"/cases/{case_id}/search")
    assert refused.status_code == 403 and "has not been approved" in refused.get_data(as_text=True)
    assert desk_app.extensions["desk"].cases.probe(case_id) is None
    assert events(desk_app, "search") == []
    assert events(desk_app, "search_refused")[-1]["outcome"] == "policy"


def test_nobody_approves_their_own_request(desk_app):
    inspector = Desk(desk_app, "inspector")
    case_id = case_id_from(inspector.submit())
    response = inspector.post(f"/cases/{case_id}/approve", {"password": PASSWORD})
    assert response.status_code == 403 and "your own request" in response.get_data(as_text=True)
    assert state_of(desk_app, case_id) == "awaiting_approval"
    assert events(desk_app, "approval")[-1]["outcome"] == "refused"


def test_approver_must_reenter_their_own_password(desk_app):
    case_id = case_id_from(Desk(desk_app, "officer").submit())
    response = Desk(desk_app, "inspector").post(f"/cases/{case_id}/approve", {"password": "guess"})
    assert response.status_code == 403 and "Approval not recorded" in response.get_data(as_text=True)
    assert state_of(desk_app, case_id) == "awaiting_approval"


@pytest.mark.parametrize("role_user", ["officer2", "adviser", "auditor"])
def test_roles_below_inspector_cannot_approve(desk_app, role_user):
    case_id = case_id_from(Desk(desk_app, "officer").submit())
    response = Desk(desk_app, role_user).post(f"/cases/{case_id}/approve", {"password": PASSWORD})
    assert response.status_code == 404, "not a case they take part in: it is not shown to exist"
    assert state_of(desk_app, case_id) == "awaiting_approval"


def test_under_13_needs_a_superintendent(desk_app):
    officer = Desk(desk_app, "officer")
    case_id = case_id_from(officer.submit(age_band="under_13"))
    page = officer.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "Superintendent or above" in page
    inspector = Desk(desk_app, "inspector")
    assert case_id not in inspector.get("/").get_data(as_text=True), "shown only to who may approve it"
    response = inspector.post(f"/cases/{case_id}/approve", {"password": PASSWORD})
    assert response.status_code == 404
    assert state_of(desk_app, case_id) == "awaiting_approval"
    assert case_id in Desk(desk_app, "super").get("/").get_data(as_text=True)
    assert Desk(desk_app, "super").post(f"/cases/{case_id}/approve", {"password": PASSWORD}).status_code == 302
    assert state_of(desk_app, case_id) == "approved"


def test_disability_needs_technical_advice_before_approval(desk_app):
    case_id = case_id_from(Desk(desk_app, "officer").submit(disability="yes"))
    inspector = Desk(desk_app, "inspector")
    response = inspector.post(f"/cases/{case_id}/approve", {"password": PASSWORD})
    assert response.status_code == 403 and "Technical advice must be recorded" in response.get_data(as_text=True)
    assert inspector.post(f"/cases/{case_id}/advice", {"advice": "I am not an adviser."}).status_code == 403
    adviser = Desk(desk_app, "adviser")
    assert adviser.post(f"/cases/{case_id}/advice", {
        "advice": "Facial palsy on the left side: weigh the right side of the face."}).status_code == 302
    assert inspector.post(f"/cases/{case_id}/approve", {"password": PASSWORD}).status_code == 302
    assert state_of(desk_app, case_id) == "approved"


def test_gender_reassignment_needs_technical_advice(desk_app):
    case_id = case_id_from(Desk(desk_app, "officer").submit(reassignment="yes"))
    response = Desk(desk_app, "super").post(f"/cases/{case_id}/approve", {"password": PASSWORD})
    assert response.status_code == 403 and "Technical advice" in response.get_data(as_text=True)


def test_auditor_is_read_only(desk_app):
    officer = Desk(desk_app, "officer")
    case_id = case_id_from(officer.submit(age_band="13_15"))
    auditor = Desk(desk_app, "auditor")
    assert auditor.get("/cases/new").status_code == 403
    assert auditor.submit().status_code == 403
    assert case_id not in auditor.get("/").get_data(as_text=True), "open cases are not the auditor's"
    assert auditor.get(f"/cases/{case_id}").status_code == 404
    assert officer.post(f"/cases/{case_id}/withdraw", CONFIRM).status_code == 302
    home = auditor.get("/").get_data(as_text=True)
    assert "Closed cases on this device (read only)" in home and case_id in home
    assert auditor.get(f"/cases/{case_id}").status_code == 200
    assert auditor.post(f"/cases/{case_id}/search").status_code == 403
    assert auditor.get(f"/cases/{case_id}/probe.jpg").status_code == 404


def test_device_admin_manages_accounts_but_cannot_see_cases(desk_app):
    case_id = case_id_from(Desk(desk_app, "officer").submit())
    admin = Desk(desk_app, "admin")
    assert "Accounts on this device" in admin.get("/").get_data(as_text=True)
    assert admin.get(f"/cases/{case_id}").status_code == 404
    assert admin.submit().status_code == 403


def test_another_officer_cannot_run_someone_elses_search(desk_app, face_photo):
    _, case_id = approved_case(desk_app)
    other = Desk(desk_app, "officer2")
    assert other.upload(case_id, face_photo("obama3.jpg").read_bytes()).status_code == 404
    assert other.post(f"/cases/{case_id}/search").status_code == 404
    assert desk_app.extensions["desk"].cases.probe(case_id) is None


def test_submission_errors_are_listed_and_announced(desk_app):
    officer = Desk(desk_app, "officer")
    response = officer.post("/cases", {"custody_ref": "", "reason": "curiosity"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and 'role="alert"' in html
    for text in ("Enter the custody record reference", "concealing their identity", "Tick the checks",
                 "Explain why", "apparent age", "Answer yes or no"):
        assert text in html
    assert 'aria-invalid="true" aria-describedby="custody_ref-error"' in html
    assert events(desk_app, "submission") == []


def test_monitoring_flags_reach_the_search_audit(desk_app, face_photo):
    officer = Desk(desk_app, "officer")
    case_id = case_id_from(officer.submit(age_band="13_15"))
    Desk(desk_app, "inspector").post(f"/cases/{case_id}/approve", {"password": PASSWORD})
    to_candidates(officer, case_id, face_photo("obama3.jpg").read_bytes())
    search = events(desk_app, "search")[-1]
    assert search["details"]["apparent_under_18"] is True and search["details"]["apparent_under_16"] is True
    assert search["details"]["custody_ref"] == "CR-2025-00123"
    for type_ in ("submission", "approval", "search", "candidate_viewed", "login"):
        for e in events(desk_app, type_):
            blob = json.dumps(e)
            assert "template" not in blob and "thumbnail" not in blob and "base64" not in blob


# ---- Photo problems ----------------------------------------------------------------------------


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_bad_photos_get_a_clear_message_and_a_4xx(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    truncated = face_photo("obama3.jpg").read_bytes()
    cases = {"not an image": b"%PDF-1.4 this is not a photo", "truncated": truncated[: len(truncated) // 2],
             "no face": _jpeg(np.full((480, 640, 3), 90, np.uint8))}
    for name, data in cases.items():
        response = desk.upload(case_id, data)
        html = response.get_data(as_text=True)
        assert 400 <= response.status_code < 500, name
        assert 'role="alert"' in html and "Traceback" not in html, name
    assert state_of(desk_app, case_id) == "approved"


def test_oversized_upload_is_refused_with_413(desk_app):
    desk, case_id = approved_case(desk_app)
    response = desk.upload(case_id, b"\xff\xd8" + b"\0" * (21 * 1024 * 1024))
    assert response.status_code == 413 and "larger than 20 MB" in response.get_data(as_text=True)


def test_an_oversized_body_is_refused_before_any_session_or_csrf_work(desk_app):
    # Flask refused it only when the CSRF check read the form: the session had been loaded and was saved
    # again (marked used) by then. Now the declared length alone refuses it (fails on the old code).
    import time

    desk, case_id = approved_case(desk_app)
    db = desk_app.extensions["desk"].db

    def last_seen() -> list[float]:
        with db.lock:
            return [r[0] for r in db.conn.execute("SELECT last_seen FROM sessions ORDER BY last_seen").fetchall()]

    before = last_seen()
    time.sleep(1.1)  # so that a session marked used now would show a later time
    body = b"x" * (21 * 1024 * 1024)
    response = desk.client.post(f"/cases/{case_id}/probe", data=body, content_type="application/octet-stream")
    assert response.status_code == 413 and "larger than 20 MB" in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers
    assert last_seen() == before
    # As a server hands on a chunked body: no declared length at all.
    chunked = desk.client.post(f"/cases/{case_id}/probe", input_stream=BytesIO(b"abc"),
                               headers={"Transfer-Encoding": "chunked"}, content_type="application/octet-stream",
                               environ_overrides={"CONTENT_LENGTH": ""})
    assert chunked.status_code == 411


def test_quality_report_is_shown_before_the_search(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    html = desk.upload(case_id, face_photo("obama3.jpg").read_bytes()).get_data(as_text=True)
    assert "Photo quality:" in html and "Search the reference library with this photo" in html
    assert events(desk_app, "search") == []


def test_a_failed_quality_check_blocks_the_search(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    desk.upload(case_id, face_photo("obama3.jpg").read_bytes())
    db = desk_app.extensions["desk"].db
    with db.lock:
        db.conn.execute("UPDATE case_probes SET quality = ? WHERE case_id = ?",
                        (json.dumps({"verdict": "fail", "reasons": ["The face is too dark."]}), case_id))
        db.conn.commit()
    response = desk.post(f"/cases/{case_id}/search")
    assert response.status_code == 409 and "The face is too dark." in response.get_data(as_text=True)
    assert events(desk_app, "search") == [] and events(desk_app, "search_refused")[-1]["outcome"] == "probe_quality"


def test_static_files_are_served_from_memory_and_never_outside_their_folder(app):
    client = app.test_client()
    css = client.get("/static/app.css")
    assert css.status_code == 200 and css.mimetype == "text/css" and b"focus-visible" in css.data
    assert client.get("/static/../__init__.py").status_code == 404
    assert client.get("/static/%2e%2e/settings.py").status_code == 404
    assert client.get("/static/nothing-here.js").status_code == 404


def test_unknown_and_over_long_static_names_are_404s_that_grow_nothing(app):
    # A 300-character name gave a 500 (the file system refused the name); every miss was cached for good.
    from appliance.web import assets

    client = app.test_client()
    assert client.get("/static/" + "a" * 300 + ".css").status_code == 404
    assert client.get("/static/" + "/".join(["d" * 250] * 20)).status_code == 404
    before = assets.served_names()
    for i in range(2000):
        assert client.get(f"/static/missing-{i}.js").status_code == 404
    assert assets.served_names() == before == {"app.css", "camera.js", "compare.js"}
