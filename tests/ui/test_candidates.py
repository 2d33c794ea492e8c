"""The desk's search and candidates step in Chromium (issue 17, items 1 to 3), at 1366x768 and 800 px wide.

1. The face shown is the face searched: after each retake and each new face choice, the pixels of every
   probe image on the page are compared with the probe the server holds (fetched afresh, decoded by the
   same browser), and the search runs on that one.
2. Candidates by person: each person once, those below the threshold folded away, one decision each, the
   face searched kept in view beside the references while scrolling.
3. The side-by-side comparison: both images at least 300 px, zoom by buttons and keys, the facts beside them,
   refused to an officer not on the case.
axe-core finds no serious or critical violation on any of these pages, at either width.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.ui.test_desk_flow import approve, submit_request

WIDE = {"width": 1366, "height": 768}
# The face searched, as the candidates page shows it beside the references.
SEARCHED = """img[alt="The detainee's face that was searched"]"""
NARROW = {"width": 800, "height": 768}

# The SHA-256 of the pixels of the image shown (as the browser decoded it) and of the probe the server holds
# now (fetched past every cache, decoded by the same browser): equal only if the face shown is the face held.
_PIXELS = """async ([selector, current]) => {
    const digest = async (source, w, h) => {
        const canvas = document.createElement('canvas');
        canvas.width = w; canvas.height = h;
        const ctx = canvas.getContext('2d');
        ctx.drawImage(source, 0, 0);
        const bytes = await crypto.subtle.digest('SHA-256', ctx.getImageData(0, 0, w, h).data);
        return Array.from(new Uint8Array(bytes)).map(b => b.toString(16).padStart(2, '0')).join('');
    };
    const images = [...document.querySelectorAll(selector)];
    const shown = [];
    for (const img of images) {
        await img.decode();
        shown.push(await digest(img, img.naturalWidth, img.naturalHeight));
    }
    const response = await fetch(current, {cache: 'no-store'});
    const bitmap = await createImageBitmap(await response.blob());
    return {shown, held: await digest(bitmap, bitmap.width, bitmap.height)};
}"""


def shown_face(page: Page, case_id: str, selector: str = "#probe-result img") -> str:
    """The digest of the face every matching image shows, after checking they all show the probe held now."""
    result = page.evaluate(_PIXELS, [selector, f"/cases/{case_id}/probe.jpg"])
    assert result["shown"], f"no probe image on the page ({selector})"
    assert set(result["shown"]) == {result["held"]}, "a face shown is not the face the server holds"
    return result["held"]


def check_photo(page: Page, photo) -> None:  # type: ignore[no-untyped-def]
    """Choose ``photo`` and check it; return once the check's answer has replaced what was there."""
    page.evaluate("() => document.querySelectorAll('#probe-result > *').forEach(e => e.dataset.old = '1')")
    page.get_by_label("Photo file (JPEG or PNG)").set_input_files(str(photo))
    page.get_by_role("button", name="Check this photo").click()
    page.wait_for_function("""() => {
        const parts = [...document.querySelectorAll('#probe-result > *')];
        return parts.length > 0 && parts.every(e => !e.dataset.old)
            && [...document.querySelectorAll('#probe-result img')].every(i => i.complete);
    }""")


@pytest.fixture
def approved(people, live_server):  # type: ignore[no-untyped-def]
    """An officer's page on a case an Inspector has approved, ready for the photo."""
    officer = people("officer")
    case_id = submit_request(officer.page, live_server)
    approve(people("inspector").page, live_server, case_id)
    officer.page.set_viewport_size(WIDE)
    officer.page.goto(f"{live_server}/cases/{case_id}")
    return officer, case_id


def test_search_is_held_while_a_retake_is_being_checked(approved, face_photo):
    """Search cannot be pressed between sending a new photo and its check arriving: the face on screen then
    is no longer the one the server will hold."""
    officer, _ = approved
    page = officer.page
    check_photo(page, face_photo("biden.jpg"))
    expect(page.locator("#search-button")).to_be_enabled()
    held = []

    def hold(route) -> None:  # type: ignore[no-untyped-def]
        held.append(route)  # the retake's check is held in flight until the test lets it go

    checking = re.compile(r"/cases/\w+/probe$")
    page.route(checking, hold)
    page.get_by_label("Photo file (JPEG or PNG)").set_input_files(str(face_photo("obama3.jpg")))
    page.get_by_role("button", name="Check this photo").click()
    expect(page.locator("#search-button")).to_be_disabled()
    page.wait_for_function("() => true")  # let Playwright hand over the held request
    assert held, "the check was sent"
    held[0].continue_()
    page.unroute(checking, hold)
    expect(page.locator("#search-button")).to_be_enabled()


