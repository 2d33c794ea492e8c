"""Steps that destroy data ask first, say what they destroy, and do nothing until confirmed (server-side);
a withdrawn case says "Withdrawn". Also: the times and the lead subject people look for."""

from __future__ import annotations

import html as html_lib
import re

import pytest

from appliance.services.cases import ConfirmationNeeded
from tests.appliance.desk_helpers import (
    CONFIRM,
    MATCH_REPORT,
    Desk,
    add_users,
    approved_case,
    events,
    fast_kdf,
    judgement,
    state_of,
    to_candidates,
)


@pytest.fixture
def desk_app(app, monkeypatch):
    fast_kdf(monkeypatch)
    add_users(app)
    return app


def hidden_fields(page: str) -> list[tuple[str, str]]:
    return [(n, html_lib.unescape(v)) for n, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">',
                                                                 page) if n != "csrf_token"]


def confirm_as_the_browser_would(desk: Desk, response_page: str) -> int:
    """Post the confirmation page's own form: its action, its hidden fields."""
    action = re.search(r'<form method="post" action="([^"]+)">', response_page).group(1)
    return desk.post(action, dict(hidden_fields(response_page))).status_code


def test_withdraw_asks_first_and_destroys_nothing_until_confirmed(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    assert desk.upload(case_id, face_photo("obama3.jpg").read_bytes()).status_code == 200
    response = desk.post(f"/cases/{case_id}/withdraw")
    page = html_lib.unescape(response.get_data(as_text=True))
    assert response.status_code == 200 and "<h1 id=\"confirm-h\">Withdraw this request?</h1>" in page
    assert "<li>the photo of the detainee</li>" in page and "<li>the face template made from it</li>" in page
    assert "This cannot be undone. Nothing has been destroyed yet." in page
    assert state_of(desk_app, case_id) == "probe_captured"
    assert desk_app.extensions["desk"].cases.probe(case_id) is not None, "no confirm: nothing destroyed"
    assert events(desk_app, "deletion") == []
    assert confirm_as_the_browser_would(desk, page) == 302
    assert state_of(desk_app, case_id) == "withdrawn"
    assert desk_app.extensions["desk"].cases.probe(case_id) is None


def test_a_withdrawn_case_says_withdrawn_not_no_viable_match(desk_app):
    desk, case_id = approved_case(desk_app)
    page = html_lib.unescape(desk.post(f"/cases/{case_id}/withdraw").get_data(as_text=True))
    assert "No photo has been taken for this case, so no photo is destroyed." in page
    assert desk.post(f"/cases/{case_id}/withdraw", CONFIRM).status_code == 302
    shown = html_lib.unescape(desk.get(f"/cases/{case_id}").get_data(as_text=True))
    assert "Outcome: Withdrawn" in shown and "Withdrawn: the request was ended before any judgement." in shown
    assert "no viable match" not in shown.lower()
    summary = html_lib.unescape(desk.get(f"/cases/{case_id}/summary").get_data(as_text=True))
    assert re.search(r"<strong>Outcome:</strong>\s*Withdrawn", summary) and "no viable match" not in summary.lower()


def test_judging_everything_not_viable_asks_before_the_photo_is_destroyed(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    html = to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    decisions = judgement(html, "not_viable")
    response = desk.post(f"/cases/{case_id}/adjudicate", decisions | {"doubts": ""})
    page = html_lib.unescape(response.get_data(as_text=True))
    assert response.status_code == 200 and "Close the case with no viable match?" in page
    rows = len(desk_app.extensions["desk"].cases.candidates(case_id))
    assert f"<li>the list of {rows} candidates</li>" in page and "<li>the photo of the detainee</li>" in page
    assert "Yes, close the case and destroy the photo" in page
    service = desk_app.extensions["desk"].cases
    assert state_of(desk_app, case_id) == "candidates_shown" and service.probe(case_id) is not None
    assert all(c.decision is None for c in service.candidates(case_id)), "no decision recorded either"
    assert events(desk_app, "adjudication") == [] and events(desk_app, "deletion") == []
    # The page sends the very same answers back, whatever they were called, with the confirmation.
    assert set(hidden_fields(page)) == set(decisions.items()) | {("doubts", ""), ("confirm", "yes")}
    assert confirm_as_the_browser_would(desk, page) == 302
    assert state_of(desk_app, case_id) == "closed_no_match" and service.probe(case_id) is None


def test_a_judgement_that_keeps_the_photo_is_not_held_up(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    html = to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    decisions = judgement(html, "not_viable")
    doubts = {"doubts": "Not sure about rank 2."}
    assert desk.post(f"/cases/{case_id}/adjudicate", decisions | doubts).status_code == 302
    assert state_of(desk_app, case_id) == "awaiting_peer_review"


def test_a_local_peer_review_closing_the_case_asks_first(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    html = to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    decisions = judgement(html, "needs_peer_review")
    desk.post(f"/cases/{case_id}/adjudicate", decisions)
    adviser = Desk(desk_app, "adviser")
    form = {"review-1": "not_viable", "notes": "Different ear shape and nose."}
    page = html_lib.unescape(adviser.post(f"/cases/{case_id}/peer-review", form).get_data(as_text=True))
    assert "Record the review and close the case with no viable match?" in page
    assert state_of(desk_app, case_id) == "awaiting_peer_review"
    assert confirm_as_the_browser_would(adviser, page) == 302
    assert state_of(desk_app, case_id) == "closed_no_match"


def test_the_service_itself_refuses_without_confirmation(desk_app, face_photo):
    """Any page (or a future one) calling the service without ``confirmed`` destroys nothing."""
    desk, case_id = approved_case(desk_app)
    desk.upload(case_id, face_photo("obama3.jpg").read_bytes())
    rfr = desk_app.extensions["desk"]
    officer = rfr.accounts.user("officer")
    assert officer is not None
    with pytest.raises(ConfirmationNeeded) as refused:
        rfr.cases.withdraw(case_id, officer)
    assert refused.value.destroys[0] == "the photo of the detainee"
    assert rfr.cases.probe(case_id) is not None


# ---- Times and the lead subject ---------------------------------------------------------------------


TIME = re.compile(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ">'
                  r"\d{1,2} [A-Z][a-z]+ \d{4}, \d\d:\d\d [A-Z+\-0-9]+</time>")


def test_times_are_shown_where_people_look_and_the_lead_is_named(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    html = to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    decisions = judgement(html, "viable")
    desk.post(f"/cases/{case_id}/adjudicate", decisions)
    assert desk.post(f"/cases/{case_id}/match-report", MATCH_REPORT).status_code == 302
    home = desk.get("/").get_data(as_text=True)
    row = re.search(rf"<tr>\s*<th scope=\"row\"><a href=\"/cases/{case_id}\">.*?</tr>", home, re.S).group(0)
    assert len(TIME.findall(row)) == 2, "submitted and closed"
    assert "Closed: viable match reported. Lead: DEMO-OBAMA" in row
    page = desk.get(f"/cases/{case_id}").get_data(as_text=True)
    times = re.search(r'<dl class="facts" id="case-times">(.*?)</dl>', page, re.S).group(1)
    assert [t for t in re.findall(r"<dt>(\w+)</dt>", times)] == ["Submitted", "Approved", "Searched", "Judged",
                                                                 "Closed"]
    assert len(TIME.findall(times)) == 5
    assert 'Lead subject: <strong>DEMO-OBAMA</strong>' in page
    summary = desk.get(f"/cases/{case_id}/summary").get_data(as_text=True)
    assert re.search(TIME.pattern + r" \(UTC \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)", summary), "exports carry UTC"
    auditor = Desk(desk_app, "auditor").get("/").get_data(as_text=True)
    assert case_id in auditor and len(TIME.findall(auditor)) >= 2
