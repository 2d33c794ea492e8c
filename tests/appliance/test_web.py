"""The desk search page, driven through Flask's test client with the real models and library."""

from __future__ import annotations

import re

import cv2
import numpy as np


def subjects_in_order(html: str) -> list[str]:
    return re.findall(r'<tr class="candidate" data-subject="([^"]+)"', html)


def test_search_page_is_labelled_and_carries_the_lead_notice(client):
    page = client.get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert '<label for="probe">' in html and 'id="probe"' in html
    assert "Intelligence lead only" in html
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_probe_of_enrolled_person_ranks_them_first(app, post_probe, face_photo):
    response = post_probe(face_photo("obama3.jpg").read_bytes())
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    order = subjects_in_order(html)
    assert order[:2] == ["DEMO-OBAMA", "DEMO-OBAMA"]
    assert len(order) == min(10, app.extensions["rfr"]["library"].current.count)
    assert "not evidence" in html


def test_full_page_without_htmx(post_probe, face_photo):
    response = post_probe(face_photo("biden.jpg").read_bytes(), htmx=False)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in html
    assert subjects_in_order(html)[0] == "DEMO-BIDEN"


def test_candidate_image_is_served_from_the_library(client, post_probe, face_photo):
    html = post_probe(face_photo("obama3.jpg").read_bytes()).get_data(as_text=True)
    src = re.search(r'<img src="(/library/\d+/records/\d+/image)"', html).group(1)
    image = client.get(src)
    assert image.status_code == 200 and image.mimetype == "image/jpeg"
    assert image.headers["Cache-Control"] == "no-store"
    assert cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR) is not None
    version = src.split("/")[2]
    assert client.get(f"/library/{version}/records/999999/image").status_code == 404
    assert client.get(f"/library/{int(version) + 1}/records/1/image").status_code == 410


def test_several_faces_ask_which_one_then_search_it(post_probe, group_photo):
    data = group_photo.read_bytes()
    first = post_probe(data)
    html = first.get_data(as_text=True)
    assert first.status_code == 200
    assert "Which face is the detainee?" in html
    assert subjects_in_order(html) == []
    choices = re.findall(r'name="face_index" value="(\d+)"', html)
    assert len(choices) >= 2
    second = post_probe(data, face_index=choices[1])
    assert len(subjects_in_order(second.get_data(as_text=True))) > 0
    bad = post_probe(data, face_index="99")
    assert bad.status_code == 400 and "Choose one of the faces" in bad.get_data(as_text=True)


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


def _huge_header_jpeg() -> bytes:
    """A small valid JPEG whose frame header claims 20000 x 20000 pixels (a decompression bomb)."""
    data = bytearray(_jpeg(np.full((16, 16, 3), 128, np.uint8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (20000).to_bytes(2, "big") + (20000).to_bytes(2, "big")
    return bytes(data)


def test_bad_inputs_get_a_clear_message_and_a_4xx(post_probe, face_photo):
    truncated = face_photo("obama3.jpg").read_bytes()
    cases = {
        "not an image": b"%PDF-1.4 this is not a photo",
        "truncated": truncated[: len(truncated) // 2],
        "huge": _huge_header_jpeg(),
        "no face": _jpeg(np.full((480, 640, 3), 90, np.uint8)),
    }
    for name, data in cases.items():
        response = post_probe(data)
        html = response.get_data(as_text=True)
        assert 400 <= response.status_code < 500, name
        assert 'role="alert"' in html, name
        assert "Traceback" not in html and "Error" not in html, name


def test_no_file_and_missing_csrf_are_refused_politely(client, post_probe):
    assert "Choose a photo" in post_probe(b"", filename="").get_data(as_text=True)
    response = client.post("/search", data={}, headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert "form has expired" in response.get_data(as_text=True)


def test_oversized_upload_is_refused_with_413(post_probe):
    response = post_probe(b"\xff\xd8" + b"\0" * (21 * 1024 * 1024))
    assert response.status_code == 413
    assert "larger than 20 MB" in response.get_data(as_text=True)


def test_htmx_is_served_locally(client):
    response = client.get("/vendor/htmx.min.js")
    assert response.status_code == 200 and b"htmx" in response.data[:2000]


def test_every_search_and_refusal_is_queued_for_audit(app, post_probe, face_photo):
    outbox = app.extensions["rfr"]["outbox"]
    before = outbox.depth()
    post_probe(face_photo("obama3.jpg").read_bytes())
    post_probe(b"not an image")
    pending = outbox.pending(limit=100)
    assert outbox.depth() == before + 2
    payloads = [p.payload for p in pending[-2:]]
    assert b'"type":"search"' in payloads[0] and b'"type":"search_refused"' in payloads[1]
    for payload in payloads:
        assert b"template" not in payload and b"thumbnail" not in payload
