"""Oversight reports: seeded audit events -> hand-computed figures, pages, CSV, PDF, and no personal data."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import shutil
import subprocess
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from central.audit.store import AuditStore
from central.reports import disclosure, periods, quarterly
from central.reports.aggregation import VOCABULARIES, Figures, LibraryUse, aggregate
from central.reports.annual import composition_date
from central.web import close_stores, create_app
from core.events import AuditEvent
from library.snapshot import new_key, write_key_file
from tests.central_signin import signed_in
from tests.library.builders import build, record, unit_vectors

# Strings a report must never carry: usernames, custody references, case ids, free text, names in details.
IDENTIFIERS = ("PC Alice Smith", "Insp Bob Jones", "Supt Carol White", "TA Dan Brown", "CUST/2026/000123",
               "CUST/2026/000456", "CASEA1", "CASEA2", "CASEB0", "John Doe", "Jane Roe", "jsmith")


class Seeder:
    """Events stored the way ingest stores them, with per-device sequence numbers and identifiable text."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store
        self.seq: dict[str, int] = {}
        self.event_ids: list[str] = []

    def add(self, device: str, type: str, outcome: str, when: str = "2026-02-10T10:00:00+00:00",
            actor: str = "PC Alice Smith", **details: Any) -> None:
        self.seq[device] = self.seq.get(device, 0) + 1
        event = AuditEvent(device_id=device, seq=self.seq[device], type=type, actor=actor, outcome=outcome,
                           details=details, occurred_at=when, event_id=str(uuid.uuid4()))
        self.event_ids.append(event.event_id)
        assert self.store.insert(event, datetime.now(UTC))

    def case(self, device: str, case_id: str, custody_ref: str = "CUST/2026/000123") -> dict[str, Any]:
        return {"case_id": case_id, "custody_ref": custody_ref}


