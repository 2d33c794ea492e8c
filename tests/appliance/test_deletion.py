"""No viable match: the probe image, its template and its crops are destroyed at once.

The proof decrypts every page of the device database and of its WAL (live
rows, free pages and slack) and searches them, the data folder, new files in
the temp directory and everything logged, for distinctive byte runs of the
uploaded JPEG, its float32 template and the face thumbnail derived from it.
A control scan before the case closes finds them, so the scanner can see them.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
import time
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.storage.cases import BIOMETRIC_TABLES
from library import cipher
from tests.appliance.desk_helpers import CONFIRM, add_users, approved_case, fast_kdf
from tests.appliance.sqlcipher_scan import database_plaintext, wal_plaintext


@pytest.fixture
def desk_app(app, monkeypatch):
    fast_kdf(monkeypatch)
    add_users(app)
    return app


def unique_probe(face_photo) -> bytes:
    """obama3.jpg re-encoded with a random pixel nudge: bytes that exist nowhere else on this machine."""
    image = cv2.imread(str(face_photo("obama3.jpg")))
    rng = np.random.default_rng()
    image[0:4, 0:4] = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 93])[1].tobytes()


def runs(data: bytes, width: int, count: int = 6) -> list[bytes]:
    """Byte runs spread through the middle of ``data`` (skipping headers shared with other files)."""
    start, stop = len(data) // 4, 3 * len(data) // 4
    step = max(1, (stop - start - width) // count)
    return [data[i:i + width] for i in range(start, stop - width, step)][:count]


def places_holding(needles: list[bytes], data_dir: Path, key: bytes, log_text: str, since: float) -> list[str]:
    found = []
    haystacks = {
        "device.db (decrypted pages)": database_plaintext(data_dir / "device.db", key),
        "device.db-wal (decrypted frames)": wal_plaintext(data_dir / "device.db-wal", key),
    }
    for path in data_dir.rglob("*"):
        if path.is_file():
            haystacks[f"raw {path.name}"] = path.read_bytes()
    # os.walk skips folders that vanish under it (another process's temporary folder), where rglob raised.
    temp_files = (Path(folder) / name for folder, _, names in os.walk(tempfile.gettempdir()) for name in names)
    for path in temp_files:
        try:
            if path.is_file() and path.stat().st_mtime >= since and path.stat().st_size < 200 * 2**20:
                haystacks[f"temp file {path}"] = path.read_bytes()
        except OSError:
            continue
    for where, blob in haystacks.items():
        if any(n in blob for n in needles):
            found.append(where)
    encodings = [n.hex() for n in needles] + [base64.b64encode(n).decode()[:40] for n in needles]
    if any(n.decode("latin-1") in log_text for n in needles) or any(e in log_text for e in encodings):
        found.append("log output")
    return found


def test_no_viable_match_destroys_probe_template_and_crops_everywhere(desk_app, face_photo, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    since = time.time() - 1
    data_dir = tmp_path / "device"
    key = cipher.read_key_file(data_dir / "device.key")
    service = desk_app.extensions["desk"].cases

    desk, case_id = approved_case(desk_app)
    jpeg = unique_probe(face_photo)
    assert desk.upload(case_id, jpeg).status_code == 200
    probe = service.probe(case_id)
    thumbnail = desk.get(f"/cases/{case_id}/probe.jpg").data
    assert thumbnail == probe.thumbnail
    needles = runs(probe.image, 48) + runs(probe.template, 32) + runs(thumbnail, 32)

    # Control: while the case is open, the scanner does find the biometrics in the decrypted database.
    desk_app.extensions["desk"].db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert "device.db (decrypted pages)" in places_holding(needles, data_dir, key, caplog.text, since)

    assert desk.post(f"/cases/{case_id}/search").status_code == 302
    assert desk.get(f"/cases/{case_id}/candidates").status_code == 200
    ranks = [c.rank for c in service.candidates(case_id)]
    response = desk.post(f"/cases/{case_id}/adjudicate", {f"decision-{r}": "not_viable" for r in ranks} | CONFIRM)
    assert response.status_code == 302

    page = desk.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "Closed: no viable match" in page and "were destroyed" in page
    assert places_holding(needles, data_dir, key, caplog.text, since) == []
    # Logically gone too, and the images are no longer served.
    conn = desk_app.extensions["desk"].db.conn
    for table in BIOMETRIC_TABLES:
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE case_id = ?", (case_id,)).fetchone()[0] == 0
    assert desk.get(f"/cases/{case_id}/probe.jpg").status_code == 404
    # Only the audit record remains: who, when, why, outcome.
    deletion = [p.payload for p in desk_app.extensions["desk"].outbox.pending(limit=500)
                if b'"type":"deletion"' in p.payload]
    assert len(deletion) == 1 and case_id.encode() in deletion[0] and b'"destroyed"' in deletion[0]


def test_withdrawing_a_case_destroys_its_photo(desk_app, face_photo, tmp_path):
    data_dir = tmp_path / "device"
    key = cipher.read_key_file(data_dir / "device.key")
    desk, case_id = approved_case(desk_app)
    jpeg = unique_probe(face_photo)
    desk.upload(case_id, jpeg)
    stored = desk_app.extensions["desk"].cases.probe(case_id).image
    assert desk.post(f"/cases/{case_id}/withdraw", CONFIRM).status_code == 302
    assert "Withdrawn" in desk.get(f"/cases/{case_id}").get_data(as_text=True)
    plain = database_plaintext(data_dir / "device.db", key) + wal_plaintext(data_dir / "device.db-wal", key)
    assert not any(n in plain for n in runs(stored, 48) + runs(jpeg, 48))


def gps_tagged_jpeg(face_photo) -> tuple[bytes, list[bytes]]:
    """A face photo carrying EXIF with a GPS position, a camera serial number and a maker note."""
    from PIL import Image

    image = Image.open(face_photo("obama3.jpg"))
    exif = Image.Exif()
    exif[0x010F] = "ACME-CUSTODY-CAM"                     # Make
    exif[0xA431] = "SERIAL-7731-XQZ"                      # BodySerialNumber
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 26.46), 3: "W", 4: (0.0, 7.0, 39.9)}  # GPS: a street in London
    out = BytesIO()
    image.save(out, "JPEG", quality=92, exif=exif, comment=b"CUSTODY-SUITE-B-DESK-4")
    data = out.getvalue()
    markers = [b"ACME-CUSTODY-CAM", b"SERIAL-7731-XQZ", b"CUSTODY-SUITE-B-DESK-4", b"Exif\x00\x00"]
    assert all(m in data for m in markers)  # the control: the upload does carry them
    return data, markers


def test_the_stored_probe_keeps_pixels_and_no_metadata(desk_app, face_photo, tmp_path):
    # The upload's EXIF (GPS position, camera serial) used to be stored with the probe (fails on the old code).
    data_dir = tmp_path / "device"
    key = cipher.read_key_file(data_dir / "device.key")
    desk, case_id = approved_case(desk_app)
    upload, markers = gps_tagged_jpeg(face_photo)
    assert desk.upload(case_id, upload).status_code == 200
    stored = desk_app.extensions["desk"].cases.probe(case_id).image
    assert stored.startswith(b"\x89PNG")
    desk_app.extensions["desk"].db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    plain = database_plaintext(data_dir / "device.db", key) + wal_plaintext(data_dir / "device.db-wal", key)
    assert runs(stored, 48)[0] in plain  # the scanner sees the stored probe
    assert [m for m in markers if m in plain] == []


def test_multi_face_crops_are_destroyed_once_a_face_is_chosen(desk_app, group_photo):
    service = desk_app.extensions["desk"].cases
    desk, case_id = approved_case(desk_app)
    html = desk.upload(case_id, group_photo.read_bytes()).get_data(as_text=True)
    assert "Which face is the detainee?" in html
    crops = service.store.crop_count(case_id)
    assert crops >= 2
    assert desk.get(f"/cases/{case_id}/faces/1.jpg").status_code == 200
    response = desk.post(f"/cases/{case_id}/face", {"face_index": "1"}, htmx=True)
    assert response.status_code == 200 and "Search the reference library" in response.get_data(as_text=True)
    assert service.store.crop_count(case_id) == 0
    assert service.probe(case_id).face_index == 1