def test_a_search_from_a_page_showing_an_older_face_searches_nothing(approved, face_photo, accessible):
    """Two pages on one case (a second tab): the photo is retaken in one, Search is pressed in the other."""
    officer, case_id = approved
    stale = officer.page
    check_photo(stale, face_photo("biden.jpg"))
    shown_there = shown_face(stale, case_id)
    fresh = officer.context.new_page()
    fresh.goto(stale.url)
    check_photo(fresh, face_photo("obama3.jpg"))
    stale.get_by_role("button", name="Search the reference library with this photo").click()
    stale.wait_for_load_state()
    if stale.url.endswith("/candidates"):  # it searched: then it must have searched the face shown there
        assert shown_face(stale, case_id, SEARCHED) == shown_there, "searched a face never shown here"
    expect(stale.get_by_role("alert")).to_contain_text("The photo was replaced")
    shown_now = shown_face(stale, case_id)
    assert shown_now != shown_there, "the page now shows the photo held"
    accessible(stale)
    stale.get_by_role("button", name="Search the reference library with this photo").click()
    stale.wait_for_url(re.compile(r"/candidates$"))
    assert shown_face(stale, case_id, SEARCHED) == shown_now
    fresh.close()


def test_retakes_and_new_face_choices_show_and_search_one_face(approved, face_photo, group_photo, accessible):
    officer, case_id = approved
    page = officer.page
    seen = []

    # A group photo: choose the first face; the face shown is the one held.
    check_photo(page, group_photo)
    expect(page.locator("#probe-result")).to_contain_text("faces were found")
    accessible(page)
    page.get_by_role("button", name="Use the chosen face").click()
    expect(page.locator("figcaption")).to_contain_text("1 of")
    seen.append(shown_face(page, case_id))

    # Another face of the same photo: nothing can be searched until it is chosen, then it is what is shown.
    page.get_by_role("button", name="Choose a different face in this photo").click()
    expect(page.locator("#probe-result")).to_contain_text("faces were found")
    expect(page.locator("#search-button")).to_have_count(0)
    page.locator("#face-1").check()
    page.get_by_role("button", name="Use the chosen face").click()
    expect(page.locator("figcaption")).to_contain_text("2 of")
    seen.append(shown_face(page, case_id))

    # A retake: choosing the file alone already holds the search back until the new photo's check is shown.
    page.get_by_label("Photo file (JPEG or PNG)").set_input_files(str(face_photo("obama3.jpg")))
    expect(page.locator("#search-button")).to_be_disabled()
    expect(page.locator("#camera-status")).to_contain_text("you can search once its check is shown")
    page.get_by_role("button", name="Check this photo").click()
    expect(page.locator("#search-button")).to_be_enabled()
    expect(page.locator("figcaption")).to_have_text("Face to be searched")
    seen.append(shown_face(page, case_id))
    assert len(set(seen)) == 3, "each new photo or face choice is shown in place of the last"
    version = page.locator("#search-form input[name=probe_version]").get_attribute("value")
    assert page.locator("#probe-result img").get_attribute("data-probe-version") == version
    for size in (WIDE, NARROW):
        page.set_viewport_size(size)
        accessible(page)

    # The search runs on that face: the candidates page shows it, and the best match is that person.
    page.get_by_role("button", name="Search the reference library with this photo").click()
    page.wait_for_url(re.compile(r"/candidates$"))
    assert shown_face(page, case_id, SEARCHED) == seen[-1]
    expect(page.locator("fieldset.person").first).to_have_attribute("data-subject", "DEMO-OBAMA")


