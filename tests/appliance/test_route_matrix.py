"""Every desk route, every method, every role, and for case routes the user taking part and another of the same role.

The table below is read from the app's own ``url_map``: a route added without an entry here, or an
entry whose route is gone, fails the first test. Each cell is the expected status; ``R`` is a
refusal that must look exactly like a case number nobody used (404, same page) and be audited as
``access_refused``. A case-route cell reads ``party/other``:

- *party* is the role's user taking part in the case: its officer (custody officer on case A, detention
  officer on case B), the approver who approved it (Inspector A, Superintendent B), the adviser who
  advised on it (A); for the auditor, a closed case (C), which is theirs to read; the device
  administrator takes part in nothing;
- *other* is another user of the same role on the same case (for the auditor, the open case A).

Cases A and B are at "candidates shown"; C closed with a viable match (its images kept). ``HEAD``
answers as ``GET`` (without a body) and ``OPTIONS`` is Flask's own answer, 200 for everyone. Posts
carry the session's CSRF token and an empty form: nothing may change, which the test checks at the end.
The second test sends every state-changing route a form that would succeed, without a CSRF token and
with another session's: 400, and nothing changed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import pytest
from flask import Flask
from werkzeug.datastructures import FileStorage
from werkzeug.test import TestResponse, encode_multipart

from tests.appliance.desk_helpers import (
    CONFIRM,
    FEATURES,
    PASSWORD,
    SUBMISSION,
    Desk,
    add_users,
    case_id_from,
    csrf_from,
    events,
    fast_kdf,
    judgement,
    same_page,
    state_of,
    to_candidates,
)
from tests.url_map import STATE_CHANGING, state_changing_endpoints, unlisted

# column -> (party user, other user of the same role)
ROLES = {
    "custody_officer": ("officer", "officer_b"),
    "detention_officer": ("officer2", "officer2_b"),
    "inspector": ("inspector", "inspector2"),
    "superintendent": ("super", "super2"),
    "technical_adviser": ("adviser", "adviser2"),
    "auditor": ("auditor", "auditor2"),
    "device_admin": ("admin", "admin2"),
}
COLUMNS = ("anonymous", *ROLES)
# Which case each column's party and other user are tried on.
CASE_OF = {"custody_officer": "A", "detention_officer": "B", "inspector": "A", "superintendent": "B",
           "technical_adviser": "A", "auditor": "C", "device_admin": "A"}
OTHER_CASE_OF = {**CASE_OF, "auditor": "A"}

#                                                    anon officer det-off  inspector super  adviser auditor admin
MATRIX: dict[tuple[str, str], str] = {
    ("GET", "/static/<path:filename>"):              "200  200      200      200      200      200      200  200",
    ("GET", "/vendor/htmx.min.js"):                  "200  200      200      200      200      200      200  200",
    ("GET", "/login"):                               "200  200      200      200      200      200      200  200",
    ("POST", "/login"):                              "401  401      401      401      401      401      401  401",
    ("POST", "/logout"):                             "302  302      302      302      302      302      302  302",
    ("GET", "/"):                                    "302  200      200      200      200      200      200  200",
    ("GET", "/cases/new"):                           "302  200      200      200      200      403      403  403",
    ("POST", "/cases"):                              "302  422      422      422      422      403      403  403",
    ("GET", "/cases/<case_id>"):                     "302  200/R    200/R    200/R    200/R    200/R    200/R R/R",
    ("GET", "/cases/<case_id>/candidates"):          "302  200/R    200/R    200/R    200/R    200/R    R/R   R/R",
    ("GET", "/cases/<case_id>/probe.jpg"):           "302  200/R    200/R    200/R    200/R    200/R    R/R   R/R",
    ("GET", "/cases/<case_id>/faces/<int:index>.jpg"): "302  404/R  404/R    404/R    404/R    404/R    R/R   R/R",
    ("GET", "/cases/<case_id>/candidates/<int:rank>.jpg"): "302 200/R 200/R  200/R    200/R    200/R    R/R   R/R",
    ("GET", "/cases/<case_id>/candidates/<int:rank>/features"): "302 200/R 200/R 200/R 200/R 200/R   R/R   R/R",
    ("POST", "/cases/<case_id>/candidates/<int:rank>/features"): "302 422/R 422/R 403/R 403/R 403/R  R/R   R/R",
    ("GET", "/cases/<case_id>/candidates/<int:rank>/compare"): "302 200/R 200/R 200/R 200/R 200/R R/R R/R",
    ("GET", "/cases/<case_id>/summary"):             "302  200/R    200/R    200/R    200/R    200/R    200/R R/R",
    ("POST", "/cases/<case_id>/advice"):             "302  409/R    409/R    409/R    409/R    409/R    409/R R/R",
    ("POST", "/cases/<case_id>/approve"):            "302  409/R    409/R    409/R    409/R    409/R    409/R R/R",
    ("POST", "/cases/<case_id>/probe"):              "302  400/R    400/R    400/R    400/R    400/R    400/R R/R",
    ("POST", "/cases/<case_id>/face"):               "302  400/R    400/R    400/R    400/R    400/R    400/R R/R",
    ("POST", "/cases/<case_id>/face/again"):         "302  409/R    409/R    403/R    403/R    403/R    403/R R/R",
    ("POST", "/cases/<case_id>/search"):             "302  409/R    409/R    403/R    403/R    403/R    403/R R/R",
    ("POST", "/cases/<case_id>/libraries"):          "302  409/R    409/R    403/R    403/R    403/R    403/R R/R",
    ("POST", "/cases/<case_id>/adjudicate"):         "302  422/R    422/R    403/R    403/R    403/R    403/R R/R",
    ("POST", "/cases/<case_id>/match-report"):       "302  409/R    409/R    403/R    403/R    403/R    403/R R/R",
    ("POST", "/cases/<case_id>/peer-review"):        "302  409/R    409/R    409/R    409/R    409/R    409/R R/R",
    ("POST", "/cases/<case_id>/withdraw"):           "302  409/R    409/R    403/R    403/R    403/R    403/R R/R",
    ("GET", "/cases/<case_id>/status"):              "302  200/R    200/R    200/R    200/R    200/R    200/R R/R",
    ("POST", "/cases/<case_id>/refuse"):             "302  409/R    409/R    409/R    409/R    409/R    409/R R/R",
    ("POST", "/cases/<case_id>/return"):             "302  409/R    409/R    409/R    409/R    409/R    409/R R/R",
    ("GET", "/cases/<case_id>/edit"):                "302  409/R    409/R    403/R    403/R    403/R    403/R R/R",
    ("POST", "/cases/<case_id>/resubmit"):           "302  409/R    409/R    403/R    403/R    403/R    403/R R/R",
}
MISSING_CASE = "0000FFFF"
REPORT = {"rank": "1", "probe_quality": "Good, frontal, sharp.", "reference_quality": "Good studio photo.",
          "time_lapse": "About 3 years.", "lighting": "Even in both.", "other_factors": "None seen.",
          "age_judgement": "Adult in both; little change expected.", "rationale": "Ear shape and scar agree.",
          **FEATURES, "checked_prefill": "yes"}


def url(rule: str, case_id: str = MISSING_CASE) -> str:
    values = {"<case_id>": case_id, "<int:index>": "0", "<int:rank>": "1", "<path:filename>": "app.css"}
    return re.sub(r"<[^>]+>", lambda m: values[m.group(0)], rule)


def cells(row: str) -> dict[str, tuple[str, str]]:
    """column -> (party, other) expected statuses from one table row."""
    parts = row.split()
    assert len(parts) == len(COLUMNS), row
    return {column: tuple(cell.split("/")) if "/" in cell else (cell, cell)  # type: ignore[misc]
            for column, cell in zip(COLUMNS, parts, strict=True)}


def snapshot(app: Flask) -> list[tuple[Any, ...]]:
    """Everything a request could have changed about the cases: each row, its probe and its candidates."""
    cases = app.extensions["desk"].cases
    out = []
    for case in cases.list():
        probe = cases.probe(case.case_id)
        out.append((tuple(sorted(case.row.items())), probe is not None and probe.template is not None,
                    cases.store.crop_count(case.case_id),
                    tuple((c.rank, c.decision) for c in cases.candidates(case.case_id)),
                    cases.peer_review(case.case_id), tuple(sorted(cases.store.comparisons(case.case_id)))))
    return out


@pytest.fixture
def desk_app(app, monkeypatch):
    fast_kdf(monkeypatch)
    add_users(app, {user: role for role, pair in ROLES.items() for user in pair})
    return app


def _searched(app: Flask, officer: str, approver: str, face: bytes, **over: Any) -> tuple[Desk, str]:
    desk = Desk(app, officer)
    case_id = case_id_from(desk.submit(**over))
    if over.get("disability") == "yes":
        assert Desk(app, "adviser").post(f"/cases/{case_id}/advice", {
            "advice": "Facial palsy on the left side: weigh the right side of the face."}).status_code == 302
    assert Desk(app, approver).post(f"/cases/{case_id}/approve", {"password": PASSWORD}).status_code == 302
    to_candidates(desk, case_id, face)
    return desk, case_id


@pytest.fixture
def cases(desk_app, face_photo) -> dict[str, str]:
    face = face_photo("obama3.jpg").read_bytes()
    _, a = _searched(desk_app, "officer", "inspector", face, disability="yes")
    _, b = _searched(desk_app, "officer2", "super", face)
    officer, c = _searched(desk_app, "officer", "inspector", face)
    html = officer.get(f"/cases/{c}/candidates").get_data(as_text=True)
    officer.post(f"/cases/{c}/adjudicate", judgement(html, "viable"))
    assert officer.post(f"/cases/{c}/match-report", REPORT).status_code == 302
    assert [state_of(desk_app, x) for x in (a, b, c)] == ["candidates_shown", "candidates_shown", "closed_viable"]
    return {"A": a, "B": b, "C": c}


def test_the_matrix_covers_every_route_and_nothing_else(desk_app) -> None:
    assert unlisted(desk_app, MATRIX) == (set(), set()), "decide who may use each new route, in MATRIX"


def test_a_route_added_without_an_entry_is_caught(desk_app) -> None:
    desk_app.add_url_rule("/new-page", "new_page", lambda: "new", methods=["GET", "POST"])
    assert unlisted(desk_app, MATRIX)[0] == {("GET", "/new-page"), ("POST", "/new-page")}


def test_every_role_and_relation_gets_what_the_matrix_says(desk_app, cases):
    before = snapshot(desk_app)
    people = {u: _fresh(desk_app, u) for u in [None, *(u for pair in ROLES.values() for u in pair)]}
    wrong: list[str] = []
    for (method, rule), row in MATRIX.items():
        expected = cells(row)
        for column in COLUMNS:
            tries = [(None, MISSING_CASE, expected[column][0])] if column == "anonymous" else [
                (ROLES[column][0], cases[CASE_OF[column]], expected[column][0]),
                (ROLES[column][1], cases[OTHER_CASE_OF[column]], expected[column][1])]
            for username, case_id, want in tries:
                # Signing out ends the session the other rows still need: it is tried on a session of its own.
                desk = _fresh(desk_app, username) if rule == "/logout" else people[username]
                for verb in (method, "HEAD") if method == "GET" else (method,):
                    got = _check(desk_app, desk, verb, rule, case_id, want, username)
                    if got:
                        wrong.append(f"{verb} {rule} as {username or 'anonymous'}: {got}")
        for verb in ("OPTIONS",):
            status = people[None].client.open(url(rule), method=verb).status_code
            if status != 200:
                wrong.append(f"{verb} {rule}: {status}")
    assert wrong == []
    assert snapshot(desk_app) == before, "a request in the matrix changed a case"


def _fresh(app: Flask, username: str | None) -> Desk:
    """A session of its own for ``username``; for nobody, a visitor holding the sign-in form's token."""
    desk = Desk(app, username)
    if username is None:
        desk.token = csrf_from(desk.get("/login").get_data(as_text=True))
    return desk


