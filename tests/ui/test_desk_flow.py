"""The whole desk flow in Chromium, two people on two sessions, with axe-core on every page.

Login, submission, approval by an Inspector, capture by upload, candidates,
adjudication, Match Report; the deletion path; then one browser test per
safeguard showing the refusal; the camera with Chromium's fake device; and
the sign-in and submission done by keyboard alone.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.appliance.desk_helpers import PASSWORD, SUBMISSION

CHECK_LABELS = {"pnc_name_search": "PNC search", "fingerprints": "Fingerprints taken"}


def submit_request(page: Page, base: str, **over: str) -> str:
    data = {**SUBMISSION, **over}
    page.goto(base + "/cases/new")
    page.get_by_label("Custody record reference").fill(data["custody_ref"])
    page.locator(f"#reason-{data['reason']}").check()
    for check in data["checks"]:
        page.get_by_label(re.compile(CHECK_LABELS[check])).check()
    page.get_by_label("Why did these checks not establish").fill(data["checks_detail"])
    page.locator(f"#age-{data['age_band']}").check()
    page.locator(f"#disability-{data['disability']}").check()
    page.locator(f"#reassignment-{data['reassignment']}").check()
    page.get_by_role("button", name="Send for approval").click()
    page.wait_for_url(re.compile(r"/cases/[0-9A-F]+$"))
    return page.url.rsplit("/", 1)[1]


def approve(page: Page, base: str, case_id: str) -> None:
    page.goto(f"{base}/cases/{case_id}")
    page.get_by_label("Your password, to confirm").fill(PASSWORD)
    page.get_by_role("button", name="Approve this search").click()


def upload_and_search(page: Page, base: str, case_id: str, photo) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/cases/{case_id}")
    page.get_by_label("Photo file (JPEG or PNG)").set_input_files(str(photo))
    page.get_by_role("button", name="Check this photo").click()
    expect(page.locator("#quality")).to_contain_text("Photo quality:")
    page.get_by_role("button", name="Search the reference library with this photo").click()
    page.wait_for_url(re.compile(r"/candidates$"))


def judge(page: Page, first: str, rest: str = "not_viable", doubts: str = "") -> None:
    """``first`` for the best-scoring person, ``rest`` for the others above the threshold (one choice each)."""
    ranks = page.locator("fieldset.person:visible").evaluate_all("els => els.map(e => e.dataset.rank)")
    for i, rank in enumerate(ranks):
        page.locator(f"#decision-{rank}-{first if i == 0 else rest}").check()
    if doubts:
        page.get_by_label("Doubts about this result").fill(doubts)
    page.get_by_role("button", name="Record my judgement").click()


def compare_every_feature(page: Page, finding: str = "Similar") -> None:
    """The Match Report's feature-by-feature comparison, one finding for every facial component."""
    for fieldset in page.locator("fieldset.feature").all():
        fieldset.get_by_label(finding, exact=True).check()


def test_whole_flow_with_match_report(people, live_server, face_photo, accessible):
    base = live_server
    officer = people("officer")
    page = officer.page
    accessible(page)  # home

    page.goto(base + "/cases/new")
    accessible(page)
    page.get_by_role("button", name="Send for approval").click()
    expect(page.locator("#error-summary")).to_be_visible()
    expect(page.locator("#error-summary")).to_have_attribute("role", "alert")
    expect(page.locator("#error-summary")).to_be_focused()
    accessible(page)  # with errors shown

    case_id = submit_request(page, base)
    expect(page.locator("#case-state")).to_contain_text("Waiting for approval")
    accessible(page)

    inspector = people("inspector")
    expect(inspector.page.get_by_role("link", name=f"Case {case_id}")).to_be_visible()
    accessible(inspector.page)
    inspector.goto(f"/cases/{case_id}")
    accessible(inspector.page)
    approve(inspector.page, base, case_id)
    expect(inspector.page.locator("#case-state")).to_contain_text("Approved")

    page.goto(f"{base}/cases/{case_id}")
    accessible(page)  # capture step
    page.get_by_label("Photo file (JPEG or PNG)").set_input_files(str(face_photo("obama3.jpg")))
    page.get_by_role("button", name="Check this photo").click()
    expect(page.locator("#quality")).to_contain_text("Photo quality:")
    accessible(page)  # quality report shown before any search
    page.get_by_role("button", name="Search the reference library with this photo").click()
    page.wait_for_url(re.compile(r"/candidates$"))
    accessible(page)
    expect(page.locator("#standing-notice")).to_contain_text("does not make a candidate viable")
    expect(page.locator("fieldset.person").first).to_have_attribute("data-subject", "DEMO-OBAMA")

    judge(page, first="viable")
    expect(page.locator("#case-state")).to_contain_text("Match Report needed")
    accessible(page)
    page.get_by_label("Lighting", exact=True).fill("")
    page.get_by_role("button", name="Record the Match Report and close the case").click()
    expect(page.locator("#error-summary")).to_contain_text("Describe the lighting in the two images.")
    accessible(page)
    for label, text in [("Lighting", "Even in both."),
                        ("Why the candidate is a viable match", "Ears, hairline and nose agree.")]:
        page.get_by_label(label, exact=True).fill(text)
    compare_every_feature(page)
    page.get_by_label("I have checked the filled-in answers").check()
    page.get_by_role("button", name="Record the Match Report and close the case").click()
    expect(page.locator("#case-state")).to_contain_text("Closed: viable match reported")
    expect(page.locator("#retention")).to_contain_text("kept with the Match Report")
    accessible(page)
    page.get_by_role("link", name="Printable case summary").click()
    expect(page.locator("#export-notice")).to_contain_text("not an identification and is not evidence")
    accessible(page)


