"""The candidates page says how many records were searched and what each band means at that size."""

from __future__ import annotations

import html as html_lib
import json
import re

import cv2
import pytest

from models.calibration import band_at_library_size, bands_of
from supply.pinned import member
from tests.appliance.desk_helpers import add_users, approved_case, fast_kdf, to_candidates


@pytest.fixture
def desk_app(app, monkeypatch):
    fast_kdf(monkeypatch)
    add_users(app)
    return app


def test_candidates_page_states_records_searched_and_each_band_at_that_size(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    html = to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    page = html_lib.unescape(re.sub(r"<[^>]+>", "", html))  # the words a screen reader reads
    runtime = desk_app.extensions["desk"]
    records = runtime.library.current.count
    # The demo library: three named photos and every face the default detector finds in two group photos.
    group_faces = sum(len(runtime.pipeline.detect(cv2.imread(str(member("vladmandic-face-api",
                                                                       f"package/demo/sample{n}.jpg")))))
                      for n in (2, 3))
    assert group_faces >= 2 and records == 3 + group_faces
    assert f"This face was compared with {records:,} records" in page
    calibration = runtime.pipeline.embedder_manifest.calibration
    stated = [band_at_library_size(b, records) for b in bands_of(calibration) if b.name != "below threshold"]
    assert len(stated) == 3
    for sentence in stated:
        assert sentence in page
    # A band's per-comparison rate times the records: the weak band (FAR ~1e-2) over a handful of records is
    # reached by a different person in about one search in 1 / (FAR x records), e.g. 1 in 14 for 7 records.
    weak = next(b for b in bands_of(calibration) if b.name == "weak")
    one_in = round(1 / (weak.far * records))
    assert 5 < one_in < 100, "the library is small enough that the weak band is a one-in-N search"
    assert f"Weak similarity: in a search of {records} records, a different person is expected to score this high " \
           f"in about 1 search in {one_in}." in page


def test_after_a_library_update_the_count_searched_is_not_guessed(desk_app, face_photo):
    desk, case_id = approved_case(desk_app)
    to_candidates(desk, case_id, face_photo("obama3.jpg").read_bytes())
    runtime = desk_app.extensions["desk"]
    searched = runtime.cases.get(case_id).libraries_searched
    runtime.cases.store.update(case_id, libraries_searched=json.dumps([{**lib, "version": lib["version"] + 1}
                                                                       for lib in searched]))
    page = desk.get(f"/cases/{case_id}/candidates").get_data(as_text=True)
    assert "How many records were searched" in page
    assert "Not available: a reference library searched has been updated or removed since this search." in page
    assert "This face was compared with" not in page