def _check(app: Flask, desk: Desk, verb: str, rule: str, case_id: str, want: str, username: str | None) -> str:
    """What was wrong with one request (empty when it answered as the table says)."""
    refused_before = len(events(app, "access_refused"))
    path = url(rule, case_id)
    data = {"csrf_token": desk.token} if verb in STATE_CHANGING else None
    response = desk.client.open(path, method=verb, data=data)
    if want != "R":
        return "" if str(response.status_code) == want else f"{response.status_code}, expected {want}"
    if response.status_code != 404:
        return f"{response.status_code}, expected a refusal (404)"
    recorded = events(app, "access_refused")[refused_before:]
    if [(e["actor"], e["details"]["case_id"]) for e in recorded] != [(username, case_id)]:
        return f"refusal not audited once: {recorded}"
    if verb != "HEAD":
        missing = desk.client.open(url(rule), method=verb, data=data)
        if (missing.status_code, same_page(missing.get_data(as_text=True))) != (
                404, same_page(response.get_data(as_text=True))):
            return "refusal differs from a case that does not exist"
    return ""


# ---- CSRF: every state-changing route, with a form that would otherwise succeed ----------------------------


@dataclass
class Attempt:
    """Who sends what to a state-changing route, and what must still hold if it was refused."""

    username: str | None
    path: str
    form: dict[str, Any]