def test_no_viable_match_destroys_the_photo(people, live_server, face_photo, accessible):
    base = live_server
    officer = people("officer")
    case_id = submit_request(officer.page, base, custody_ref="CR-2025-00999")
    approve(people("inspector").page, base, case_id)
    upload_and_search(officer.page, base, case_id, face_photo("obama3.jpg"))
    judge(officer.page, first="not_viable")
    expect(officer.page.get_by_role("heading", level=1)).to_have_text("Close the case with no viable match?")
    officer.page.get_by_role("button", name="Yes, close the case and destroy the photo").click()
    expect(officer.page.locator("#case-state")).to_contain_text("no viable match (photo destroyed)")
    expect(officer.page.locator("#retention")).to_contain_text("were destroyed")
    accessible(officer.page)
    assert officer.page.request.get(f"{base}/cases/{case_id}/probe.jpg").status == 404


def test_peer_review_required_before_closing_after_doubts(people, live_server, face_photo, accessible):
    base = live_server
    officer = people("officer")
    case_id = submit_request(officer.page, base)
    approve(people("inspector").page, base, case_id)
    upload_and_search(officer.page, base, case_id, face_photo("obama3.jpg"))
    judge(officer.page, first="needs_peer_review")
    expect(officer.page.locator("#case-state")).to_contain_text("Waiting for peer review")
    expect(officer.page.get_by_role("button", name="Record the peer review")).to_have_count(0)
    adviser = people("adviser")
    adviser.goto(f"/cases/{case_id}")
    accessible(adviser.page)
    adviser.page.get_by_role("button", name="Record the peer review").click()  # nothing chosen: browser refuses
    expect(adviser.page.locator("#case-state")).to_contain_text("Waiting for peer review")
    adviser.page.locator("#review-1-not_viable").check()
    adviser.page.get_by_label("Peer review reasons").fill("Different ear shape; not the same person.")
    adviser.page.get_by_role("button", name="Record the peer review").click()
    adviser.page.get_by_role("button", name="Yes, record the review and destroy the photo").click()
    expect(adviser.page.locator("#case-state")).to_contain_text("no viable match")


def test_refused_without_approval(people, live_server):
    officer = people("officer")
    case_id = submit_request(officer.page, live_server)
    expect(officer.page.get_by_label("Photo file (JPEG or PNG)")).to_have_count(0)
    expect(officer.page.locator("#step-h + p")).to_contain_text("You cannot approve your own request")
    forged = officer.page.request.post(f"{live_server}/cases/{case_id}/search")
    assert forged.status == 400  # no CSRF token: refused before anything else
    token = officer.page.locator("input[name=csrf_token]").first.get_attribute("value")
    # With the token and the Referer a browser sends (over HTTPS Flask-WTF checks it), the rule itself refuses.
    refused = officer.page.request.post(f"{live_server}/cases/{case_id}/search",
                                        headers={"X-CSRFToken": token, "Referer": live_server + "/"})
    assert refused.status == 403 and "has not been approved" in refused.text()


def test_refused_self_approval(people, live_server, accessible):
    inspector = people("inspector")
    case_id = submit_request(inspector.page, live_server)
    expect(inspector.page.get_by_role("button", name="Approve this search")).to_have_count(0)
    super_ = people("super")
    approve(super_.page, live_server, case_id)
    expect(super_.page.locator("#case-state")).to_contain_text("Approved")


