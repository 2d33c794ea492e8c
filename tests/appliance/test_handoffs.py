"""Hand-offs between the officer and the approver: refuse, return for changes, who is offered what, and
the status the officer's page polls. Real desk (SQLCipher, models, library) through Flask's test client.

The approver reads the submission before the decision; whoever may not approve now is told why
before any password is asked; a refusal closes the case as a withdrawal does; a return sends it back
to its officer, who changes and resends it; every answer is audited.
"""

from __future__ import annotations

import re

import pytest

from appliance.services.cases import State
from tests.appliance.desk_helpers import (
    PASSWORD,
    SUBMISSION,
    Desk,
    add_users,
    case_id_from,
    events,
    fast_kdf,
    state_of,
)


@pytest.fixture
def desk_app(app, monkeypatch):
    fast_kdf(monkeypatch)
    add_users(app)
    return app


def text(response) -> str:  # type: ignore[no-untyped-def]
    return response.get_data(as_text=True)


def test_the_approver_reads_the_submission_before_the_decision(desk_app):
    case_id = case_id_from(Desk(desk_app, "officer").submit())
    page = text(Desk(desk_app, "inspector").get(f"/cases/{case_id}"))
    submission, decision = page.index('id="submission-h"'), page.index('id="step-h"')
    assert submission < decision
    assert page.index("Approve this search") > submission
    for button in ("Return to the officer for changes", "Refuse this search and close the case"):
        assert button in page


def test_an_approver_waiting_on_technical_advice_is_told_so_and_offered_no_password(desk_app):
    """Old code: the password form was offered, and the refusal came only after the password was typed."""
    case_id = case_id_from(Desk(desk_app, "officer").submit(disability="yes"))
    inspector = Desk(desk_app, "inspector")
    page = text(inspector.get(f"/cases/{case_id}"))
    assert 'type="password"' not in page and "Approve this search" not in page
    assert re.search(r'id="approval-blocked".*Technical advice must be recorded', page, re.S)
    # The server still enforces it, and refuses before any password is checked (a wrong one changes nothing).
    response = inspector.post(f"/cases/{case_id}/approve", {"password": "not-the-password"})
    assert response.status_code == 403 and "Technical advice must be recorded" in text(response)
    assert "Approval not recorded" not in text(response), "the password was not what refused it"
    assert state_of(desk_app, case_id) == "awaiting_approval"


def test_an_inspector_never_sees_an_under_13_case_and_cannot_decide_it(desk_app):
    case_id = case_id_from(Desk(desk_app, "officer").submit(age_band="under_13"))
    inspector = Desk(desk_app, "inspector")
    assert case_id not in text(inspector.get("/"))
    for path, form in [("approve", {"password": PASSWORD}), ("refuse", {"refusal_reason": "Not proportionate."}),
                       ("return", {"return_note": "Add the PNC result."})]:
        assert inspector.post(f"/cases/{case_id}/{path}", form).status_code == 404
    assert state_of(desk_app, case_id) == "awaiting_approval"


def test_an_inspector_who_returned_a_case_that_now_needs_a_superintendent_is_told_who_can_approve(desk_app):
    officer = Desk(desk_app, "officer")
    case_id = case_id_from(officer.submit())
    inspector = Desk(desk_app, "inspector")
    assert inspector.post(f"/cases/{case_id}/return", {
        "return_note": "Check the apparent age again: the detainee looks much younger."}).status_code == 302
    assert officer.post(f"/cases/{case_id}/resubmit", {**SUBMISSION, "age_band": "under_13"}).status_code == 302
    page = text(inspector.get(f"/cases/{case_id}"))
    assert 'type="password"' not in page and "Refuse this search" not in page
    assert "This search needs approval by a Superintendent or above" in page
    assert inspector.post(f"/cases/{case_id}/approve", {"password": PASSWORD}).status_code == 403
    assert inspector.post(f"/cases/{case_id}/refuse", {"refusal_reason": "Not proportionate here."}).status_code == 403
    assert state_of(desk_app, case_id) == "awaiting_approval"
    assert Desk(desk_app, "super").post(f"/cases/{case_id}/approve", {"password": PASSWORD}).status_code == 302


