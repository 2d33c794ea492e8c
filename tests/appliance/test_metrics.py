"""The desk's /metrics: only with the scrape token, and its numbers move as people use the desk.

A real desk (real pipeline, library, SQLCipher database) through Flask's test client: a refused scrape, a
search, a photo with no face and a wrong password, each seen in the scrape, with no label that could name
a case, a detainee or a member of staff.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from appliance.web import create_app
from tests.appliance.conftest import appliance_settings
from tests.appliance.desk_helpers import SUBMISSION, Desk, add_users, approved_case, fast_kdf, to_candidates
from tests.metrics_scrape import label_problems, samples, value
from webserver.metrics import token_sha256

TOKEN = "desk-scrape-token-4b1d9c0e7f2a8d6b5c3e1f0a9b8c7d6e"


@pytest.fixture
def metrics_app(tmp_path, demo_library, pipeline, monkeypatch):
    fast_kdf(monkeypatch)
    settings = appliance_settings(tmp_path, demo_library, metrics={"token_sha256": token_sha256(TOKEN)})
    app = create_app(settings, pipeline=pipeline, start_sync=False)
    app.config["TESTING"] = True
    add_users(app)
    yield app
    app.extensions["desk"].close()
    pipeline.on_stage = None  # the session's pipeline is shared with other tests


def scrape(app, token: str = TOKEN):
    response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return samples(response.get_data(as_text=True))


def test_metrics_are_refused_without_the_token(metrics_app):
    client = metrics_app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": TOKEN}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert b"rfr_desk" not in response.data
    assert client.post("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405
    # A desk without [metrics] serves no /metrics at all: the path is just another page behind sign-in.


def test_a_desk_without_metrics_settings_serves_none(app):
    response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code in (302, 404) and b"rfr_desk" not in response.data


def test_search_refusals_and_sign_in_failures_move_the_numbers(metrics_app, face_photo):
    before = scrape(metrics_app)
    assert value(before, "rfr_desk_library_version") >= 1
    assert value(before, "rfr_desk_library_records") > 0
    pipeline = metrics_app.extensions["desk"].pipeline
    grades = {"detector": pipeline.detector.manifest.licence.grade,
              "embedder": pipeline.embedder_manifest.licence.grade}
    assert value(before, "rfr_desk_model_info", role="embedder", model=pipeline.embedder_id,
                 grade=grades["embedder"]) == 1
    assert value(before, "rfr_desk_model_info", role="detector", model=pipeline.detector.manifest.ref,
                 grade=grades["detector"]) == 1
    assert value(before, "rfr_desk_evaluation_grade_models") == list(grades.values()).count("evaluation")
    assert value(before, "rfr_desk_search_stage_seconds_count", stage="search") == 0

    officer, case_id = approved_case(metrics_app)
    html = to_candidates(officer, case_id, face_photo("obama3.jpg").read_bytes())
    assert "DEMO-OBAMA" in html
    blank = cv2.imencode(".jpg", np.full((480, 640, 3), 128, np.uint8))[1].tobytes()
    _other, second = approved_case(metrics_app)
    assert _other.upload(second, blank).status_code in (200, 422)
    Desk(metrics_app).login("officer", "not the password")

    after = scrape(metrics_app)
    assert value(after, "rfr_desk_searches_total", outcome="candidates_shown") == 1
    for stage in ("decode", "detect", "embed", "search"):
        assert value(after, "rfr_desk_search_stage_seconds_count", stage=stage) >= 1, stage
        assert value(after, "rfr_desk_search_stage_seconds_sum", stage=stage) > 0, stage
    assert value(after, "rfr_desk_refusals_total", event="search_refused", reason="no_face") == 1
    assert value(after, "rfr_desk_signin_failures_total", reason="wrong_password") == 1
    assert value(after, "rfr_desk_audit_events_total", type="search", outcome="candidates_shown") == 1
    # Nothing is acknowledged without central: the outbox grows with every event and its oldest one ages.
    assert value(after, "rfr_desk_outbox_depth") > value(before, "rfr_desk_outbox_depth")
    assert value(after, "rfr_desk_outbox_oldest_unacknowledged_age_seconds") > 0
    assert value(after, "rfr_desk_audit_head_seq") > value(before, "rfr_desk_audit_head_seq")
    assert value(after, "rfr_desk_withdrawn") == 0

    problems = label_problems(after, forbidden=(case_id, second, SUBMISSION["custody_ref"], "officer", "inspector",
                                                "obama"))
    assert problems == []
