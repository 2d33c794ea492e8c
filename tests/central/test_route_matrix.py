"""Every central route, every method, every role: the table below is read against the app's own ``url_map``.

A route added without an entry here, or an entry whose route is gone, fails the first test. Central
keeps no per-person records (a peer review request or a desk is any holder of the role's to act on),
so each role is tried by two of its users, who must get the same answer: nothing is owned by one of
them. ``HEAD`` answers as ``GET`` and ``OPTIONS`` is Flask's own answer, 200 for everyone. Posts carry
the session's CSRF token and an empty form, and must change nothing. The second test sends every
state-changing route a form that would succeed, without a CSRF token and with another session's: 400,
and nothing changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from central.libraries.service import Actor, LibraryRequest
from central.web import close_stores, create_app
from core.peer_review import CandidateSummary, PeerReviewRequest
from tests.central_signin import PASSWORD, add_account, csrf_token, log_in
from tests.url_map import STATE_CHANGING, state_changing_endpoints, unlisted

ROLES = {"auditor": ("aud1", "aud2"), "peer_reviewer": ("rev1", "rev2"), "fleet_admin": ("fleet1", "fleet2"),
         "library_authoriser": ("lib1", "lib2")}
COLUMNS = ("anonymous", *ROLES)
DEVICE = "desk-matrix-01"
REQUEST_ID = "6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b"
LIBRARY = "national-custody"  # requested by someone outside the matrix, so either library authoriser may decide

# The last column is OPTIONS from a visitor: Flask's own answer, except where the sign-in guard
# (which central runs before every request of a closed blueprint) sends it to sign in first.
#                                          anon  auditor reviewer fleet  library OPTIONS
MATRIX: dict[tuple[str, str], str] = {
    ("GET", "/static/<path:filename>"):    "200  200     200      200    200      200",
    ("GET", "/static/vendor/<name>"):      "200  200     200      200    200      200",
    ("GET", "/healthz"):                   "200  200     200      200    200      200",
    # /tuf answers only a desk's fleet client certificate (tests/webserver, tests/updates), never a session.
    ("GET", "/tuf/metadata/<name>"):       "403  403     403      403    403      403",
    ("GET", "/tuf/targets/<name>"):        "403  403     403      403    403      403",
    ("GET", "/login"):                     "200  302     302      302    302      200",
    ("POST", "/login"):                    "401  401     401      401    401      200",
    ("POST", "/logout"):                   "302  302     302      302    302      200",
    ("GET", "/"):                          "302  302     302      302    302      200",
    ("GET", "/audit"):                     "302  200     403      403    403      302",
    ("GET", "/audit/export.<fmt>"):        "302  200     403      403    403      302",
    ("GET", "/audit/export/<event_type>.csv"): "302  200     403      403    403      302",
    ("GET", "/audit/cases"):               "302  200     403      403    403      302",
    ("GET", "/audit/cases/<device_id>/<case_id>"): "302  200     403      403    403      302",
    ("GET", "/audit/verify"):              "302  200     403      403    403      302",
    # An empty form: "choose the export file"; the check itself changes nothing.
    ("POST", "/audit/verify"):             "302  422     403      403    403      302",
    ("GET", "/reports"):                   "302  200     403      403    403      302",
    ("GET", "/reports/quarterly"):         "302  200     403      403    403      302",
    ("GET", "/reports/quarterly.csv"):     "302  200     403      403    403      302",
    ("GET", "/reports/annual"):            "302  200     403      403    403      302",
    ("GET", "/reports/annual.pdf"):        "302  200     403      403    403      302",
    ("GET", "/peer-review"):               "302  403     200      403    403      302",
    ("GET", "/peer-review/<request_id>"):  "302  403     200      403    403      302",
    ("POST", "/peer-review/<request_id>"): "302  403     422      403    403      302",
    # This request carries no probe and central holds no library here: the images are 404 even to a reviewer.
    ("GET", "/peer-review/<request_id>/probe.jpg"):                "302  403     404      403    403      302",
    ("GET", "/peer-review/<request_id>/reference/<int:rank>.jpg"): "302  403     404      403    403      302",
    ("GET", "/fleet"):                     "302  403     403      200    403      302",
    ("GET", "/fleet/<device_id>"):         "302  403     403      200    403      302",
    ("POST", "/fleet/<device_id>/revoke"): "302  403     403      422    403      302",
    ("GET", "/libraries"):                 "302  200     403      403    200      302",
    ("GET", "/libraries/<library_id>"):    "302  200     403      403    200      302",
    ("GET", "/libraries/new"):             "302  403     403      403    200      302",
    # Empty forms: "enter the name...", "tick the box to confirm": nothing changes.
    ("POST", "/libraries/new"):            "302  403     403      403    422      302",
    ("POST", "/libraries/<library_id>/<action>"): "302  403  403      403    422      302",
}
# Answers that differ from the row above and are wrong, kept here so the test says so when they are mended.
# (HEAD /login used to run the sign-in post branch and answer 401; mended.)
KNOWN_WRONG: dict[tuple[str, str], str] = {}


def review_request() -> PeerReviewRequest:
    return PeerReviewRequest(
        device_id=DEVICE, case_id="0A1B2C3D", custody_ref="CR-2025-00123", requested_by="officer",
        doubts="Ears differ.", ranks=(2,), library_version="v7", request_id=REQUEST_ID,
        candidates=(CandidateSummary(1, "DEMO-OBAMA", 0.612, "strong", "not_viable"),
                    CandidateSummary(2, "DEMO-BIDEN", 0.301, "weak", "needs_peer_review")))


@pytest.fixture
def matrix_app(tmp_path: Path) -> Iterator[Flask]:
    """Central with one registered desk, one pending peer review request and a (tiny) published repository."""
    repo = tmp_path / "tuf"
    for folder, name in (("metadata", "timestamp.json"), ("targets", "ab12.library-v000001.db")):
        (repo / folder).mkdir(parents=True)
        (repo / folder / name).write_bytes(b"{}")
    app = create_app(test_config={"TESTING": True, "SECRET_KEY": "test-secret-key-0123456789" * 2,
                                  "DATABASE": str(tmp_path / "central.db"), "TUF_REPO_DIR": str(repo)})
    app.extensions["central.registry"].register_device(DEVICE, "00" * 32)
    app.extensions["central.peer_reviews"].add_request(review_request())
    app.extensions["central.libraries"].request(
        Actor("requester", frozenset({"library_authoriser"})),
        LibraryRequest(LIBRARY, "National custody images", "substantive", "Custody identification.",
                       "PACE 1984 s.64A.", "RFR-AUTH-1"))
    for role, users in ROLES.items():
        for username in users:
            add_account(app, username, [role])
    yield app
    close_stores(app)


def url(rule: str) -> str:
    values = {"<path:filename>": "central.css", "<name>": "htmx.min.js", "<fmt>": "csv",
              "<request_id>": REQUEST_ID, "<device_id>": DEVICE, "<int:rank>": "2",
              "<event_type>": "search", "<case_id>": "0A1B2C3D", "<library_id>": LIBRARY, "<action>": "authorise"}
    if rule.startswith("/tuf/"):
        values["<name>"] = "timestamp.json" if "metadata" in rule else "ab12.library-v000001.db"
    query = {"/reports/quarterly": "?year=2025&quarter=1", "/reports/annual": "?year=2025"}
    return re.sub(r"<[^>]+>", lambda m: values[m.group(0)], rule) + query.get(rule.split(".")[0], "")


class Person:
    """One browser: its client and the CSRF token of its session (signed in as ``username``, or not)."""

    _browsers = 0

    def __init__(self, app: Flask, username: str | None) -> None:
        self.client: FlaskClient = app.test_client()
        # Each browser on an address of its own: the matrix's refused sign-ins would otherwise add up, by design,
        # into a delay for every sign-in from one address (core.throttle).
        Person._browsers += 1
        self.client.environ_base["REMOTE_ADDR"] = f"10.20.{Person._browsers // 250}.{Person._browsers % 250 + 1}"
        if username is not None:
            assert log_in(self.client, username).status_code == 302
        self.token = self._token(username)

    def _token(self, username: str | None) -> str:
        """A visitor's from the sign-in form; a signed-in person's from the sign-out form on their first page."""
        if username is None:
            return csrf_token(self.client.get("/login").get_data(as_text=True))
        for path in ("/audit", "/peer-review", "/fleet", "/libraries"):
            response = self.client.get(path)
            if response.status_code == 200:
                return csrf_token(response.get_data(as_text=True))
        raise AssertionError(f"{username} reaches no page with a form")


def _status(client: FlaskClient, verb: str, path: str, data: dict[str, str] | None) -> str:
    """The status of one request; the response is closed, since a served file holds its handle until then."""
    with client.open(path, method=verb, data=data) as response:
        return str(response.status_code)


def state(app: Flask) -> tuple[Any, ...]:
    """What a post could change: the review request's status, the desk's revocation and the libraries."""
    libraries = app.extensions["central.libraries"].store
    return (app.extensions["central.peer_reviews"].get(REQUEST_ID).status,
            DEVICE in app.extensions["central.registry"].revocations(),
            tuple((r.library_id, r.status) for r in libraries.all()), len(libraries.log()))


def test_the_matrix_covers_every_route_and_nothing_else(matrix_app: Flask) -> None:
    assert unlisted(matrix_app, MATRIX) == (set(), set()), "decide who may use each new route, in MATRIX"


def test_a_route_added_without_an_entry_is_caught(matrix_app: Flask) -> None:
    matrix_app.add_url_rule("/new-page", "new_page", lambda: "new", methods=["GET", "POST"])
    assert unlisted(matrix_app, MATRIX)[0] == {("GET", "/new-page"), ("POST", "/new-page")}


def test_every_role_gets_what_the_matrix_says(matrix_app: Flask) -> None:
    before = state(matrix_app)
    people = {u: Person(matrix_app, u) for u in [None, *(u for users in ROLES.values() for u in users)]}
    wrong: list[str] = []
    for (method, rule), row in MATRIX.items():
        *answers, options = row.split()
        expected = dict(zip(COLUMNS, answers, strict=True))
        for column in COLUMNS:
            for username in ROLES.get(column, (None,)):
                # Signing out ends the session the other rows still need: it is tried on a session of its own.
                person = Person(matrix_app, username) if rule == "/logout" else people[username]
                for verb in (method, "HEAD") if method == "GET" else (method,):
                    data = {"csrf_token": person.token} if verb in STATE_CHANGING else None
                    status = _status(person.client, verb, url(rule), data)
                    want = KNOWN_WRONG.get((verb, rule), expected[column])
                    if status != want:
                        wrong.append(f"{verb} {rule} as {username or 'anonymous'}: {status}, expected {want}")
        status = _status(people[None].client, "OPTIONS", url(rule), None)
        if status != options:
            wrong.append(f"OPTIONS {rule}: {status}, expected {options}")
    assert wrong == [], "\n".join(wrong)
    assert state(matrix_app) == before, "a request in the matrix changed something"


def _fresh(form: dict[str, Any]) -> dict[str, Any]:
    """The form with any file given as (bytes, name) made a new stream: the test client reads each one up."""
    import io

    return {k: (io.BytesIO(v[0]), v[1]) if isinstance(v, tuple) else v for k, v in form.items()}


def test_every_state_changing_route_refuses_a_missing_or_wrong_csrf_token(matrix_app: Flask) -> None:
    request_id = REQUEST_ID
    attempts = {  # endpoint -> (who, path, a form that succeeds with the right token)
        "auth.login": (None, "/login", {"username": "aud1", "password": PASSWORD}),
        "auth.logout": ("aud1", "/logout", {}),
        "peer_review.decide": ("rev1", f"/peer-review/{request_id}",
                               {"decision-2": "not_viable", "notes": "Different ears and nose."}),
        "fleet.revoke": ("fleet1", f"/fleet/{DEVICE}/revoke", {"reason": "Stolen from the custody suite.",
                                                               "confirm": DEVICE}),
        "audit.verify": ("aud1", "/audit/verify", {"export": (b'{"kind":"export"}\n', "export.jsonl")}),
        "library_actions.new": ("lib1", "/libraries/new", {
            "library_id": "temp-op-kestrel", "name": "Operation Kestrel", "kind": "temporary",
            "purpose_text": "Identify suspects in one operation.", "legal_basis": "PACE 1984 s.64A.",
            "authority_reference": "RFR-AUTH-2", "expiry_date": "2099-01-01", "expiry_time": "18:00"}),
        "library_actions.act": ("lib1", f"/libraries/{LIBRARY}/authorise", {
            "authoriser_name": "B. Hughes", "authoriser_rank": "Superintendent", "review_due": "2099-01-01",
            "confirm": "yes"}),
    }
    # Posts that change nothing (checking a file): the control is that the right token gets the answer.
    read_only = {"audit.verify": 200}
    changing = state_changing_endpoints(matrix_app)
    assert changing == set(attempts), "every state-changing route needs an attempt here"
    stranger_token = Person(matrix_app, "aud2").token  # a real token, of another session
    for endpoint, (username, path, form) in attempts.items():
        person = Person(matrix_app, username)
        before, signed_in = state(matrix_app), person.client.get("/audit").status_code
        for token in (None, stranger_token, "not-a-token"):
            data = {**_fresh(form), **({"csrf_token": token} if token else {})}
            response = person.client.post(path, data=data)
            assert response.status_code == 400, (endpoint, token, response.status_code)
            assert state(matrix_app) == before, (endpoint, token)
            assert person.client.get("/audit").status_code == signed_in, f"{endpoint}: signed in or out"
        # The control: with the session's own token the same request does change something.
        if endpoint in read_only:
            answer = person.client.post(path, data={**_fresh(form), "csrf_token": person.token})
            assert answer.status_code == read_only[endpoint], endpoint
            continue
        assert person.client.post(path, data={**form, "csrf_token": person.token}).status_code == 302, endpoint
        assert state(matrix_app) != before or person.client.get("/audit").status_code != signed_in, endpoint
