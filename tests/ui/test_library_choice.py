"""The libraries a search runs on, in Chromium at 1366x768 (#18 point 3): the officer's choice on the form and
the library the candidates came from, in words, on the candidates page.

The served desk holds its provisioned library, authorised for custody by central's manifest and in the
default set: the form ticks it, says what kind of library it is, refuses a request with none ticked (and
says so beside the boxes), and the candidates page names the library searched as text, not colour.
"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.ui.test_desk_flow import approve, submit_request, upload_and_search

WIDE = {"width": 1366, "height": 768}
NATIONAL = "National custody images"


def test_the_officer_chooses_the_libraries_and_candidates_name_theirs(people, live_server, face_photo, accessible):
    officer = people("officer")
    page = officer.page
    page.set_viewport_size(WIDE)
    page.goto(live_server + "/cases/new")
    choice = page.get_by_role("group", name="Reference libraries to search")
    box = choice.get_by_role("checkbox", name=NATIONAL)
    expect(box).to_be_checked()  # the manifest's default set
    expect(page.locator("#library-national-hint")).to_have_text("Permitted library (substantive)")
    assert box.get_attribute("aria-describedby") == "library-national-hint"
    accessible(page)

    # None ticked: refused beside the boxes, the rest of the answers kept.
    page.get_by_label("Custody record reference").fill("CR-2026-LIB01")
    box.uncheck()
    page.locator("#reason-false_details").check()
    page.get_by_label("Why did these checks not establish").fill("PNC found no trace; fingerprints no match.")
    page.locator("#age-18_plus").check()
    page.locator("#disability-no").check()
    page.locator("#reassignment-no").check()
    page.get_by_role("button", name="Send for approval").click()
    expect(page.locator("#libraries-error")).to_contain_text("Choose at least one library to search.")
    expect(page.get_by_label("Custody record reference")).to_have_value("CR-2026-LIB01")
    expect(page.get_by_role("checkbox", name=NATIONAL)).not_to_be_checked()
    accessible(page)

    # The form as filled in by the usual path (default set ticked) goes through, and the search names it.
    case_id = submit_request(page, live_server)
    expect(page.locator("#libraries-chosen")).to_contain_text(NATIONAL)
    approve(people("inspector").page, live_server, case_id)
    upload_and_search(page, live_server, case_id, face_photo("obama3.jpg"))
    # One library searched: the page says once, in words, that every candidate is from it (a label on each
    # person is for a search of several libraries: tests/appliance/test_library_search.py).
    summary = page.locator("#people-summary")
    expect(summary).to_contain_text(f"all in {NATIONAL}")
    expect(summary).to_be_in_viewport()
    expect(page.locator("fieldset.person .library-label")).to_have_count(0)
    accessible(page)
