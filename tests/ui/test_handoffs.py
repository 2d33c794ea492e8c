"""Hand-offs in Chromium, two people in two browser contexts: the officer's page follows the case by itself.

The officer keeps their case page open; the Inspector approves, refuses or returns it in another
context, a technical adviser answers a peer review: the officer's page changes without a reload
(a value set on ``window`` survives), the change is read out by a polite live region, and focus stays
where the officer left it. The Inspector reads the submission before the decision; an approver who
may not approve yet sees no password field. axe-core at 1366x768 and 800 px on each page.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.ui.test_desk_flow import approve, judge, submit_request, upload_and_search

# A poll every 5 s; a hand-off must show within a few polls.
SEEN_WITHIN_MS = 20_000
WIDTHS = ((1366, 768), (800, 900))


def at_both_widths(page: Page, accessible) -> None:  # type: ignore[no-untyped-def]
    for width, height in WIDTHS:
        page.set_viewport_size({"width": width, "height": height})
        accessible(page)
    page.set_viewport_size({"width": 1366, "height": 768})


def mark_no_reload(page: Page) -> None:
    page.evaluate("() => { window.handoffMarker = 'still the same page'; }")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("() => window.handoffMarker") == "still the same page", "the page was reloaded"


def test_the_officers_page_shows_the_approval_without_a_reload(people, live_server, accessible):
    officer = people("officer")
    case_id = submit_request(officer.page, live_server)
    page = officer.page
    expect(page.locator("#case-poll")).to_have_attribute("hx-trigger", "every 5s")
    at_both_widths(page, accessible)
    mark_no_reload(page)
    sign_out = page.get_by_role("button", name="Sign out")
    sign_out.focus()

    approve(people("inspector").page, live_server, case_id)

    expect(page.locator("#case-announce")).to_contain_text("Approved by inspector. You can now take the photo.",
                                                           timeout=SEEN_WITHIN_MS)
    expect(page.locator("#case-announce")).to_have_attribute("aria-live", "polite")
    expect(page.locator("#case-state")).to_contain_text("Approved: take the photo")
    expect(page.get_by_label("Photo file (JPEG or PNG)")).to_be_visible()
    expect(page.locator("#camera")).to_be_visible()  # the camera script ran on the swapped-in form
    expect(sign_out).to_be_focused()
    assert_not_reloaded(page)
    expect(page.locator("#case-poll")).not_to_have_attribute("hx-get", re.compile(".*"))  # nothing more to wait for
    at_both_widths(page, accessible)


def test_refusal_with_a_reason_reaches_the_officers_open_page(people, live_server, accessible):
    officer = people("officer")
    case_id = submit_request(officer.page, live_server, custody_ref="CR-2025-00777")
    mark_no_reload(officer.page)

    inspector = people("inspector")
    inspector.goto(f"/cases/{case_id}")
    ipage = inspector.page
    # The submission comes first, then the decision.
    order = ipage.evaluate("""() => {
        const submission = document.getElementById('submission-h'), decision = document.getElementById('step-h');
        return Boolean(submission.compareDocumentPosition(decision) & Node.DOCUMENT_POSITION_FOLLOWING);
    }""")
    assert order, "the details are above the actions"
    at_both_widths(ipage, accessible)
    ipage.get_by_role("button", name="Refuse this search and close the case").click()
    expect(ipage.locator("#error-summary")).to_be_focused()
    expect(ipage.locator("#error-summary")).to_contain_text("Say why the search is refused")
    expect(ipage.get_by_label("Why you are refusing this search")).to_have_attribute("aria-invalid", "true")
    at_both_widths(ipage, accessible)
    ipage.get_by_role("link", name=re.compile("Say why the search is refused")).click()
    expect(ipage.get_by_label("Why you are refusing this search")).to_be_focused()
    reason = "Not necessary: the fingerprint bureau will confirm identity within the hour."
    ipage.get_by_label("Why you are refusing this search").fill(reason)
    ipage.get_by_role("button", name="Refuse this search and close the case").click()
    expect(ipage.locator("#refusal")).to_contain_text(reason)

    page = officer.page
    expect(page.locator("#case-announce")).to_contain_text("Refused by inspector", timeout=SEEN_WITHIN_MS)
    expect(page.locator("#refusal")).to_contain_text(reason)
    expect(page.locator("#case-state")).to_contain_text("Refused by the approver")
    expect(page.get_by_role("button", name=re.compile("Withdraw"))).to_have_count(0)
    assert_not_reloaded(page)
    at_both_widths(page, accessible)


def test_return_for_changes_then_resubmit_then_approval_all_reach_the_open_page(people, live_server, accessible):
    officer = people("officer")
    case_id = submit_request(officer.page, live_server, custody_ref="CR-2025-00778")
    page = officer.page
    mark_no_reload(page)

    inspector = people("inspector")
    inspector.goto(f"/cases/{case_id}")
    note = "Say what the PNC search on the second name given found."
    inspector.page.get_by_label("What the officer needs to change").fill(note)
    inspector.page.get_by_role("button", name="Return to the officer for changes").click()
    expect(inspector.page.locator("#return-note")).to_contain_text(note)
    at_both_widths(inspector.page, accessible)

    expect(page.locator("#case-announce")).to_contain_text("Returned for changes by inspector",
                                                           timeout=SEEN_WITHIN_MS)
    expect(page.locator("#return-note")).to_contain_text(note)
    assert_not_reloaded(page)
    at_both_widths(page, accessible)

    page.get_by_role("link", name="Change the request").click()
    expect(page.locator("#return-note")).to_contain_text(note)
    field = page.get_by_label("Why did these checks not establish")
    expect(field).to_have_value(re.compile("PNC found no trace"))
    at_both_widths(page, accessible)
    original = field.input_value()
    field.fill("")
    page.get_by_role("button", name="Send the changed request for approval").click()
    expect(page.locator("#error-summary")).to_contain_text("Explain why those checks")
    expect(page.locator("#return-note")).to_contain_text(note)  # what to change stays in view
    at_both_widths(page, accessible)
    field = page.get_by_label("Why did these checks not establish")
    field.fill(original + " PNC on the second name given: no trace either.")
    page.get_by_role("button", name="Send the changed request for approval").click()
    expect(page.locator("#case-state")).to_contain_text("Waiting for approval")
    mark_no_reload(page)

    # Focus inside the swapped body stays on the same control (htmx restores it by id).
    withdraw = page.get_by_role("button", name=re.compile("Withdraw this request"))
    withdraw.focus()
    inspector.goto(f"/cases/{case_id}")
    expect(inspector.page.locator("#step-h ~ p").first).to_contain_text(note)
    approve(inspector.page, live_server, case_id)
    expect(page.locator("#case-announce")).to_contain_text("Approved by inspector", timeout=SEEN_WITHIN_MS)
    expect(withdraw).to_be_focused()
    assert_not_reloaded(page)


def test_an_approver_who_may_not_approve_yet_sees_no_password_field(people, live_server, accessible):
    officer = people("officer")
    case_id = submit_request(officer.page, live_server, disability="yes")
    mark_no_reload(officer.page)
    inspector = people("inspector")
    inspector.goto(f"/cases/{case_id}")
    ipage = inspector.page
    expect(ipage.locator("#approval-blocked")).to_contain_text("Technical advice must be recorded")
    expect(ipage.locator("input[type=password]")).to_have_count(0)
    expect(ipage.get_by_role("button", name="Approve this search")).to_have_count(0)
    at_both_widths(ipage, accessible)

    adviser = people("adviser")
    adviser.goto(f"/cases/{case_id}")
    adviser.page.get_by_label("Technical advice for the approver").fill("Facial palsy on the left: weigh the right.")
    adviser.page.get_by_role("button", name="Record technical advice").click()
    # The officer's page hears of the advice too, and keeps waiting for the approval.
    expect(officer.page.locator("#case-announce")).to_contain_text("Technical advice recorded by adviser",
                                                                   timeout=SEEN_WITHIN_MS)
    expect(officer.page.locator("#case-poll")).to_have_attribute("hx-trigger", "every 5s")
    assert_not_reloaded(officer.page)
    inspector.goto(f"/cases/{case_id}")
    expect(ipage.get_by_label("Your password, to confirm")).to_be_visible()


def test_a_peer_review_answer_reaches_the_officers_open_page(people, live_server, face_photo, accessible):
    officer = people("officer")
    case_id = submit_request(officer.page, live_server)
    approve(people("inspector").page, live_server, case_id)
    upload_and_search(officer.page, live_server, case_id, face_photo("obama3.jpg"))
    judge(officer.page, first="needs_peer_review")
    page = officer.page
    expect(page.locator("#case-state")).to_contain_text("Waiting for peer review")
    expect(page.locator("#case-poll")).to_have_attribute("hx-trigger", "every 5s")
    mark_no_reload(page)

    adviser = people("adviser")
    adviser.goto(f"/cases/{case_id}")
    adviser.page.locator("#review-1-viable").check()
    adviser.page.get_by_label("Peer review reasons").fill("Ear shape and hairline agree; a viable lead.")
    adviser.page.get_by_role("button", name="Record the peer review").click()

    expect(page.locator("#case-announce")).to_contain_text("The peer review is back: a candidate is viable",
                                                           timeout=SEEN_WITHIN_MS)
    expect(page.locator("#case-state")).to_contain_text("Match Report needed")
    assert_not_reloaded(page)
    at_both_widths(page, accessible)
