"""Reports: the period picker's default (the last complete quarter, from an injected clock), charts that
say something for small counts, and the annual PDF tagged for PDF/UA."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from flask import Flask

from central.reports import disclosure
from central.reports.aggregation import aggregate
from central.reports.charts import bar_spec
from central.reports.periods import last_complete_quarter, last_complete_year
from central.reports.sections import sections
from central.web import close_stores, create_app
from tests.central.test_reports import seed
from tests.central_signin import signed_in


@pytest.mark.parametrize("today, expected", [
    (date(2026, 12, 4), (2026, 3)), (date(2026, 10, 1), (2026, 3)), (date(2026, 9, 30), (2026, 2)),
    (date(2027, 1, 1), (2026, 4)), (date(2027, 3, 31), (2026, 4)), (date(2027, 4, 1), (2027, 1))])
def test_last_complete_quarter(today: date, expected: tuple[int, int]) -> None:
    assert last_complete_quarter(today) == expected


def test_last_complete_year() -> None:
    assert last_complete_year(date(2026, 12, 31)) == 2025 and last_complete_year(date(2027, 1, 1)) == 2026


@pytest.fixture
def december_app(tmp_path: Path) -> Iterator[Flask]:
    """Central on 4 December 2026 (its clock injected), with the reports' seeded events (2025 and 2026)."""
    app = create_app(test_config={"TESTING": True, "SECRET_KEY": "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k",
                                  "DATABASE": str(tmp_path / "central.db"),
                                  "CLOCK": lambda: datetime(2026, 12, 4, 15, 30, tzinfo=UTC)})
    seed(app.extensions["central.audit_store"])
    yield app
    close_stores(app)


def test_the_picker_and_the_pages_default_to_the_last_complete_period(december_app: Flask) -> None:
    client = signed_in(december_app)
    page = client.get("/reports").get_data(as_text=True)
    assert re.search(r'<option value="3" selected>Q3 \(July to September\)</option>', page)
    assert 'id="q-year" name="year" type="number" min="2000" max="2999" value="2026"' in page
    assert 'id="a-year" name="year" type="number" min="2000" max="2999" value="2025"' in page
    assert "last complete quarter, Q3 2026" in page
    assert "<h1>Quarterly review: 2026 Q3</h1>" in client.get("/reports/quarterly").get_data(as_text=True)
    assert 'filename="rfr-quarterly-2026-Q3.csv"' in client.get("/reports/quarterly.csv").headers[
        "Content-Disposition"]
    assert "annual report 2025" in client.get("/reports/annual").get_data(as_text=True)
    # A chosen period still wins over the default.
    assert "<h1>Quarterly review: 2026 Q1</h1>" in client.get(
        "/reports/quarterly?year=2026&quarter=1").get_data(as_text=True)


def test_small_counts_are_drawn_as_what_is_known_of_them() -> None:
    bars, end = bar_spec({"Viable": None, "No viable": 0, "Open": 2})
    suppressed, zero, two = bars
    # suppressed: a hatched range from 1 to 4 labelled as the table says, not an empty stub
    assert (suppressed.start, suppressed.start + suppressed.length, suppressed.text, suppressed.suppressed) == (
        1, disclosure.LIMIT - 1, disclosure.SMALL, True)
    assert (zero.length, zero.text) == (0, "0") and (two.length, two.text) == (2, "2")
    # the axis always reaches past the suppression limit: a count of 2 is a bar of 2 on a scale of 5 or more
    assert end >= disclosure.LIMIT and two.length / end < 0.5
    assert bar_spec({"Many": 40})[1] == pytest.approx(52)


def test_a_chart_says_its_figures_in_words() -> None:
    figures = aggregate([])
    figures.search_outcomes.update({"viable_match": 2, "no_viable_match": 7})  # type: ignore[attr-defined]
    outcome = next(s for s in sections(figures, show=disclosure.shown, suppressed=disclosure.suppressed)
                   if s.key == "search_outcomes")
    assert outcome.chart is not None and outcome.chart.startswith("data:image/png;base64,")
    assert "Viable match (a lead for investigation): fewer than 5" in outcome.chart_alt
    assert "No viable match: 7" in outcome.chart_alt


def _pdf_text(pdf: bytes) -> bytes:
    """The PDF's bytes with every Flate stream inflated (object streams hide the catalogue otherwise)."""
    text = pdf
    for raw in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            text += zlib.decompress(raw)
        except zlib.error:
            continue  # an image or a stream that is not Flate
    return text


def test_the_annual_pdf_is_tagged_for_pdf_ua(december_app: Flask) -> None:
    response = signed_in(december_app).get("/reports/annual.pdf?year=2026")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    text = _pdf_text(response.get_data())
    assert b"/StructTreeRoot" in text  # a structure tree a screen reader walks
    assert re.search(rb"/MarkInfo\s*<<\s*/Marked\s+true", text)
    assert re.search(rb"<pdfuaid:part>1</pdfuaid:part>|pdfuaid:part=\"1\"", text)  # PDF/UA-1 identification (XMP)
    assert re.search(rb"/Lang\s*\(en-GB\)", text)
    assert re.search(rb"/DisplayDocTitle\s+true", text)
    for role in (b"/H1", b"/Table", b"/TH", b"/TD", b"/Figure"):
        assert b"/S " + role in text or b"/S" + role in text, role
    assert b"/Alt" in text  # the charts' words travel with them