def _attempts(app: Flask, face_photo, group_photo) -> dict[str, Attempt]:
    """endpoint -> a request that succeeds with a valid token (each on a case in the state it needs)."""
    face = face_photo("obama3.jpg").read_bytes()
    officer = Desk(app, "officer")
    waiting = case_id_from(officer.submit(disability="yes"))
    _, fresh = _searched_until(app, "approved")
    _, approved = _searched_until(app, "approved")
    assert 'name="face_index"' in officer.upload(approved, group_photo.read_bytes()).get_data(as_text=True)
    _, regrouped = _searched_until(app, "approved")
    officer.upload(regrouped, group_photo.read_bytes())
    assert officer.post(f"/cases/{regrouped}/face", {"face_index": "0"}).status_code == 200
    assert state_of(app, regrouped) == "probe_captured"
    _, captured = _searched_until(app, "approved")
    assert officer.upload(captured, face).status_code == 200
    # Approved with a second library that central has since withdrawn: the officer searches without it.
    _, narrowed = _searched_until(app, "approved")
    app.extensions["desk"].cases.store.update(narrowed, libraries=json.dumps([
        {"library_id": "national", "name": "National custody images", "kind": "substantive"},
        {"library_id": "op-withdrawn", "name": "Operation Withdrawn", "kind": "temporary"}]))
    shown_desk, shown = _searched(app, "officer", "inspector", face)
    html = shown_desk.get(f"/cases/{shown}/candidates").get_data(as_text=True)
    decisions = judgement(html, "not_viable")
    _, reporting = _searched(app, "officer", "inspector", face)
    officer.post(f"/cases/{reporting}/adjudicate", judgement(html, "viable"))
    _, reviewing = _searched(app, "officer", "inspector", face)
    officer.post(f"/cases/{reviewing}/adjudicate", judgement(html, "needs_peer_review"))
    assert state_of(app, reporting) == "awaiting_match_report" and state_of(app, reviewing) == "awaiting_peer_review"
    to_refuse, to_return, returned = (case_id_from(officer.submit()) for _ in range(3))
    assert Desk(app, "inspector").post(f"/cases/{returned}/return", {
        "return_note": "Add what the fingerprint check found."}).status_code == 302
    return {
        "auth.login": Attempt(None, "/login", {"username": "officer", "password": PASSWORD}),
        "auth.logout": Attempt("officer", "/logout", {}),
        "desk.submit_case": Attempt("officer", "/cases", dict(SUBMISSION)),
        "cases.advice": Attempt("adviser", f"/cases/{waiting}/advice", {"advice": "Weigh the right side of the face."}),
        "cases.approve": Attempt("inspector", f"/cases/{waiting}/approve", {"password": PASSWORD}),
        "cases.capture": Attempt("officer", f"/cases/{fresh}/probe",
                                 {"probe": face}),
        "cases.choose_face": Attempt("officer", f"/cases/{approved}/face", {"face_index": "0"}),
        "cases.choose_face_again": Attempt("officer", f"/cases/{regrouped}/face/again", {}),
        "cases.search": Attempt("officer", f"/cases/{captured}/search", {}),
        "cases.narrow_libraries": Attempt("officer", f"/cases/{narrowed}/libraries", {"libraries": "national"}),
        # Before the judgement below closes the case (and destroys its candidate list).
        "cases.features": Attempt("officer", f"/cases/{shown}/candidates/1/features", FEATURES),
        "cases.adjudicate": Attempt("officer", f"/cases/{shown}/adjudicate", decisions | CONFIRM),
        "cases.match_report": Attempt("officer", f"/cases/{reporting}/match-report", REPORT),
        "cases.peer_review": Attempt("adviser", f"/cases/{reviewing}/peer-review",
                                     {"review-1": "not_viable", "notes": "Different ear shape and nose.", **CONFIRM}),
        "cases.withdraw": Attempt("officer", f"/cases/{waiting}/withdraw", CONFIRM),
        "cases.refuse": Attempt("inspector", f"/cases/{to_refuse}/refuse",
                                {"refusal_reason": "Not necessary: fingerprints will settle it."}),
        "cases.return_for_changes": Attempt("inspector", f"/cases/{to_return}/return",
                                            {"return_note": "Add what the fingerprint check found."}),
        "cases.resubmit": Attempt("officer", f"/cases/{returned}/resubmit", dict(SUBMISSION)),
    }


