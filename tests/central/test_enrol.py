"""Enrolment from a folder into a real encrypted snapshot, with the real face pipeline."""

from __future__ import annotations

import csv
import shutil
import stat
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import pytest

from central.library.__main__ import main
from central.library.demo import build_demo_import
from central.library.enrol import EnrolError, enrol, read_metadata
from library.snapshot import Snapshot, read_key_file

pytestmark = pytest.mark.models

CSV_TEXT = (
    "subject_ref,sex,ethnicity_code,date_of_birth,image_date\n"
    "DEMO-OBAMA,M,unknown,1961-08-04,2012-01-01\n"
    "DEMO-BIDEN,M,,1942-11-20,\n"
    "DEMO-NOBODY,F,,,\n"
)


def _blank_jpeg() -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((240, 240, 3), 128, dtype=np.uint8))
    assert ok
    return data.tobytes()


@pytest.fixture
def import_dir(tmp_path: Path, face_photo, group_photo) -> Path:
    root = tmp_path / "import"
    for subject, name in [("DEMO-OBAMA", "obama.jpg"), ("DEMO-OBAMA", "obama2.jpg"), ("DEMO-BIDEN", "biden.jpg")]:
        (root / subject).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(face_photo(name), root / subject / name)
    (root / "DEMO-BIDEN" / "notes.txt").write_text("not a photo")
    (root / "DEMO-BLANK").mkdir()
    (root / "DEMO-BLANK" / "wall.jpg").write_bytes(_blank_jpeg())
    (root / "DEMO-GROUP").mkdir()
    shutil.copyfile(group_photo, root / "DEMO-GROUP" / "group.jpg")
    (root / "DEMO-OBAMA" / ".DS_Store").write_bytes(b"\0\0")
    shutil.copyfile(face_photo("obama3.jpg"), root / "loose.jpg")
    return root


def test_enrol_writes_a_readable_snapshot_and_reports_each_skip(
    import_dir: Path, tmp_path: Path, pipeline, face_photo
) -> None:
    csv_path = tmp_path / "subjects.csv"
    csv_path.write_text(CSV_TEXT)
    out, key_file = tmp_path / "lib.db", tmp_path / "lib.key"

    report = enrol(import_dir, out, key_file, pipeline, metadata=read_metadata(csv_path), version=3)

    assert report.enrolled == 4 and report.subjects == 3
    skipped = {o.source: o.reason for o in report.skipped}
    assert set(skipped) == {"DEMO-BIDEN/notes.txt", "DEMO-BLANK/wall.jpg", "loose.jpg"}
    assert "not a photo" in skipped["DEMO-BIDEN/notes.txt"]
    assert "No face was found" in skipped["DEMO-BLANK/wall.jpg"]
    assert "subject folder" in skipped["loose.jpg"]
    [flagged] = report.flagged
    assert flagged.source == "DEMO-GROUP/group.jpg" and "faces found" in (flagged.reason or "")
    assert any("DEMO-GROUP" in w and "no CSV row" in w for w in report.warnings)
    assert any("DEMO-NOBODY" in w for w in report.warnings)
    assert report.images_per_second > 0

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    snapshot = Snapshot.open(out, read_key_file(key_file), expected_embedder=pipeline.embedder_id)
    try:
        assert snapshot.count == 4
        assert snapshot.version == 3
        [best, *_] = snapshot.search(pipeline.process(face_photo("obama3.jpg").read_bytes()).template, k=3)
        assert best.record.subject_ref == "DEMO-OBAMA"
        assert best.record.date_of_birth == date(1961, 8, 4)
        assert best.record.sex == "M"
        biden = next(c for c in snapshot.search(pipeline.process(face_photo("biden.jpg").read_bytes()).template)
                     if c.record.subject_ref == "DEMO-BIDEN")
        assert biden.record.ethnicity_code is None and biden.record.image_date is None
        assert biden.record.source == "DEMO-BIDEN/biden.jpg"
    finally:
        snapshot.close()


def test_enrol_never_overwrites(import_dir: Path, tmp_path: Path, pipeline) -> None:
    out, key_file = tmp_path / "lib.db", tmp_path / "lib.key"
    key_file.write_bytes(b"an older key protecting another snapshot")
    with pytest.raises(EnrolError, match="already exists"):
        enrol(import_dir, out, key_file, pipeline)
    assert not out.exists()
    assert key_file.read_bytes() == b"an older key protecting another snapshot"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("subject,sex\nA,M\n", "first line must be"),
        ("subject_ref,sex,ethnicity_code,date_of_birth,image_date\nA,M,,31/01/1980,\n", "line 2: date_of_birth"),
        ("subject_ref,sex,ethnicity_code,date_of_birth,image_date\nA,M,,\n", "line 2: expected 5 columns"),
        ("subject_ref,sex,ethnicity_code,date_of_birth,image_date\nA,,,,\nA,,,,\n", "line 3: subject A appears twice"),
    ],
)
def test_bad_csv_names_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(EnrolError, match=message):
        read_metadata(path)


def test_cli_prints_summary_and_refuses_existing_output(
    import_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, key_file = tmp_path / "cli.db", tmp_path / "cli.key"
    args = ["enrol", "--images", str(import_dir), "--out", str(out), "--key-file", str(key_file)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Enrolled 4 images of 3 subjects" in printed
    assert "images/s" in printed
    assert "Skipped (3):" in printed and "DEMO-BLANK/wall.jpg: No face was found" in printed
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err


def test_demo_import_builds_an_enrollable_folder(tmp_path: Path, face_photo) -> None:
    faces = tmp_path / "faces"
    for identity, names in [("alice", ["obama.jpg", "obama2.jpg", "obama3.jpg"]), ("solo", ["biden.jpg"])]:
        (faces / identity).mkdir(parents=True)
        for i, name in enumerate(names):
            shutil.copyfile(face_photo(name), faces / identity / f"{i}.jpg")

    demo = build_demo_import(tmp_path / "demo", faces_dir=faces)

    images = demo.images_dir
    assert sorted(p.name for p in (images / "DEMO-OBAMA").iterdir()) == ["obama.jpg", "obama2.jpg"]
    assert [p.name for p in (images / "DEMO-BIDEN").iterdir()] == ["biden.jpg"]
    assert not list(images.rglob("obama3.jpg"))
    distractors = sorted(p.name for p in images.iterdir() if p.name.startswith("DEMO-F"))
    assert len(distractors) >= 10 and distractors[0] == "DEMO-F001"
    assert sorted(p.name for p in (images / "DEV-alice").iterdir()) == ["0.jpg", "1.jpg"]
    assert not (images / "DEV-solo").exists()
    assert {p.name for p in demo.probes} == {"obama3.jpg", "DEV-alice.jpg"}
    with open(demo.csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["subject_ref"] for r in rows} == {p.name for p in images.iterdir()}
    assert next(r for r in rows if r["subject_ref"] == "DEMO-F001")["sex"] == "unknown"
    read_metadata(demo.csv_path)  # the CSV it writes is one enrol accepts
    with pytest.raises(EnrolError, match="already has files"):
        build_demo_import(tmp_path / "demo")