def test_refusal_needs_a_reason_and_closes_the_case(desk_app):
    officer = Desk(desk_app, "officer")
    case_id = case_id_from(officer.submit())
    inspector = Desk(desk_app, "inspector")
    response = inspector.post(f"/cases/{case_id}/refuse", {"refusal_reason": " "})
    assert response.status_code == 422 and 'href="#refusal_reason"' in text(response)
    assert state_of(desk_app, case_id) == "awaiting_approval" and events(desk_app, "submission_refused") == []

    reason = "Identity can be confirmed by the fingerprint bureau tomorrow: not necessary."
    assert inspector.post(f"/cases/{case_id}/refuse", {"refusal_reason": reason}).status_code == 302
    assert state_of(desk_app, case_id) == "refused"
    page = text(officer.get(f"/cases/{case_id}"))
    assert f"Refused by inspector:</strong> {reason}" in page and "no search ran" in page
    for step in ("withdraw", "probe", "search"):
        assert officer.post(f"/cases/{case_id}/{step}").status_code in (400, 403, 409)
    assert "Refused by inspector" in text(inspector.get(f"/cases/{case_id}")), "the refuser keeps the record"
    assert "Refused by the approver" in text(officer.get("/"))
    summary = officer.get(f"/cases/{case_id}/summary")
    assert summary.status_code == 200 and f"by inspector: {reason}" in text(summary), "the printed record says why"
    assert "Refused by inspector" in text(Desk(desk_app, "auditor").get(f"/cases/{case_id}")), "closed: auditable"
    [refused] = events(desk_app, "submission_refused")
    assert (refused["actor"], refused["outcome"], refused["details"]["case_id"]) == ("inspector", "refused", case_id)
    assert reason not in str(refused), "free text stays on the desk"
    deletion = [e for e in events(desk_app, "deletion") if e["details"]["case_id"] == case_id]
    assert [(e["outcome"], e["details"]["why"]) for e in deletion] == [("destroyed", "refused")]
    assert desk_app.extensions["desk"].cases.probe(case_id) is None


def test_return_for_changes_then_the_officer_changes_and_resends(desk_app):
    officer = Desk(desk_app, "officer")
    case_id = case_id_from(officer.submit(disability="yes"))
    adviser = Desk(desk_app, "adviser")
    assert adviser.post(f"/cases/{case_id}/advice", {
        "advice": "Facial palsy on the left side: weigh the right side of the face."}).status_code == 302
    inspector = Desk(desk_app, "inspector")
    assert inspector.post(f"/cases/{case_id}/return", {"return_note": "short"}).status_code == 422
    note = "Say what the PNC search on the second name given found."
    assert inspector.post(f"/cases/{case_id}/return", {"return_note": note}).status_code == 302
    assert state_of(desk_app, case_id) == "returned"
    assert inspector.post(f"/cases/{case_id}/approve", {"password": PASSWORD}).status_code == 409

    page = text(officer.get(f"/cases/{case_id}"))
    assert note in page and f'href="/cases/{case_id}/edit"' in page
    assert "Returned for changes" in text(officer.get("/"))
    form = text(officer.get(f"/cases/{case_id}/edit"))
    assert note in form and 'value="CR-2025-00123"' in form and f'action="/cases/{case_id}/resubmit"' in form
    assert Desk(desk_app, "officer2").get(f"/cases/{case_id}/edit").status_code == 404
    assert inspector.get(f"/cases/{case_id}/edit").status_code == 403

    bad = officer.post(f"/cases/{case_id}/resubmit", {**SUBMISSION, "checks_detail": "too short", "disability": "yes"})
    assert bad.status_code == 422 and "Explain why those checks" in text(bad)
    changed = SUBMISSION["checks_detail"] + " PNC on the second name: no trace either."
    assert officer.post(f"/cases/{case_id}/resubmit", {**SUBMISSION, "checks_detail": changed,
                                                          "disability": "yes"}).status_code == 302
    case = desk_app.extensions["desk"].cases.get(case_id)
    assert case.state is State.AWAITING_APPROVAL and case.checks_detail == changed
    assert case.advice_by == "adviser", "same grounds for advice: the advice still stands"
    assert inspector.post(f"/cases/{case_id}/approve", {"password": PASSWORD}).status_code == 302
    assert state_of(desk_app, case_id) == "approved"
    [returned] = events(desk_app, "submission_returned")
    assert (returned["actor"], returned["outcome"]) == ("inspector", "returned") and note not in str(returned)
    assert [e["outcome"] for e in events(desk_app, "submission")] == ["awaiting_approval", "resubmitted"]


