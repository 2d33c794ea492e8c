"""Reports by reference library (issue #18): searches by library kind and name from the desks' search events,
each library's authorisation and recorded composition, and the temporary libraries created and destroyed."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from central.audit.store import AuditStore
from central.reports import quarterly
from central.web import close_stores, create_app
from core.events import AuditEvent
from tests.central.library_register_rows import RegisterRows
from tests.central_signin import signed_in

SECRET = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"
SECRET_WORDS = ("Detainee John Doe", "CUST/2026/000777", "PC Alice Smith")


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def composition(version: int, records: int, female: int) -> dict[str, Any]:
    return {"library_version": version, "records": records, "subjects": records - 10,
            "by_sex": {"M": records - female, "F": female, "unknown": 0},
            "by_ethnicity_code": {"IC1": records, "unknown": 0}, "by_age_range": {"18-24": records, "unknown": 0},
            "by_image_age": {"under 1 year": records, "unknown": 0}}


class Desks:
    """Audit events stored as ingest stores them, numbered per desk."""

    def __init__(self, store: AuditStore) -> None:
        self.store, self.seq = store, {}

    def add(self, device: str, type: str, outcome: str, when: str, **details: Any) -> None:
        self.seq[device] = self.seq.get(device, 0) + 1
        event = AuditEvent(device_id=device, seq=self.seq[device], type=type, actor="PC Alice Smith", outcome=outcome,
                           details=details, occurred_at=when, event_id=str(uuid.uuid4()))
        assert self.store.insert(event, datetime.now(UTC))


def lib(library_id: str, name: str, kind: str, version: int) -> dict[str, Any]:
    return {"library_id": library_id, "name": name, "kind": kind, "version": version}


NATIONAL = "Custody images (substantive)"
KESTREL = "Operation Kestrel"


def seed(store: AuditStore, database: str) -> None:
    register = RegisterRows(database)
    try:
        register.library("national", NATIONAL, authorised_at=t("2025-01-06T09:00"), review_due=t("2027-01-06T00:00"))
        register.library("op-kestrel", KESTREL, kind="temporary", authorised_at=t("2026-02-01T10:00"),
                         expires_at=t("2026-03-20T12:00"), status="authorised", review_due=t("2026-03-01T00:00"),
                         authority_reference="OP/KESTREL/2026/1")
        register.library("legacy-2019", "Legacy 2019 import", status="retired", authorised_at=t("2019-01-01T00:00"),
                         retired_at=t("2025-06-01T00:00"))
        register.library("regional", "Regional wanted persons", authorised_at=t("2026-05-01T00:00"))
        register.library("op-heron", "Operation Heron", kind="temporary", status="requested",
                         expires_at=t("2026-12-01T00:00"))
        register.composition("national", 3, t("2025-12-01T00:00"), composition(3, 120, 30))
        register.composition("national", 4, t("2026-05-02T00:00"), composition(4, 150, 40))
        register.composition("op-kestrel", 1, t("2026-02-01T09:00"), composition(1, 14, 2))
    finally:
        register.close()
    d = Desks(store)
    case = {"case_id": "CASE1", "custody_ref": "CUST/2026/000777"}
    d.add("desk-a", "search", "candidates_shown", "2026-02-10T10:00:00+00:00", library_version=3,
          libraries=[lib("national", NATIONAL, "substantive", 3), lib("op-kestrel", KESTREL, "temporary", 1)], **case)
    d.add("desk-a", "search", "no_candidates", "2026-03-25T10:00:00+00:00", library_version=4,
          libraries=[lib("national", NATIONAL, "substantive", 4)], **case)
    # A desk from before libraries were named: its search counts under the national library.
    d.add("desk-b", "search", "candidates_shown", "2026-02-11T10:00:00+00:00", library_version=3, **case)
    # A library id central has no record of, carrying text where an id belongs: counted as "other", never shown.
    d.add("desk-b", "search", "candidates_shown", "2026-02-12T10:00:00+00:00",
          libraries=[lib("Detainee John Doe", "Detainee John Doe", "temporary", 2)], **case)
    d.add("desk-b", "search", "candidates_shown", "2026-02-13T10:00:00+00:00",
          libraries=[lib("op-kestrel", KESTREL, "temporary", 1)], **case)
    # Both desks destroyed their copy at the expiry (desk-b a day late: it was offline; its own clock).
    for device, when in (("desk-a", "2026-03-20T12:00:01+00:00"), ("desk-b", "2026-03-20T12:00:05+00:00")):
        d.add(device, "library_destroyed", "destroyed", when, library_id="op-kestrel", kind="temporary",
              version=1, reason="expired", proof={"pages_scanned": 12})
    # Refusals of issue #18: a chosen library refused, an officer without a current authorisation, a manifest.
    d.add("desk-a", "search_refused", "library_not_authorised", "2026-03-21T10:00:00+00:00",
          library_id="op-kestrel", refusal="expired", **case)
    d.add("desk-b", "search_refused", "not_authorised_user", "2026-03-22T10:00:00+00:00", **case)
    d.add("desk-b", "authorisation_refused", "refused", "2026-03-23T10:00:00+00:00", reason="for another desk")
    # In Q2: not in the Q1 report.
    d.add("desk-a", "search", "candidates_shown", "2026-05-10T10:00:00+00:00",
          libraries=[lib("national", NATIONAL, "substantive", 4), lib("regional", "Regional", "substantive", 1)])


@pytest.fixture
def report_app(tmp_path: Path) -> Iterator[Flask]:
    database = str(tmp_path / "central.db")
    app = create_app(test_config={"TESTING": True, "SECRET_KEY": SECRET, "DATABASE": database})
    seed(app.extensions["central.audit_store"], database)
    yield app
    close_stores(app)


def test_quarter_breaks_searches_down_by_library_kind_and_name(report_app: Flask) -> None:
    report = quarterly.build(report_app.extensions["central.audit_store"], 2026, 1)
    lb = report.libraries
    assert report.figures.searches == 5  # each search once in the main figures
    assert lb.searches_by_kind == {"substantive": 3, "temporary": 2, "unknown": 1}
    assert lb.searches_without_library_record == 1
    got = {x.library_id: (x.name, x.kind, x.searches, x.devices, x.versions) for x in lb.libraries}
    assert got == {"national": (NATIONAL, "substantive", 3, 2, (3, 4)),
                   "op-kestrel": (KESTREL, "temporary", 2, 2, (1,)),
                   "other": ("A library central has no record of", "unknown", 1, 1, (2,))}
    # Not in force in Q1: retired in 2025, authorised in May, never authorised.
    national = next(x for x in lb.libraries if x.library_id == "national")
    assert national.composition is not None and national.composition.library_version == 3  # v4 was built in May
    assert [c.library_id for c in lb.created] == ["op-kestrel"]
    [gone] = lb.destroyed
    assert (gone.library_id, gone.desks_destroyed, gone.destructions) == ("op-kestrel", 2,
                                                                          {"expired": 2, "retired": 0, "other": 0})
    assert {k: v for k, v in report.figures.refusals.items() if v} == {
        "search_refused_library_not_authorised": 1, "search_refused_not_authorised_user": 1,
        "authorisation_refused": 1}
    rows = list(csv.reader(io.StringIO(quarterly.to_csv(report))))
    assert ["2026-Q1", "searches_by_library", "op-kestrel", "2"] in rows
    assert ["2026-Q1", "searches_by_library_kind", "temporary", "2"] in rows
    assert ["2026-Q1", "library_destroyed_desks", "op-kestrel", "2"] in rows
    assert ["2026-Q1", "searches_by_library", "other", "1"] in rows
    assert not any(word in quarterly.to_csv(report) for word in SECRET_WORDS)


def test_quarterly_page_names_libraries_with_authorisation_and_composition(report_app: Flask) -> None:
    page = signed_in(report_app).get("/reports/quarterly?year=2026&quarter=1").get_data(as_text=True)
    table = page.split('id="searches-by-library"')[1].split("</table>")[0]
    row = table.split('data-library="op-kestrel"')[1].split("</tr>")[0]
    assert KESTREL in row and '<td class="count">2</td>' in row and "v1" in row
    assert "Legacy 2019" not in page and "Regional wanted persons" not in page and "Operation Heron" not in page
    kestrel = page.split(f'<h3 id="lib-2">{KESTREL}</h3>')[1].split("</section>")[0]
    assert "from 2026-02-01 until it expires on 2026-03-20" in kestrel
    assert "Supt Okafor (superintendent)" in kestrel and "OP/KESTREL/2026/1" in kestrel
    assert re.search(r"version 1 was built on 2026-02-01:\s+14 images of 4 people", kestrel)
    created = page.split('id="libraries-created"')[1].split("</table>")[0]
    assert KESTREL in created and "2026-03-20" in created
    destroyed = page.split('id="libraries-destroyed"')[1].split("</table>")[0]
    assert "expired 2026-03-20" in destroyed and '<td class="count">2</td>' in destroyed
    assert not any(word in page for word in SECRET_WORDS)


def test_annual_report_and_pdf_give_libraries_without_naming_temporary_ones(report_app: Flask, tmp_path: Path
                                                                            ) -> None:
    client = signed_in(report_app)
    page = client.get("/reports/annual?year=2026").get_data(as_text=True)
    table = page.split('id="searches-by-library"')[1].split("</table>")[0]
    assert "A temporary library authorised on 2026-02-01" in table and KESTREL not in page
    assert "Regional wanted persons" in table  # in force from May
    national = table.split('data-library="national"')[1].split("</tr>")[0]
    assert '<td class="count">fewer than 5</td>' in national  # four searches of it in 2026: suppressed
    assert "Supt Okafor" not in page and "Superintendent" in page  # the public report gives the rank only
    assert re.search(r"version 4 was built on 2026-05-02:\s+150 images of 140 people", page)
    assert not any(word in page for word in SECRET_WORDS)
    response = client.get("/reports/annual.pdf?year=2026")
    assert response.status_code == 200 and response.get_data().startswith(b"%PDF-")
    if shutil.which("pdftotext"):
        (tmp_path / "annual.pdf").write_bytes(response.get_data())
        text = subprocess.run(["pdftotext", str(tmp_path / "annual.pdf"), "-"], check=True, capture_output=True,
                              text=True).stdout
        assert "Searches by reference library" in text and "Temporary libraries created and destroyed" in text
        assert KESTREL not in text and "A temporary library authorised on 2026-02-01" in text