def test_refused_under_13_by_an_inspector(people, live_server, accessible):
    officer = people("officer")
    case_id = submit_request(officer.page, live_server, age_band="under_13")
    expect(officer.page.locator("#step-h + p")).to_contain_text("Superintendent or above")
    inspector = people("inspector")
    expect(inspector.page.get_by_role("link", name=f"Case {case_id}")).to_have_count(0)
    inspector.goto(f"/cases/{case_id}")  # not the Inspector's to approve: as if there were no such case
    expect(inspector.page.get_by_role("alert")).to_contain_text("There is no case with that number")
    accessible(inspector.page)
    super_ = people("super")
    approve(super_.page, live_server, case_id)
    expect(super_.page.locator("#case-state")).to_contain_text("Approved")


def test_refused_disability_without_technical_advice(people, live_server, accessible):
    officer = people("officer")
    case_id = submit_request(officer.page, live_server, disability="yes")
    inspector = people("inspector")
    inspector.goto(f"/cases/{case_id}")  # told before any password is asked (tests/ui/test_handoffs.py)
    expect(inspector.page.locator("#approval-blocked")).to_contain_text("Technical advice must be recorded")
    expect(inspector.page.get_by_label("Your password, to confirm")).to_have_count(0)
    adviser = people("adviser")
    adviser.goto(f"/cases/{case_id}")
    accessible(adviser.page)
    adviser.page.get_by_label("Technical advice for the approver").fill("Scarring on the left cheek; weigh the "
                                                                       "right side.")
    adviser.page.get_by_role("button", name="Record technical advice").click()
    approve(inspector.page, live_server, case_id)
    expect(inspector.page.locator("#case-state")).to_contain_text("Approved")


def test_refused_auditor_search(people, live_server, accessible):
    auditor = people("auditor")
    expect(auditor.page.get_by_role("link", name="Start a new facial search request")).to_have_count(0)
    accessible(auditor.page)
    auditor.goto("/cases/new")
    expect(auditor.page.get_by_role("alert")).to_contain_text("cannot submit or run a facial search")
    accessible(auditor.page)


def test_camera_capture_with_no_face_is_explained(people, live_server, accessible):
    officer = people("officer")
    case_id = submit_request(officer.page, live_server)
    approve(people("inspector").page, live_server, case_id)
    page = officer.page
    page.goto(f"{live_server}/cases/{case_id}")
    page.get_by_role("button", name="Use the camera").click()
    page.get_by_role("button", name="Take photo").click()  # Chromium's fake camera: a test pattern, no face
    expect(page.locator("#probe-result [role=alert]")).to_contain_text("No face was found in this photo")
    accessible(page)


def tab_to(page: Page, element_id: str, limit: int = 40) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement && document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} cannot be reached with the Tab key")


def test_sign_in_and_submission_by_keyboard_alone(browser, live_server):
    context = browser.new_context()
    page = context.new_page()
    page.goto(live_server + "/login")
    tab_to(page, "username")
    page.keyboard.type("officer2")
    tab_to(page, "password")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(live_server + "/")
    tab_to(page, "new-request")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile("/cases/new$"))
    tab_to(page, "custody_ref")
    page.keyboard.type("CR-KB-1")
    tab_to(page, "reason-concealing_identity")
    page.keyboard.press("Space")
    tab_to(page, "check-fingerprints")
    page.keyboard.press("Space")
    tab_to(page, "checks_detail")
    page.keyboard.type("Fingerprints gave no result and the name given is not on PNC.")
    tab_to(page, "age-under_13")
    for _ in range(3):
        page.keyboard.press("ArrowDown")  # radio groups move and select with the arrow keys
    tab_to(page, "disability-no")
    page.keyboard.press("Space")
    tab_to(page, "reassignment-no")
    page.keyboard.press("Space")
    tab_to(page, "send-request")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/cases/[0-9A-F]+$"))
    expect(page.locator("#case-state")).to_contain_text("Waiting for approval")
    expect(page.locator("#approval-h + p")).to_contain_text("Inspector or above")
    context.close()


def test_axe_check_has_teeth(people, live_server):
    """The accessibility check itself: an unlabelled input added to a page is reported as critical."""
    from tests.ui.conftest import axe_violations

    page = people("officer").page
    assert axe_violations(page) == []
    page.evaluate("() => document.querySelector('main').appendChild(document.createElement('input'))")
    assert "label" in {v["id"] for v in axe_violations(page)}


def test_wrong_password_is_announced(browser, live_server):
    context = browser.new_context()
    page = context.new_page()
    page.goto(live_server + "/login")
    page.get_by_label("Username").fill("auditor")
    page.get_by_label("Password").fill("not it")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("username or password is wrong")
    context.close()
