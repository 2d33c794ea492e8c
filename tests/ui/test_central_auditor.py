"""The auditor's case view, exports and proof check, and the report pages, in Debian's Chromium against
central as served, at 1366x768 and 800 px, with axe-core finding no serious or critical violation."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import expect

from central.audit.spreadsheet import BOM
from central.reports.periods import last_complete_quarter
from tests.central.case_trail import CASE, CUSTODY_REF
from tests.ui.central_served import VIEWPORTS, central_page, fits
from tests.ui.conftest import axe_violations


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> dict[str, int]:
    return VIEWPORTS[request.param]


def _accessible(page) -> None:  # type: ignore[no-untyped-def]
    assert axe_violations(page) == [], page.url
    assert fits(page), f"{page.url} scrolls sideways at {page.viewport_size}"


def test_auditor_finds_a_case_and_reads_its_timeline(browser, served_central, viewport) -> None:
    page = central_page(browser, served_central, "auditor", viewport)
    expect(page.get_by_role("heading", name="Evaluation-grade face model in use")).to_be_visible()
    page.goto(served_central.url + "/audit?device=desk-north")
    expect(page.get_by_role("heading", level=1, name="Audit events")).to_be_visible()
    _accessible(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Find a case").click()
    expect(page.get_by_role("heading", level=1, name="Find a case")).to_be_visible()
    _accessible(page)
    page.get_by_label("Custody record").fill(CUSTODY_REF)
    page.get_by_role("button", name="Find cases").click()
    expect(page.get_by_role("heading", name="1 case found")).to_be_visible()
    _accessible(page)
    page.get_by_role("link", name=f"Case {CASE} timeline").click()
    expect(page.get_by_role("heading", level=1, name=f"Case {CASE}")).to_be_visible()
    timeline = page.get_by_role("list", name="Timeline")
    steps = timeline.locator(":scope > li")
    expect(steps).to_have_count(10)  # 7 desk events and central's 3 steps of the peer review
    titles = [t.strip() for t in steps.locator("h3").all_inner_texts()]
    assert titles[0] == "Search requested: Waiting for approval"
    assert titles.index("Search: Candidates shown") < titles.index("Deletion: Destroyed")
    assert any(t.startswith("Peer review decided") for t in titles)
    deletion = steps.filter(has_text="Deletion: Destroyed")
    expect(deletion.get_by_role("listitem")).to_have_text(["probe image", "probe template", "face crops"])
    expect(page.get_by_text("18 or over").first).to_be_visible()
    expect(page.get_by_text("01 Dec 2026 09:10:00 UTC")).to_be_visible()
    _accessible(page)
    assert page.csp_errors == []  # type: ignore[attr-defined]
    page.context.close()


def test_auditor_exports_a_kind_and_checks_the_proof_on_the_page(browser, served_central, tmp_path: Path
                                                                 ) -> None:
    page = central_page(browser, served_central, "auditor", VIEWPORTS["800px"])
    page.goto(served_central.url + f"/audit/cases/desk-north/{CASE}")
    with page.expect_download() as got:
        page.get_by_role("link", name=re.compile(r"^Deletion \(1 event, CSV\)")).click()
    sheet = tmp_path / got.value.suggested_filename
    got.value.save_as(sheet)
    assert sheet.name.startswith("audit-deletions-") and sheet.suffix == ".csv"
    text = sheet.read_text(encoding="utf-8")
    assert text.startswith(BOM) and f",'{CUSTODY_REF}," in text and "probe image; probe template; face crops" in text
    with page.expect_download() as got:
        page.get_by_role("link", name="JSON Lines").click()
    evidence = tmp_path / "evidence.jsonl"
    got.value.save_as(evidence)
    page.get_by_role("link", name="Check an export").first.click()
    expect(page.get_by_role("heading", level=1, name="Check an export")).to_be_visible()
    _accessible(page)
    page.get_by_role("button", name="Check the export").click()  # nothing chosen: the error summary
    expect(page.get_by_role("alert")).to_contain_text("Choose the export file to check")
    _accessible(page)
    page.get_by_label("Export file").set_input_files(str(evidence))
    page.get_by_role("button", name="Check the export").click()
    expect(page.get_by_role("status")).to_contain_text("The proof holds")
    expect(page.get_by_role("status")).to_contain_text("7 events")
    _accessible(page)
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text(evidence.read_text().replace('"18_plus"', '"13_15"', 1))
    page.get_by_label("Export file").set_input_files(str(tampered))
    page.get_by_role("button", name="Check the export").click()
    expect(page.get_by_role("status")).to_contain_text("The proof does not hold")
    page.context.close()


def test_report_pages_open_on_the_last_complete_quarter(browser, served_central, viewport) -> None:
    year, quarter = last_complete_quarter(datetime.now(UTC).date())  # what the server's own clock gives
    page = central_page(browser, served_central, "auditor", viewport)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Reports").click()
    expect(page.get_by_label("Quarter")).to_have_value(str(quarter))
    expect(page.get_by_label("Year").first).to_have_value(str(year))
    _accessible(page)
    page.get_by_role("button", name="Show the quarter").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Quarterly review: {year} Q{quarter}")
    _accessible(page)
    page.goto(served_central.url + "/reports/annual?year=2026")
    expect(page.get_by_role("heading", level=1)).to_contain_text("2026")
    charts = page.get_by_role("img", name=re.compile("^Bar chart"))
    alts = [charts.nth(i).get_attribute("alt") or "" for i in range(charts.count())]
    assert alts and any("fewer than 5" in alt for alt in alts)  # the small counts are said, not hidden
    _accessible(page)
    page.context.close()


def test_the_fleet_page_flags_the_evaluation_model(browser, served_central, viewport) -> None:
    page = central_page(browser, served_central, "fleetadmin", viewport)
    page.goto(served_central.url + "/fleet")
    row = page.locator('tr[data-device="desk-north"]')
    expect(row).to_contain_text("evaluation model")
    expect(page.get_by_role("heading", name="Evaluation-grade face model in use")).to_be_visible()
    _accessible(page)
    page.context.close()
