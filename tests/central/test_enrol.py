"""Enrolment from a folder into a real encrypted snapshot, with the real face pipeline."""

from __future__ import annotations

import csv
import json
import shutil
import stat
from datetime import date
from pathlib import Path

import pytest

from central.enrolment.__main__ import main
from central.enrolment.demo import build_demo_import
from central.enrolment.enrol import EnrolError, enrol, read_manifest
from library.snapshot import Snapshot, read_key_file
from models.quality import QualityReport

pytestmark = pytest.mark.models

CSV_TEXT = (
    "subject_ref,sex,ethnicity_code,date_of_birth,image_date\n"
    "DEMO-OBAMA,M,unknown,1961-08-04,2012-01-01\n"
    "DEMO-BIDEN,M,,1942-11-20,\n"
    "DEMO-NOBODY,F,,,\n"
)


def test_enrol_writes_a_readable_snapshot_and_reports_each_skip(
    import_dir: Path, tmp_path: Path, pipeline, face_photo
) -> None:
    csv_path = tmp_path / "subjects.csv"
    csv_path.write_text(CSV_TEXT)
    out, key_file = tmp_path / "lib.db", tmp_path / "lib.key"

    report = enrol(import_dir, out, key_file, pipeline, metadata=read_manifest(csv_path), version=3)

    assert report.enrolled == 4 and report.subjects == 3
    skipped = {o.source: o.reason for o in report.skipped}
    assert set(skipped) == {"DEMO-BIDEN/notes.txt", "DEMO-BLANK/wall.jpg", "loose.jpg"}
    assert "not a photo" in skipped["DEMO-BIDEN/notes.txt"]
    assert "No face was found" in skipped["DEMO-BLANK/wall.jpg"]
    assert "subject folder" in skipped["loose.jpg"]
    [flagged] = report.flagged
    assert flagged.source == "DEMO-GROUP/group.jpg" and "faces found" in (flagged.reason or "")
    assert any("DEMO-GROUP" in w and "no CSV row" in w for w in report.warnings)
    assert any("DEMO-NOBODY" in w and "no image" in w for w in report.warnings)
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


def test_bad_header_stops_the_run(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("subject,sex\nA,M\n")
    with pytest.raises(EnrolError, match="first line must be"):
        read_manifest(path)


def test_bad_rows_are_rejected_one_by_one_with_line_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        "subject_ref,sex,ethnicity_code,date_of_birth,image_date,age_band,image\n"
        "A,M,IC1,1980-01-31,2010-05-01,,\n"
        "B,X,,,,,\n"
        "C,F,IC12,,,,\n"
        "D,F,,31/01/1980,,,\n"
        "E,F,,,,,\n"
        "E,M,,,,,\n"
        "F,F,,,,,\n"
        "G,f,ic3,,2031-01-01,,\n"
        "H,F,,1990-01-01,1989-01-01,,\n"
        "I,,,,,teenager,\n"
        "J,,,,,18-24,\n"
        "J,,,,2015-01-01,,a.jpg\n"
        "K,M,,,\n",
    )
    manifest = read_manifest(path, today=date(2026, 1, 1))
    reasons = {(r.line, r.subject_ref): r.reason for r in manifest.rejected}
    assert reasons == {
        (3, "B"): "sex 'X' is not one of M, F or unknown",
        (4, "C"): "ethnicity_code 'IC12' is not one of IC1, IC2, IC3, IC4, IC5, IC6, IC7, IC8, IC9 or unknown",
        (5, "D"): "date_of_birth '31/01/1980' is not a date like 1980-01-31",
        (7, "E"): "subject E appears twice (first on line 6)",
        (9, "G"): "image_date 2031-01-01 is in the future",
        (10, "H"): "image_date 1989-01-01 is before date_of_birth 1990-01-01",
        (11, "I"): "age_band 'teenager' is not one of under 13, 13-15, 16-17, 18-24, 25-34, 35-44, 45-54, 55+ "
                   "or unknown",
        (14, "K"): "expected 7 columns, found 5",
    }
    assert sorted(manifest.subjects) == ["A", "E", "F", "J"]
    assert manifest.subjects["A"].date_of_birth == date(1980, 1, 31)
    assert manifest.lookup("J", "J/a.jpg").image_date == date(2015, 1, 1)  # the image's own row
    assert manifest.lookup("J", "J/b.jpg").age_band == "18-24"
    assert manifest.lookup("B", "B/x.jpg").line == 3  # a rejected row keeps its images out