def seed(store: AuditStore) -> Seeder:
    s = Seeder(store)
    a = "desk-a"
    s.add(a, "login", "ok", username="jsmith")
    # A1: concealing identity, adult, no viable match.
    c = s.case(a, "CASEA1")
    s.add(a, "submission", "awaiting_approval", reason="concealing_identity", age_band="18_plus", **c)
    s.add(a, "approval", "approved", actor="Insp Bob Jones", approver_role="inspector",
          required_approval="inspector", **c)
    s.add(a, "search", "candidates_shown", library_version=3, age_band="18_plus", apparent_under_18=False,
          apparent_under_16=False, embedder="m@1", **c)
    s.add(a, "candidate_viewed", "shown", candidates=10, **c)
    s.add(a, "adjudication", "recorded", viable=0, not_viable=10, needs_peer_review=0, **c)
    s.add(a, "deletion", "destroyed", why="no viable match", destroyed={"probe": 1}, **c)
    # A2: false details, apparently 13-15; one refused approval; peer reviewed; viable match.
    c = s.case(a, "CASEA2", "CUST/2026/000456")
    s.add(a, "submission", "awaiting_approval", reason="false_details", age_band="13_15", **c)
    s.add(a, "approval", "refused", actor="PC Alice Smith", rule="PC Alice Smith may not approve John Doe", **c)
    s.add(a, "approval", "approved", actor="Supt Carol White", approver_role="superintendent",
          required_approval="inspector", **c)
    s.add(a, "search", "candidates_shown", library_version=3, age_band="13_15", apparent_under_18=True,
          apparent_under_16=True, **c)
    s.add(a, "adjudication", "recorded", viable=0, not_viable=9, needs_peer_review=1, **c)
    s.add(a, "peer_review", "requested", channel="local", candidates=1, **c)
    s.add(a, "peer_review", "completed", actor="TA Dan Brown", channel="local", viable=1, **c)
    s.add(a, "match_report", "recorded", candidate_rank=1, **c)
    s.add(a, "deletion", "partial_viable_match_retained", destroyed={"template": 1}, **c)
    # Its retention period ends inside the quarter: counted on its own, and the case stays a viable match.
    s.add(a, "deletion", "destroyed", why="retention period ended", destroyed=["probe image"], **c)
    # A3: concealing, under 13, technical advice, superintendent; waiting for peer review at quarter end.
    c = s.case(a, "CASEA3")
    s.add(a, "submission", "awaiting_approval", reason="concealing_identity", age_band="under_13", **c)
    s.add(a, "approval", "technical_advice_recorded", actor="TA Dan Brown", **c)
    s.add(a, "approval", "approved", actor="Supt Carol White", approver_role="superintendent",
          required_approval="superintendent", **c)
    s.add(a, "search", "candidates_shown", library_version=4, age_band="under_13", apparent_under_18=True,
          apparent_under_16=True, **c)
    s.add(a, "peer_review", "requested", channel="local", candidates=2, **c)
    s.add(a, "search_refused", "policy", rule="Jane Roe is not the case owner", case_id="CASEA9",
          custody_ref="CUST/2026/000123")
    # A4: no submission in the period; identifiable junk where vocabulary words belong. At 00:30 BST on
    # 1 April, which is 23:30 UTC on 31 March: inside Q1.
    s.add(a, "search", "candidates_shown", when="2026-04-01T00:30:00+01:00", library_version="John Doe",
          age_band="John Doe", apparent_under_18="Jane Roe", apparent_under_16="yes", case_id="CASEA4",
          custody_ref="CUST/2026/000123", notes="Detainee John Doe, DOB 01/02/1990")
    # A5: exactly the start of Q2: outside Q1.
    s.add(a, "search", "candidates_shown", when="2026-04-01T00:00:00+00:00", library_version=4,
          age_band="18_plus", apparent_under_18=False, apparent_under_16=False, case_id="CASEA5")

    b = "desk-b"
    # B0: submitted in Q4 2025, approved and searched in Q1; peer review found no viable candidate.
    c = s.case(b, "CASEB0")
    s.add(b, "submission", "awaiting_approval", when="2025-12-31T23:00:00+00:00", reason="false_details",
          age_band="18_plus", **c)
    s.add(b, "approval", "approved", when="2026-01-01T00:00:00+00:00", actor="Insp Bob Jones",
          approver_role="inspector", required_approval="inspector", **c)
    s.add(b, "search", "candidates_shown", library_version=3, age_band="18_plus", apparent_under_18=False,
          apparent_under_16=False, **c)
    s.add(b, "adjudication", "recorded", viable=0, not_viable=9, needs_peer_review=1, **c)
    s.add(b, "peer_review", "requested", channel="local", candidates=1, **c)
    s.add(b, "peer_review", "completed", actor="TA Dan Brown", channel="local", viable=0, **c)
    s.add(b, "deletion", "destroyed", why="no viable match", **c)
    # B1: false details, age unknown; still open; a refused peer review.
    c = s.case(b, "CASEB1")
    s.add(b, "submission", "awaiting_approval", reason="false_details", age_band="unknown", **c)
    s.add(b, "approval", "approved", actor="Insp Bob Jones", approver_role="inspector",
          required_approval="inspector", **c)
    s.add(b, "search", "candidates_shown", library_version=4, age_band="unknown", apparent_under_18=None,
          apparent_under_16=None, **c)
    s.add(b, "peer_review", "refused", actor="PC Alice Smith", rule="PC Alice Smith may not review", **c)
    # B2: concealing, 16-17; photo failed quality; withdrawn.
    c = s.case(b, "CASEB2")
    s.add(b, "submission", "awaiting_approval", reason="concealing_identity", age_band="16_17", **c)
    s.add(b, "approval", "approved", actor="Insp Bob Jones", approver_role="inspector",
          required_approval="inspector", **c)
    s.add(b, "search_refused", "probe_quality", **c)
    s.add(b, "deletion", "destroyed", why="withdrawn", **c)
    s.add(b, "library_update", "ok", actor="system", library_version=4, previous_version=3, kind="delta",
          target="lib-v4.delta", digest="ab" * 32)
    return s


@pytest.fixture
def seeded(app_store: AuditStore) -> Seeder:
    return seed(app_store)