def test_changed_grounds_for_advice_need_new_advice(desk_app):
    officer = Desk(desk_app, "officer")
    case_id = case_id_from(officer.submit(disability="yes"))
    Desk(desk_app, "adviser").post(f"/cases/{case_id}/advice", {"advice": "Weigh the right side of the face."})
    Desk(desk_app, "inspector").post(f"/cases/{case_id}/return", {"return_note": "Is the photo pre-reassignment?"})
    officer.post(f"/cases/{case_id}/resubmit", {**SUBMISSION, "disability": "yes", "reassignment": "yes"})
    case = desk_app.extensions["desk"].cases.get(case_id)
    assert case.state is State.AWAITING_APPROVAL and case.advice_by is None
    assert 'type="password"' not in text(Desk(desk_app, "inspector").get(f"/cases/{case_id}"))


def test_the_officer_cannot_refuse_or_return_their_own_request(desk_app):
    inspector = Desk(desk_app, "inspector")
    case_id = case_id_from(inspector.submit())
    assert inspector.post(f"/cases/{case_id}/refuse", {"refusal_reason": "Changed my mind here."}).status_code == 403
    assert inspector.post(f"/cases/{case_id}/return", {"return_note": "Changed my mind here."}).status_code == 403
    assert state_of(desk_app, case_id) == "awaiting_approval"
    assert len([e for e in events(desk_app, "approval") if e["outcome"] == "refused"]) == 2


def test_the_status_answers_204_until_the_case_moves_on_then_the_page_with_what_happened(desk_app):
    officer = Desk(desk_app, "officer")
    case_id = case_id_from(officer.submit())
    page = text(officer.get(f"/cases/{case_id}"))
    poll = re.search(r'id="case-poll" hx-get="([^"]+)"\s+hx-trigger="every 5s"', page)
    assert poll, "the officer's waiting page polls"
    url = poll.group(1).replace("&amp;", "&")
    assert officer.get(url).status_code == 204
    assert 'hx-trigger="every' not in text(Desk(desk_app, "inspector").get(f"/cases/{case_id}")), "officer only"
    Desk(desk_app, "inspector").post(f"/cases/{case_id}/approve", {"password": PASSWORD})
    moved = officer.get(url)
    assert moved.status_code == 200
    html = text(moved)
    assert re.search(r'id="case-announce"[^>]*>.*Approved by inspector\. You can now take the photo', html, re.S)
    assert 'hx-trigger="every' not in html, "nothing more changes behind the officer: the polling stops"
    assert 'id="probe-form"' in html and "camera.js" in html
    assert Desk(desk_app, "officer2").get(url).status_code == 404


def test_polling_is_not_activity_so_a_page_left_open_still_signs_out(desk_app):
    """Old code (every request marks the session used): a page polling every 5 s never timed out."""
    sessions = desk_app.extensions["desk"].sessions
    now = [1_000_000.0]
    sessions._clock = lambda: now[0]
    officer = Desk(desk_app, "officer")
    case_id = case_id_from(officer.submit())
    url = re.search(r'id="case-poll" hx-get="([^"]+)"', text(officer.get(f"/cases/{case_id}"))).group(1)
    url = url.replace("&amp;", "&")
    step = 5.0
    for _ in range(int(sessions.idle_s / step) - 1):  # polls just short of the idle timeout: still signed in
        now[0] += step
        assert officer.get(url).status_code == 204
    now[0] += 2 * step  # the idle timeout has passed since the officer last did anything
    polled = officer.client.get(url, headers={"HX-Request": "true"})
    assert polled.status_code == 401 and polled.headers["HX-Redirect"].startswith("/login")

    other = Desk(desk_app, "officer2")  # the same, with a person using the page: the session stays
    start = now[0]
    while now[0] < start + 2 * sessions.idle_s:
        now[0] += sessions.idle_s / 2
        assert other.get("/").status_code == 200