def test_candidates_by_person_with_the_face_searched_in_view(approved, face_photo, accessible):
    page = approved[0].page
    check_photo(page, face_photo("obama3.jpg"))
    page.get_by_role("button", name="Search the reference library with this photo").click()
    page.wait_for_url(re.compile(r"/candidates$"))

    obama = page.locator('fieldset.person[data-subject="DEMO-OBAMA"]')
    expect(obama).to_have_count(1)
    expect(obama.locator("legend")).to_have_text(re.compile(r"Person 1: DEMO-OBAMA \(2 images\)"))
    expect(obama.locator("img")).to_have_count(2)
    expect(obama.locator(".band")).to_contain_text("Strong similarity")
    expect(obama.locator(".meter .bar.on")).to_have_count(3)  # the band's cue besides colour
    subjects = page.locator("fieldset.person").evaluate_all("els => els.map(e => e.dataset.subject)")
    assert len(subjects) == len(set(subjects)), "each person once"
    below = page.locator("#below-threshold")
    expect(below.locator("summary")).to_have_text(re.compile(r"Other results below the threshold \(\d+ people\)"))
    expect(below).not_to_have_attribute("open", "")
    expect(below.locator("input[type=radio]").first).to_be_hidden()
    groups = page.locator("input[type=radio]").evaluate_all("els => new Set(els.map(e => e.name)).size")
    assert groups == len(subjects), "one decision per person, none per image"

    for size, name in ((WIDE, "1366x768"), (NARROW, "800 px")):
        page.set_viewport_size(size)
        accessible(page)
        height = page.evaluate("() => document.documentElement.scrollHeight")
        print(f"candidates page height at {name}: {height} px")  # a figure for the report
        assert height < 2 * size["height"], f"the page stays short at {name}: {height} px"
        # Scrolled to the last control, the face searched is still on screen beside the references.
        page.get_by_role("button", name="Record my judgement").scroll_into_view_if_needed()
        panel = page.locator(".probe-panel img").bounding_box()
        first_image = obama.locator("img").first.bounding_box()
        assert panel is not None and first_image is not None
        assert panel["y"] >= 0 and panel["y"] + panel["height"] <= size["height"], f"probe in view at {name}"
        assert panel["x"] + panel["width"] <= first_image["x"], f"probe beside the references at {name}"
    below.locator("summary").click()
    expect(below.locator("input[type=radio]").first).to_be_visible()
    accessible(page)

    # Deciding the people above the threshold is enough.
    page.locator("#decision-1-viable").check()
    page.get_by_role("button", name="Record my judgement").click()
    expect(page.locator("#case-state")).to_contain_text("Match Report needed")


def test_side_by_side_comparison_with_keyboard_zoom(approved, people, live_server, face_photo, accessible):
    officer, case_id = approved
    page = officer.page
    check_photo(page, face_photo("obama3.jpg"))
    page.get_by_role("button", name="Search the reference library with this photo").click()
    page.wait_for_url(re.compile(r"/candidates$"))
    page.locator("#compare-1").click()
    page.wait_for_url(re.compile(rf"/cases/{case_id}/candidates/1/compare$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Compare the face searched with DEMO-OBAMA")
    for facts, words in (("#probe-facts", ("Photo taken", "Quality", "Apparent age now")),
                         ("#reference-facts", ("Image dated", "Time lapse to the probe", "Quality",
                                               "Age at this image")),
                         ("#between-facts", ("Strong similarity",))):
        for word in words:
            expect(page.locator(facts)).to_contain_text(word)
    assert shown_face(page, case_id, ".compare-pair img[data-probe-version]")

    images = page.locator(".compare-pair img")
    for size in (WIDE, NARROW):
        page.set_viewport_size(size)
        accessible(page)
        boxes = [images.nth(i).bounding_box() for i in range(2)]
        assert all(b is not None and b["width"] >= 300 and b["height"] >= 300 for b in boxes), boxes
        assert boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"], "side by side"
        assert boxes[1]["x"] + boxes[1]["width"] <= size["width"], "nothing cut off"
        assert all(b["y"] >= 0 and b["y"] + b["height"] <= size["height"] for b in boxes), "both in view at once"

    # Zoom by keyboard alone: Tab to the button and press it, then the keys; both images zoom together.
    page.keyboard.press("Home")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "zoom-in":
            break
    expect(page.locator("#zoom-in")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#zoom-level")).to_have_text("Zoom 150%")
    page.keyboard.press("+")
    expect(page.locator("#zoom-level")).to_have_text("Zoom 200%")
    widths = images.evaluate_all("els => els.map(e => e.getBoundingClientRect().width)")
    assert widths == [640, 640], widths
    page.keyboard.press("Tab")  # on to the other buttons, then the first image's scrolling viewport
    page.keyboard.press("-")
    expect(page.locator("#zoom-level")).to_have_text("Zoom 150%")
    page.keyboard.press("0")
    expect(page.locator("#zoom-level")).to_have_text(re.compile("^Zoom 100%"))
    accessible(page)

    # The comparison is part of the case: another officer is told there is no such case.
    other = people("officer2")
    other.goto(f"/cases/{case_id}/candidates/1/compare")
    expect(other.page.get_by_role("alert")).to_contain_text("There is no case with that number")
    response = other.page.request.get(f"{live_server}/cases/{case_id}/candidates/1/compare")
    assert response.status == 404