def q1(store: AuditStore, devices: tuple[str, ...] = ()) -> Figures:
    return quarterly.build(store, 2026, 1, devices).figures


def test_quarter_figures_match_the_hand_count(app_store: AuditStore, seeded: Seeder) -> None:
    f = q1(app_store)
    assert (f.devices, f.searches, f.submissions, f.approvals) == (2, 6, 5, 6)
    assert f.search_outcomes == {"viable_match": 1, "no_viable_match": 2, "awaiting_peer_review": 1, "open": 2}
    assert f.searches_peer_reviewed == 3
    assert f.searches_by_reason == {"concealing_identity": 2, "false_details": 2, "not_in_period": 2}
    assert f.searches_by_age_band == {"under_13": 1, "13_15": 1, "16_17": 0, "18_plus": 2, "unknown": 1,
                                      "not_recorded": 1}
    assert f.apparent_under_18 == {"yes": 2, "no": 2, "unknown": 2}
    assert f.apparent_under_16 == {"yes": 2, "no": 2, "unknown": 2}
    assert f.approvals_by_rank == {"inspector": 4, "superintendent": 2, "other": 0}
    assert f.approvals_by_required_rank == {"inspector": 5, "superintendent": 1, "other": 0}
    assert f.approvals_by_reason == {"concealing_identity": 3, "false_details": 2, "not_in_period": 1}
    assert f.technical_advice == 1
    assert (f.peer_reviews_requested, f.peer_reviews_completed) == (3, 2)
    assert f.peer_review_results == {"viable_confirmed": 1, "no_viable": 1}
    assert f.match_reports == 1
    assert f.deletions == {"no_viable_match": 2, "withdrawn": 1, "refused": 0, "viable_match_partial": 1,
                           "retention_expired": 1, "other": 0}
    assert {k: v for k, v in f.refusals.items() if v} == {
        "approval_refused": 1, "peer_review_refused": 1, "search_refused_policy": 1,
        "search_refused_probe_quality": 1}
    # A4's library version was not a number: it is left out of the version table, not guessed.
    assert f.library_versions == (LibraryUse(3, 3, 2), LibraryUse(4, 2, 2))
    assert f.library_updates == 1


def test_device_selection_and_period_boundaries(app_store: AuditStore, seeded: Seeder) -> None:
    b = q1(app_store, ("desk-b",))
    assert (b.devices, b.searches, b.approvals, b.submissions) == (1, 2, 3, 2)
    assert b.search_outcomes == {"viable_match": 0, "no_viable_match": 1, "awaiting_peer_review": 0, "open": 1}
    both = q1(app_store, ("desk-a", "desk-b"))
    assert both == q1(app_store)
    # Q2 holds only the search at exactly 00:00 UTC on 1 April; Q4 2025 only B0's submission.
    q2 = quarterly.build(app_store, 2026, 2).figures
    assert (q2.searches, q2.submissions, q2.search_outcomes["open"]) == (1, 0, 1)
    q4 = quarterly.build(app_store, 2025, 4).figures
    assert (q4.searches, q4.submissions, q4.searches_by_reason["not_in_period"]) == (0, 1, 0)


def test_periods() -> None:
    assert periods.quarter(2026, 4).start == datetime(2026, 10, 1, tzinfo=UTC)
    assert periods.quarter(2026, 4).end == datetime(2027, 1, 1, tzinfo=UTC)
    assert periods.quarter(2026, 1).label == "2026 Q1" and periods.quarter(2026, 1).slug == "2026-Q1"
    assert periods.year(2026).end == datetime(2027, 1, 1, tzinfo=UTC)
    with pytest.raises(periods.PeriodError, match="1, 2, 3 or 4"):
        periods.quarter(2026, 5)
    with pytest.raises(periods.PeriodError, match="between"):
        periods.year(1999)
    assert composition_date(periods.year(2025), date(2026, 3, 1)) == date(2025, 12, 31)
    assert composition_date(periods.year(2026), date(2026, 3, 1)) == date(2026, 3, 1)


