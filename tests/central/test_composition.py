"""The composition report a force publishes about its library."""

import json
from datetime import date
from pathlib import Path

from central.enrolment.__main__ import main
from library.composition import age_band, composition, image_age
from library.records import ReferenceRecord
from library.snapshot import Snapshot, SnapshotWriter, new_key, write_key_file
from tests.library.builders import DIM, unit_vectors

AS_OF = date(2026, 3, 1)
RECORDS = [
    ReferenceRecord("S1", "S1/a.jpg", sex="M", ethnicity_code="IC1", date_of_birth=date(2000, 3, 2),
                    image_date=date(2018, 3, 1)),   # 17 at the image (birthday the next day), image 8 years old
    ReferenceRecord("S1", "S1/b.jpg", sex="M", ethnicity_code="IC1", date_of_birth=date(2000, 3, 2),
                    image_date=date(2018, 3, 2)),   # 18 on the day
    ReferenceRecord("S2", "S2/a.jpg", sex="F", ethnicity_code="IC3", age_band="13-15",
                    image_date=date(2025, 6, 1)),   # band recorded, no date of birth; under a year old
    ReferenceRecord("S3", "S3/a.jpg", sex=None, ethnicity_code=None, date_of_birth=date(1950, 1, 1),
                    image_date=date(2010, 1, 1)),   # 60: 55+; 16 years old
    ReferenceRecord("S4", "S4/a.jpg", sex="F", ethnicity_code="IC9", image_date=date(2030, 1, 1)),  # future date
]


def _library(tmp_path: Path) -> tuple[Path, Path]:
    key = new_key()
    write_key_file(tmp_path / "k", key)
    with SnapshotWriter.create(tmp_path / "lib.db", key, embedder_id="e@1", dim=DIM, version=4) as writer:
        for record, vector in zip(RECORDS, unit_vectors(len(RECORDS)), strict=True):
            writer.add(record, vector, b"jpeg")
    return tmp_path / "lib.db", tmp_path / "k"


def test_counts_by_every_policy_category_with_unknowns(tmp_path: Path) -> None:
    path, key_file = _library(tmp_path)
    from library.snapshot import read_key_file

    report = composition(Snapshot.open(path, read_key_file(key_file)), AS_OF)

    assert (report["records"], report["subjects"], report["library_version"]) == (5, 4, 4)
    assert report["by_sex"] == {"M": 2, "F": 2, "unknown": 1}
    assert report["by_ethnicity_code"] == {**{f"IC{n}": 0 for n in range(1, 10)}, "IC1": 2, "IC3": 1, "IC9": 1,
                                           "unknown": 1}
    assert report["by_age_range"] == {"under 13": 0, "13-15": 1, "16-17": 1, "18-24": 1, "25-34": 0, "35-44": 0,
                                      "45-54": 0, "55+": 1, "unknown": 1}
    assert report["by_image_age"] == {"under 1 year": 1, "1-5 years": 0, "5-10 years": 2, "10+ years": 1,
                                      "unknown": 1}


def test_age_and_image_age_boundaries() -> None:
    assert age_band(date(2000, 1, 1), date(2012, 12, 31), None) == "under 13"
    assert age_band(date(2000, 1, 1), date(2013, 1, 1), None) == "13-15"
    assert age_band(date(2000, 1, 1), date(2055, 1, 1), None) == "55+"
    assert age_band(None, date(2013, 1, 1), "25-34") == "25-34"
    assert age_band(date(2000, 1, 1), None, None) == "unknown"
    assert image_age(date(2025, 3, 1), AS_OF) == "1-5 years"
    assert image_age(date(2025, 3, 2), AS_OF) == "under 1 year"
    assert image_age(date(2016, 3, 1), AS_OF) == "10+ years"


def test_cli_prints_the_table_and_writes_json(tmp_path: Path, capsys) -> None:
    path, key_file = _library(tmp_path)
    out = tmp_path / "composition.json"
    assert main(["composition", "--library", str(path), "--key-file", str(key_file), "--as-of", "2026-03-01",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Library version 4: 5 images of 4 subjects (as of 2026-03-01)" in printed
    assert "IC1" in printed and "55+" in printed
    assert json.loads(out.read_text())["by_sex"] == {"M": 2, "F": 2, "unknown": 1}
    assert main(["composition", "--library", str(path), "--key-file", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_keeps_the_composition_with_the_library_at_central(tmp_path: Path, capsys) -> None:
    from central.libraries.store import LibraryStore

    path, key_file = _library(tmp_path)
    database = f"sqlite:///{tmp_path / 'central.db'}"
    assert main(["composition", "--library", str(path), "--key-file", str(key_file), "--as-of", "2026-03-01",
                 "--library-id", "national-custody", "--database", database]) == 0
    store = LibraryStore(database)
    try:
        [kept] = store.compositions("national-custody")
    finally:
        store.close()
    assert kept["library_version"] == 4 and kept["composition"]["by_sex"] == {"M": 2, "F": 2, "unknown": 1}
    assert "central has no library 'national-custody' yet" in capsys.readouterr().out