def test_rejected_row_skips_its_images_and_a_fixed_manifest_resumes(
    import_dir: Path, tmp_path: Path, pipeline
) -> None:
    out, key_file, csv_path = tmp_path / "lib.db", tmp_path / "lib.key", tmp_path / "m.csv"
    csv_path.write_text("subject_ref,sex,ethnicity_code,date_of_birth,image_date\n"
                        "DEMO-OBAMA,M,IC9,1961-08-04,\nDEMO-BIDEN,male,,,\n")

    class Interrupting:
        """The real pipeline, with an operator pressing Ctrl-C at the third image it is given."""

        embedder_id, dim = pipeline.embedder_id, pipeline.dim

        def __init__(self) -> None:
            self.calls = 0

        def process(self, data: bytes, face_index: int | None = None):
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return pipeline.process(data, face_index)

    with pytest.raises(KeyboardInterrupt):
        enrol(import_dir, out, key_file, Interrupting(), metadata=read_manifest(csv_path), progress=False)
    assert not out.exists() and (tmp_path / "lib.db.building").exists() and key_file.exists()

    with pytest.raises(EnrolError, match="--resume"):
        enrol(import_dir, out, key_file, pipeline, metadata=read_manifest(csv_path), progress=False)
    csv_path.write_text("subject_ref,sex,ethnicity_code,date_of_birth,image_date\n"
                        "DEMO-OBAMA,M,IC9,1961-08-04,\nDEMO-BIDEN,M,,,\n")
    report = enrol(import_dir, out, key_file, pipeline, metadata=read_manifest(csv_path), resume=True,
                   progress=False)

    # First run: DEMO-BIDEN's row rejected (not processed), DEMO-BLANK no face, DEMO-GROUP enrolled, then Ctrl-C.
    assert report.resumed == 1
    assert report.enrolled == 4 and report.subjects == 3
    assert {o.source for o in report.outcomes} == {"DEMO-BIDEN/biden.jpg", "DEMO-BIDEN/notes.txt",
                                                   "DEMO-BLANK/wall.jpg", "DEMO-OBAMA/obama.jpg",
                                                   "DEMO-OBAMA/obama2.jpg", "loose.jpg"}
    snapshot = Snapshot.open(out, read_key_file(key_file))
    try:
        records = {r.source: r for r in snapshot.records()}
        assert set(records) == {"DEMO-BIDEN/biden.jpg", "DEMO-GROUP/group.jpg", "DEMO-OBAMA/obama.jpg",
                                "DEMO-OBAMA/obama2.jpg"}
        assert records["DEMO-OBAMA/obama.jpg"].ethnicity_code == "IC9"
        assert records["DEMO-BIDEN/biden.jpg"].sex == "M"
        quality = QualityReport.from_dict(json.loads(records["DEMO-OBAMA/obama.jpg"].quality or "{}"))
        assert quality.verdict in ("pass", "warn", "fail")
    finally:
        snapshot.close()


def test_a_rejected_row_is_reported_and_the_run_carries_on(import_dir: Path, tmp_path: Path, pipeline) -> None:
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("subject_ref,sex,ethnicity_code,date_of_birth,image_date\n"
                        "DEMO-OBAMA,M,IC10,,\nDEMO-BIDEN,M,IC1,,\n")
    report = enrol(import_dir, tmp_path / "lib.db", tmp_path / "lib.key", pipeline,
                   metadata=read_manifest(csv_path), progress=False)
    [row] = report.rejected_rows
    assert row.line == 2 and "IC10" in row.reason
    skipped = {o.source: o.reason for o in report.skipped}
    assert "CSV row (line 2) was rejected" in (skipped["DEMO-OBAMA/obama.jpg"] or "")
    assert report.enrolled == 2  # DEMO-BIDEN and DEMO-GROUP


def test_cli_prints_summary_and_refuses_existing_output(
    import_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, key_file = tmp_path / "cli.db", tmp_path / "cli.key"
    args = ["enrol", "--images", str(import_dir), "--out", str(out), "--key-file", str(key_file)]
    assert main(args) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "enrol [##############################] 7/7 100%" in captured.err and "images/s" in captured.err
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
    assert read_manifest(demo.csv_path).rejected == []  # the CSV it writes is one enrol accepts
    with pytest.raises(EnrolError, match="already has files"):
        build_demo_import(tmp_path / "demo")


def test_next_version_reuses_the_key_and_ships_as_a_delta(
    import_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "lineage.key"
    v1, v2 = tmp_path / "v1.db", tmp_path / "v2.db"
    assert main(["enrol", "--images", str(import_dir), "--out", str(v1), "--key-file", str(key_file),
                 "--no-progress"]) == 0
    (import_dir / "DEMO-GROUP" / "group.jpg").unlink()
    next_version = ["enrol", "--images", str(import_dir), "--out", str(v2), "--key-file", str(key_file),
                    "--version", "2", "--no-progress"]
    assert main(next_version) == 2
    assert "--reuse-key" in capsys.readouterr().err
    assert main([*next_version, "--reuse-key"]) == 0
    assert main(["delta", "--base", str(v1), "--target", str(v2), "--key-file", str(key_file),
                 "--out", str(tmp_path / "d")]) == 0
    assert "version 1 -> 2, 0 added, 1 removed" in capsys.readouterr().out


def test_a_build_with_a_library_id_keeps_its_composition_with_the_library(
    import_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from central.libraries.store import LibraryStore

    database = f"sqlite:///{tmp_path / 'central.db'}"
    out, key_file = tmp_path / "kestrel.db", tmp_path / "kestrel.key"
    assert main(["enrol", "--images", str(import_dir), "--out", str(out), "--key-file", str(key_file),
                 "--no-progress", "--version", "3", "--library-id", "temp-op-kestrel", "--database", database]) == 0
    assert "Composition of temp-op-kestrel version 3 kept in central's database." in capsys.readouterr().out
    store = LibraryStore(database)
    try:
        [kept] = store.compositions("temp-op-kestrel")
    finally:
        store.close()
    assert kept["library_version"] == 3 and kept["composition"]["records"] == 4
    assert sum(kept["composition"]["by_sex"].values()) == 4