def test_figures_refuse_any_key_outside_the_vocabulary() -> None:
    good = aggregate([])
    with pytest.raises(ValueError, match="exactly the keys"):
        dataclasses.replace(good, refusals={**good.refusals, "PC Alice Smith": 1})
    with pytest.raises(ValueError, match="non-negative integers"):
        dataclasses.replace(good, searches="John Doe")  # type: ignore[arg-type]


def _strings(value: object) -> list[str]:
    """Every string anywhere in a report object: field names excluded, keys and values included."""
    if isinstance(value, str):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [s for f in dataclasses.fields(value) for s in _strings(getattr(value, f.name))]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple | set):
        return [s for v in value for s in _strings(v)]
    return []


def test_no_report_field_can_carry_a_personal_identifier(client: FlaskClient, app_store: AuditStore,
                                                         seeded: Seeder) -> None:
    figures = q1(app_store)
    vocabulary = {word for words in VOCABULARIES.values() for word in words}
    assert set(_strings(figures)) <= vocabulary
    for f in dataclasses.fields(Figures):  # the schema: integers, count tables and version use only
        assert f.type in ("int", "dict[str, int]", "tuple[LibraryUse, ...]"), f
    outputs = [
        quarterly.to_csv(quarterly.build(app_store, 2026, 1)),
        client.get("/reports/quarterly?year=2026&quarter=1").get_data(as_text=True),
        client.get("/reports/quarterly?year=2026&quarter=1&device=desk-a").get_data(as_text=True),
        client.get("/reports/annual?year=2026").get_data(as_text=True),
    ]
    forbidden = (*IDENTIFIERS, *seeded.event_ids, "CUST/")
    for text in outputs:
        for needle in forbidden:
            assert needle not in text