def _post(desk: Desk, attempt: Attempt, token: str | None) -> TestResponse:
    """The attempt's form, with ``token`` as its CSRF token (none if None), encoded as a browser would."""
    form = {**attempt.form, **({"csrf_token": token} if token is not None else {})}
    if not any(isinstance(v, bytes) for v in form.values()):
        return desk.client.post(attempt.path, data=form)
    files = {k: FileStorage(BytesIO(v), filename="probe.jpg") if isinstance(v, bytes) else v for k, v in form.items()}
    boundary, body = encode_multipart(files)
    return desk.client.post(attempt.path, data=body, content_type=f"multipart/form-data; boundary={boundary}")


def _searched_until(app: Flask, state: str) -> tuple[Desk, str]:
    desk = Desk(app, "officer")
    case_id = case_id_from(desk.submit())
    assert Desk(app, "inspector").post(f"/cases/{case_id}/approve", {"password": PASSWORD}).status_code == 302
    assert state_of(app, case_id) == state
    return desk, case_id


def test_every_state_changing_route_refuses_a_missing_or_wrong_csrf_token(desk_app, face_photo, group_photo):
    attempts = _attempts(desk_app, face_photo, group_photo)
    changing = state_changing_endpoints(desk_app)
    assert changing == set(attempts), "every state-changing route needs an attempt here"
    stranger_token = Desk(desk_app, "officer_b").token  # a real token, of another session
    for endpoint, attempt in attempts.items():
        desk = _fresh(desk_app, attempt.username)
        before, sessions = snapshot(desk_app), desk.get("/").status_code
        for token in (None, stranger_token, "not-a-token"):
            response = _post(desk, attempt, token)
            assert response.status_code == 400, (endpoint, token, response.status_code)
            assert "form has expired" in response.get_data(as_text=True)
            assert snapshot(desk_app) == before, (endpoint, token)
            assert desk.get("/").status_code == sessions, f"{endpoint}: signed in or out without a token"
        # The control: with the session's own token the same request does change something.
        response = _post(desk, attempt, desk.token)
        assert response.status_code in (200, 302), (endpoint, response.status_code)
        assert snapshot(desk_app) != before or desk.get("/").status_code != sessions, endpoint
