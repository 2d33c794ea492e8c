"""The /libraries pages: two people through the real forms, with a real TUF repository signing each desk's manifest.

What is asserted is what the staff see (the page's words, the status) and what the desks would receive (the
signed manifest targets), never the handlers' internals.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from central.publish.repository import TufRepository, init_repository
from central.web import close_stores, create_app
from core.library_authorisation import AuthorisationManifest
from tests.central_signin import csrf_token, signed_in

DESK = "desk-01"
SECRET = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"


@pytest.fixture
def repo(tmp_path: Path) -> TufRepository:
    return init_repository(tmp_path / "repo", tmp_path / "offline-root-keys")


@pytest.fixture
def app(tmp_path: Path, repo: TufRepository) -> Iterator[Flask]:
    app = create_app(test_config={"TESTING": True, "SECRET_KEY": SECRET, "DATABASE": str(tmp_path / "central.db"),
                                  "TUF_REPO_DIR": str(repo.repo_dir)})
    app.extensions["central.registry"].register_device(DESK, "00" * 32)
    yield app
    close_stores(app)


def post(client: FlaskClient, path: str, **form: str):  # type: ignore[no-untyped-def]
    token = csrf_token(client.get("/libraries").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **form})


def text(response) -> str:  # type: ignore[no-untyped-def]
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def request_library(client: FlaskClient, library_id: str = "temp-op-kestrel", kind: str = "temporary",
                    expiry: str = "2099-01-01"):  # type: ignore[no-untyped-def]
    return post(client, "/libraries/new", library_id=library_id, name="Operation Kestrel", kind=kind,
                purpose_text="Identify suspects arrested in Operation Kestrel.", legal_basis="PACE 1984 s.64A.",
                authority_reference="RFR-AUTH-2026-014", expiry_date=expiry, expiry_time="18:00", default="yes")


def manifests(app: Flask) -> dict[int, AuthorisationManifest]:
    repo = TufRepository(Path(app.config["TUF_REPO_DIR"]))
    return {info.manifest_version: AuthorisationManifest.parse(repo.target_path(name).read_bytes())
            for name, info in repo.published_authorisations().items() if info.device_id == DESK}


def test_two_people_authorise_and_each_change_reaches_the_desks_manifest(app: Flask) -> None:
    alice = signed_in(app, "alice", ["library_authoriser"])
    bob = signed_in(app, "bob", ["library_authoriser"])
    assert request_library(alice).status_code == 302

    # The requester is told, and cannot get round it by posting the form.
    page = text(alice.get("/libraries/temp-op-kestrel"))
    assert "You requested this library, so you cannot authorise or refuse it" in page
    refused = post(alice, "/libraries/temp-op-kestrel/authorise", authoriser_name="A. Jones",
                   authoriser_rank="Chief Inspector", review_due="2099-01-01", confirm="yes")
    assert refused.status_code == 422 and "two-person rule" in text(refused)

    review = (date.today() + timedelta(days=90)).isoformat()
    assert post(bob, "/libraries/temp-op-kestrel/authorise", authoriser_name="B. Hughes",
                authoriser_rank="Superintendent", review_due=review).status_code == 422  # not confirmed
    assert post(bob, "/libraries/temp-op-kestrel/authorise", authoriser_name="B. Hughes",
                authoriser_rank="Superintendent", review_due=review, confirm="yes").status_code == 302
    assert manifests(app) == {}  # authorised, but granted to no desk yet
    page = text(bob.get(post(bob, "/libraries/temp-op-kestrel/grant", device_id="*",
                             confirm="yes").headers["Location"]))
    assert "New authorisation manifests signed for desk-01." in page
    first = manifests(app)[1]
    [kestrel] = first.libraries
    assert (kestrel.library_id, kestrel.status, kestrel.authorised_by, kestrel.authorised_rank) == \
        ("temp-op-kestrel", "authorised", "B. Hughes", "Superintendent")
    assert kestrel.expires_at is not None and kestrel.expires_at.year == 2099

    assert post(alice, "/libraries/temp-op-kestrel/suspend", reason="Operation paused.", confirm="yes") \
        .status_code == 302
    assert list(manifests(app)) == [2] and manifests(app)[2].libraries[0].status == "suspended"

    not_confirmed = post(alice, "/libraries/temp-op-kestrel/retire", reason="Closed.", confirm="yes")
    assert not_confirmed.status_code == 422 and "Type retire temp-op-kestrel to confirm" in text(not_confirmed)
    assert post(alice, "/libraries/temp-op-kestrel/retire", reason="Operation closed.",
                confirm="retire temp-op-kestrel").status_code == 302
    third = manifests(app)[3]
    assert third.libraries == [] and third.retired == ["temp-op-kestrel"]

    page = text(alice.get("/libraries/temp-op-kestrel"))
    history = page.split('id="history"')[1]
    for action, who in (("request", "alice"), ("authorise", "bob"), ("grant", "bob"), ("suspend", "alice"),
                        ("retire", "alice")):
        assert f"<td>{action}</td><td>{who}</td>" in history
    assert history.count("manifest published") == 3
    assert app.extensions["central.libraries"].store.verify_log() == []


def test_a_temporary_library_without_expiry_is_refused_on_the_form(app: Flask) -> None:
    alice = signed_in(app, "alice", ["library_authoriser"])
    response = request_library(alice, expiry="")
    assert response.status_code == 422 and "A temporary library must have an expiry" in text(response)
    assert "Operation Kestrel" in text(response)  # what was typed is kept
    assert app.extensions["central.libraries"].store.all() == []


def test_auditors_read_but_see_no_actions(app: Flask) -> None:
    alice = signed_in(app, "alice", ["library_authoriser"])
    request_library(alice, "national-custody", "substantive", "")
    app.extensions["central.libraries"].store.record_composition("national-custody", 2, {
        "library_version": 2, "records": 5, "subjects": 4, "as_of": "2026-03-01",
        "by_sex": {"M": 2, "F": 2, "unknown": 1}, "by_ethnicity_code": {"IC1": 5}})
    auditor = signed_in(app, "carol", ["auditor"])
    page = text(auditor.get("/libraries/national-custody"))
    assert "Authorisation record" in page and "RFR-AUTH-2026-014" in page and "<h2>Actions</h2>" not in page
    assert "Version 2: 5 images of 4 subjects" in page
    assert "<td>Sex</td><td>M</td><td>2</td>" in page and "<td>Ethnicity code</td><td>IC1</td><td>5</td>" in page
    index = text(auditor.get("/libraries"))
    assert "national-custody" in index and "All 2 entries of the library log were checked" in index
    app.extensions["central.libraries"].store._execute("UPDATE library_log SET actor = 'mallory' WHERE id = 1")
    assert "The library log has been altered." in text(auditor.get("/libraries"))
    assert post(auditor, "/libraries/national-custody/suspend", reason="x", confirm="yes").status_code == 403
    assert app.extensions["central.libraries"].store.get("national-custody").status == "requested"


def test_a_failed_publication_keeps_the_change_and_says_what_to_do(tmp_path: Path) -> None:
    app = create_app(test_config={"TESTING": True, "SECRET_KEY": SECRET, "DATABASE": str(tmp_path / "central.db"),
                                  "TUF_REPO_DIR": str(tmp_path / "not-a-repository")})
    (tmp_path / "not-a-repository").mkdir()
    try:
        alice, bob = signed_in(app, "alice", ["library_authoriser"]), signed_in(app, "bob", ["library_authoriser"])
        request_library(alice, "national-custody", "substantive", "")
        post(bob, "/libraries/national-custody/authorise", authoriser_name="B. Hughes",
             authoriser_rank="Superintendent", review_due="2099-01-01", confirm="yes")
        response = post(bob, "/libraries/national-custody/grant", device_id=DESK, confirm="yes")
        page = text(bob.get(response.headers["Location"]))
        assert "could not be signed" in page and "publish-authorisations" in page
        store = app.extensions["central.libraries"].store
        assert [g["device_id"] for g in store.grants("national-custody")] == [DESK]
        assert [e.action for e in store.log("*manifests*")][-1] == "publish_failed"
    finally:
        close_stores(app)