def test_quarterly_csv_has_every_figure_with_fixed_columns(client: FlaskClient, seeded: Seeder) -> None:
    response = client.get("/reports/quarterly.csv?year=2026&quarter=1")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert 'filename="rfr-quarterly-2026-Q1.csv"' in response.headers["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert list(table[0]) == ["period", "figure", "category", "count"]
    assert {r["period"] for r in table} == {"2026-Q1"}
    got = {(r["figure"], r["category"]): int(r["count"]) for r in table}
    assert got[("searches", "total")] == 6
    assert got[("search_outcomes", "no_viable_match")] == 2
    assert got[("approvals_by_rank", "superintendent")] == 2
    assert got[("apparent_under_16", "yes")] == 2
    assert got[("library_version_searches", "v3")] == 3 and got[("library_version_devices", "v4")] == 2
    assert got[("refusals", "request_refused")] == 0  # every category present, zeros included


def test_quarterly_page_shows_tables_and_charts(client: FlaskClient, seeded: Seeder) -> None:
    response = client.get("/reports/quarterly?year=2026&quarter=1&device=desk-a&device=desk-b")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "<title>Quarterly review 2026 Q1" in page
    assert "the desks desk-a, desk-b" in page
    assert "Approvals by the approver&#39;s rank" in page
    assert page.count('src="data:image/png;base64,') >= 5
    assert 'alt="Bar chart: Searches by outcome' in page
    assert "img-src 'self' data:" in response.headers["Content-Security-Policy"]
    assert "/reports/quarterly.csv?year=2026&amp;quarter=1&amp;device=desk-a&amp;device=desk-b" in page


def test_bad_parameters_are_friendly_400s(client: FlaskClient) -> None:
    assert "1, 2, 3 or 4" in client.get("/reports/quarterly?year=2026&quarter=7").get_data(as_text=True)
    assert client.get("/reports/quarterly?year=2026&quarter=7").status_code == 400
    assert client.get("/reports/quarterly?year=twenty&quarter=1").status_code == 400
    assert client.get("/reports/quarterly?year=2026&quarter=1&device=../etc").status_code == 400
    assert client.get("/reports/annual?year=MMXXVI").status_code == 400  # no year at all: the last complete one
    index = client.get("/reports")
    assert index.status_code == 200 and "Annual public report" in index.get_data(as_text=True)


def test_small_counts_are_suppressed_in_public() -> None:
    assert [disclosure.shown(n) for n in (0, 1, 4, 5, 1234)] == ["0", "fewer than 5", "fewer than 5", "5",
                                                                   "1,234"]


@pytest.fixture
def libraries(tmp_path: Path) -> list[dict[str, Any]]:
    key = new_key()
    write_key_file(tmp_path / "lib.key", key)
    vectors = unit_vectors(8)
    changed = {i: record(i, sex="F", ethnicity_code="IC3") for i in range(6)}
    build(tmp_path / "lib.db", key, {i: vectors[i] for i in range(8)}, version=7, changed=changed)
    return [{"name": "Custody images", "path": str(tmp_path / "lib.db"), "key_file": str(tmp_path / "lib.key")},
            {"name": "Missing library", "path": str(tmp_path / "gone.db"), "key_file": str(tmp_path / "lib.key")}]


@pytest.fixture
def public_app(tmp_path: Path, libraries: list[dict[str, Any]]) -> Flask:
    app = create_app(test_config={"TESTING": True, "SECRET_KEY": "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k",
                                  "DATABASE": str(tmp_path / "central.db"), "REPORT_LIBRARIES": libraries})
    seed(app.extensions["central.audit_store"])
    yield app
    close_stores(app)


def _cell(page: str, tag: str, label: str, value: str) -> bool:
    """A table row with ``label`` in its first cell and ``value`` in its count cell."""
    return re.search(rf"<{tag}[^>]*>{re.escape(label)}</{tag}>\s*<td class=\"count\">{re.escape(value)}</td>",
                     page) is not None


def test_annual_page_suppresses_small_counts_and_gives_library_composition(public_app: Flask, tmp_path: Path
                                                                           ) -> None:
    page = signed_in(public_app).get("/reports/annual?year=2026").get_data(as_text=True)
    assert "annual report 2026" in page
    assert disclosure.RULE.replace('"', "&#34;") in page
    # Seven searches in 2026 (A5 included): exact. Every other cell here is 1 to 4: suppressed.
    assert _cell(page, "th", "Searches", "7")
    assert _cell(page, "th", "Searches that gave a viable match (a lead)", "fewer than 5")
    assert _cell(page, "td", "Yes", "fewer than 5")  # apparently under 18: two searches
    assert re.search(r"Version 7, counted on [0-9-]+: 8 images of\s+8 people", page)
    # Records 0-5 were set to F and IC3; of the builder's own records 6 and 7, one is F.
    assert _cell(page, "td", "Female", "7") and _cell(page, "td", "Male", "fewer than 5")
    assert _cell(page, "td", "IC3", "6") and _cell(page, "td", "IC1", "0")
    assert "Missing library" in page and "could not be read" in page
    assert not (tmp_path / "gone.db").exists()  # reading the report did not create an empty library


def test_annual_pdf_is_a_real_pdf(public_app: Flask, tmp_path: Path) -> None:
    response = signed_in(public_app).get("/reports/annual.pdf?year=2026")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert 'filename="rfr-annual-report-2026.pdf"' in response.headers["Content-Disposition"]
    pdf = response.get_data()
    assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-64:]
    if shutil.which("pdftoppm"):
        (tmp_path / "r.pdf").write_bytes(pdf)
        subprocess.run(["pdftoppm", "-png", "-r", "30", str(tmp_path / "r.pdf"), str(tmp_path / "page")], check=True)
        assert (tmp_path / "page-1.png").exists() or (tmp_path / "page-01.png").exists()


def test_a_search_refused_because_the_photo_was_replaced_is_counted_as_such() -> None:
    """The desk refuses a search sent from a page showing an older photo (``probe_replaced``); the report
    names that refusal rather than hiding it under "other"."""
    events = [{"device_id": "desk-a", "seq": 1, "type": "search_refused", "outcome": "probe_replaced",
               "actor": "officer", "ts": "2026-02-01T10:00:00+00:00", "details": {}}]
    figures = aggregate(events)
    assert figures.refusals["search_refused_probe_replaced"] == 1 and figures.refusals["other"] == 0
