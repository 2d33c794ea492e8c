"""The demo's two libraries go through the real governance service: requested by one account, authorised by
another, granted to the demo desk; the temporary one expires and the next run makes a new one."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from central.enrolment import demo_libraries
from central.libraries import manifest
from central.libraries.store import LibraryStore

T0 = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)


def test_both_libraries_are_authorised_by_a_second_account_and_the_temporary_one_is_renewed_after_expiry(
        database_url: str) -> None:
    first = demo_libraries.set_up(database_url, "desk-demo-01", now=T0)
    assert first.temporary_is_new and first.temporary_expires_at == T0 + timedelta(minutes=30)
    again = demo_libraries.set_up(database_url, "desk-demo-01", now=T0 + timedelta(minutes=10))
    assert (again.temporary_id, again.temporary_is_new) == (first.temporary_id, False)
    later = demo_libraries.set_up(database_url, "desk-demo-01", now=T0 + timedelta(minutes=31))
    assert later.temporary_is_new and later.temporary_id != first.temporary_id
    store = LibraryStore(database_url)
    try:
        for library_id in ("national", first.temporary_id, later.temporary_id):
            record = store.get(library_id)
            assert record is not None and record.status == "authorised"
            assert (record.requested_by, record.authorised_account) == ("demo-requester", "demo-authoriser")
            assert [g["device_id"] for g in store.grants(library_id)] == ["desk-demo-01"]
        assert store.get(first.temporary_id).kind == "temporary"  # type: ignore[union-attr]
        assert store.verify_log() == []
        signed = manifest.build(store, "desk-demo-01", T0 + timedelta(minutes=10))
        listed = {lib.library_id: lib for lib in signed.libraries}
        assert set(listed) >= {"national", first.temporary_id}
        assert listed["national"].default and not listed[first.temporary_id].default
        assert listed[first.temporary_id].expires_at == first.temporary_expires_at
    finally:
        store.close()


def test_subset_keeps_the_probe_subject_and_a_few_others(tmp_path: Path) -> None:
    source = tmp_path / "import"
    rows = [["subject_ref", "sex", "ethnicity_code", "date_of_birth", "image_date", "image"]]
    for ref in ("DEMO-BIDEN", "DEMO-F001", "DEMO-F002", "DEMO-OBAMA"):
        (source / "images" / ref).mkdir(parents=True)
        photo = np.zeros((40, 60, 3), np.uint8)
        photo[:, :30] = 255  # left half white
        assert cv2.imwrite(str(source / "images" / ref / "a.png"), photo)
        rows.append([ref, "M", "unknown", "", "", "a.png"])
    with (source / "subjects.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    assert demo_libraries.subset(source, tmp_path / "out", subjects=2) == 2
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["DEMO-BIDEN", "DEMO-OBAMA"]
    with (tmp_path / "out" / "subjects.csv").open(newline="") as f:
        assert [r[0] for r in csv.reader(f)] == ["subject_ref", "DEMO-BIDEN", "DEMO-OBAMA"]
    mirrored = cv2.imread(str(tmp_path / "out" / "images" / "DEMO-OBAMA" / "a.png"))
    assert mirrored[:, 30:].min() == 255 and mirrored[:, :30].max() == 0  # not the same image as the library's
