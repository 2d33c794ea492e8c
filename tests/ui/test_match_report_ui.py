"""The Match Report, the feature comparison and the confirmations before destruction, in Chromium, at
1366x768 and 800 px wide, with axe-core (no serious or critical violation) on every new page and state."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from appliance.services.match_report import CONFIRM_ERROR
from tests.ui.test_desk_flow import approve, compare_every_feature, judge, submit_request, upload_and_search

SIZES = {"1366x768": {"width": 1366, "height": 768}, "800px": {"width": 800, "height": 900}}


def images_loaded(page: Page, selector: str, count: int = 2) -> None:
    """Wait until ``count`` images under ``selector`` have loaded and decoded (a broken one has naturalWidth 0)."""
    page.wait_for_function("([s, n]) => [...document.querySelectorAll(s + ' img')]"
                           ".filter(i => i.complete && i.naturalWidth > 0).length === n", arg=[selector, count],
                           timeout=10_000)


def no_sideways_scroll(page: Page) -> None:
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), page.url


@pytest.mark.parametrize("size", SIZES)
def test_match_report_prefilled_with_features_and_plain_errors(people, live_server, face_photo, accessible, size):
    base = live_server
    officer = people("officer")
    page = officer.page
    page.set_viewport_size(SIZES[size])
    case_id = submit_request(page, base, custody_ref=f"CR-MR-{size}")
    approve(people("inspector").page, base, case_id)
    upload_and_search(page, base, case_id, face_photo("obama3.jpg"))

    # Before judging: a feature comparison of candidate 1 from the case page.
    page.goto(f"{base}/cases/{case_id}")
    page.get_by_role("link", name="Compare features of candidate 1").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Compare features: candidate 1")
    images_loaded(page, ".side-by-side")
    accessible(page)
    no_sideways_scroll(page)
    nose = page.get_by_role("group", name="Nose")
    nose.get_by_label("Dissimilar", exact=True).check()
    page.get_by_role("button", name="Save the comparison").click()
    expect(page.locator("#error-summary")).to_contain_text("Choose similar, dissimilar, not visible or not "
                                                           "assessed for the head outline.")
    expect(page.locator("#error-summary")).to_contain_text("Say what differs in the nose.")
    accessible(page)
    compare_every_feature(page)
    nose.get_by_label("Dissimilar", exact=True).check()
    page.get_by_label("Note on the nose").fill("Wider nostrils in the probe.")
    page.get_by_role("button", name="Save the comparison").click()
    page.wait_for_url(re.compile(r"/candidates(#candidate-1)?$"))

    judge(page, first="viable")
    expect(page.locator("#case-state")).to_contain_text("Match Report needed")
    images_loaded(page, "#report-images")
    measured = re.compile(r"^Detainee's photo, measured: ")
    expect(page.get_by_label("Probe image quality", exact=True)).to_have_value(measured)
    expect(page.get_by_label("Lighting", exact=True)).to_have_value(re.compile(r"face brightness \d+ of 255"))
    expect(page.get_by_label("Time lapse between the images", exact=True)).to_have_value(re.compile("Time lapse: "))
    expect(page.get_by_role("group", name="Nose").get_by_label("Dissimilar", exact=True)).to_be_checked()
    accessible(page)
    no_sideways_scroll(page)

    page.get_by_role("button", name="Record the Match Report and close the case").click()
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("Explain why this candidate is a viable match.")
    expect(summary).to_contain_text(CONFIRM_ERROR)
    accessible(page)
    page.get_by_role("link", name="Explain why this candidate is a viable match.").click()
    expect(page.get_by_label("Why the candidate is a viable match")).to_be_focused()

    page.get_by_label("Why the candidate is a viable match").fill("Hairline, ears and mouth agree; nose differs "
                                                                  "only in nostril width.")
    page.get_by_label("I have checked the filled-in answers").check()
    page.get_by_role("button", name="Record the Match Report and close the case").click()
    expect(page.locator("#case-state")).to_contain_text("Closed: viable match reported")
    expect(page.locator("#lead-subject")).to_contain_text("DEMO-OBAMA")
    expect(page.locator("#case-times")).to_contain_text(re.compile(r"\d{1,2} [A-Z][a-z]+ \d{4}, \d\d:\d\d [A-Z]+"))
    accessible(page)
    page.get_by_role("link", name="Printable case summary").click()
    table = page.get_by_role("table", name=re.compile("Feature-by-feature comparison"))
    expect(table.get_by_role("row", name=re.compile("Nose"))).to_contain_text("Wider nostrils in the probe.")
    expect(page.locator("#lead-subject")).to_have_text("DEMO-OBAMA")
    expect(page.locator("main")).to_contain_text(re.compile(r"\(UTC \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)"))
    accessible(page)
    page.goto(base + "/")
    row = page.get_by_role("row", name=re.compile(f"Case {case_id}"))
    expect(row).to_contain_text("Lead: DEMO-OBAMA")
    expect(row.locator("time")).to_have_count(2)
    accessible(page)


@pytest.mark.parametrize("size", SIZES)
def test_destructive_steps_ask_first_and_say_what_goes(people, live_server, face_photo, accessible, size):
    base = live_server
    officer = people("officer")
    page = officer.page
    page.set_viewport_size(SIZES[size])
    inspector = people("inspector").page

    # Withdraw: the confirmation names the photo; "No" leaves everything as it was.
    case_id = submit_request(page, base, custody_ref=f"CR-WD-{size}")
    approve(inspector, base, case_id)
    page.goto(f"{base}/cases/{case_id}")
    page.get_by_label("Photo file (JPEG or PNG)").set_input_files(str(face_photo("obama3.jpg")))
    page.get_by_role("button", name="Check this photo").click()
    expect(page.locator("#quality")).to_contain_text("Photo quality:")
    page.get_by_role("button", name="Withdraw this request").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Withdraw this request?")
    expect(page.locator("#destroys")).to_contain_text("the photo of the detainee")
    accessible(page)
    no_sideways_scroll(page)
    page.get_by_role("link", name="No, go back to the case").click()
    expect(page.locator("#case-state")).to_contain_text("Photo taken")
    assert page.request.get(f"{base}/cases/{case_id}/probe.jpg").status == 200, "nothing destroyed"
    page.get_by_role("button", name="Withdraw this request").click()
    page.get_by_role("button", name="Yes, withdraw the request").click()
    expect(page.get_by_role("heading", level=2, name=re.compile("Outcome"))).to_have_text("Outcome: Withdrawn")
    expect(page.locator("main")).not_to_contain_text(re.compile("no viable match", re.I))
    assert page.request.get(f"{base}/cases/{case_id}/probe.jpg").status == 404
    accessible(page)

    # Everything not viable: the confirmation names the photo and the candidate list.
    case_id = submit_request(page, base, custody_ref=f"CR-NV-{size}")
    approve(inspector, base, case_id)
    upload_and_search(page, base, case_id, face_photo("obama3.jpg"))
    judge(page, first="not_viable")
    expect(page.get_by_role("heading", level=1)).to_have_text("Close the case with no viable match?")
    expect(page.locator("#destroys")).to_contain_text("the photo of the detainee")
    expect(page.locator("#destroys")).to_contain_text(re.compile(r"the list of \d+ candidates"))
    accessible(page)
    no_sideways_scroll(page)
    assert page.request.get(f"{base}/cases/{case_id}/probe.jpg").status == 200, "nothing destroyed yet"
    page.get_by_role("button", name="Yes, close the case and destroy the photo").click()
    expect(page.locator("#case-state")).to_contain_text("no viable match (photo destroyed)")
    assert page.request.get(f"{base}/cases/{case_id}/probe.jpg").status == 404
