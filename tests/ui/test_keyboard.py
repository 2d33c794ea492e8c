"""The whole desk flow by keyboard alone (the desk-workflow issue: "the whole flow works by keyboard alone").

An officer signs in, submits a request, an Inspector (a second browser
context, their own session) approves it by re-entering their password; the
officer uploads a photo with three faces, chooses one, sees the photo check,
searches, judges every candidate, writes the Match Report and opens the
printable summary. Everything is reached with Tab / Shift+Tab and activated
with Enter, Space or the arrow keys: there is no click and no mouse event.

The one exception is the operating system's file dialog, which no web page can
drive: the file input is reached with Tab and opened with Space like any
other control, and Playwright's file chooser (``FileChooser.set_files``, the
same as ``set_input_files``) stands in for picking the file in the dialog.

At each step the test checks where focus lands (the page start after a
navigation, the error summary when there are errors, the new content after an
htmx swap), that every focused control shows a visible focus indicator (it
matches ``:focus-visible`` and its computed outline is not ``none``), and that
every visible control on each page is in the Tab order (radio groups count
once: the arrow keys move within them).
"""

from __future__ import annotations

import re

from playwright.sync_api import BrowserContext, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from core.morphology import COMPONENTS
from tests.appliance.desk_helpers import PASSWORD

# What document.activeElement is, as a key comparable across Tab presses (a radio group is one stop).
_FOCUS_KEY = """() => {
    const e = document.activeElement;
    if (!e || e === document.body || e === document.documentElement) { return 'body'; }
    if (e.type === 'radio') { return 'radio:' + e.name; }
    if (!e.dataset.kb) { e.dataset.kb = 'n' + Math.random().toString(36).slice(2); }
    return e.dataset.kb;
}"""
# Every visible, enabled control a person could need (links, buttons, fields, anything made focusable).
_CONTROLS = """() => {
    const sel = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]:not([tabindex="-1"])';
    return [...document.querySelectorAll(sel)]
        .filter(e => !e.disabled && !e.closest('[hidden], [inert]') && e.getClientRects().length > 0
                     && getComputedStyle(e).visibility !== 'hidden'
                     && e.checkVisibility())  // false inside a closed <details>
        .map(e => {
            if (e.type === 'radio') { return 'radio:' + e.name; }
            if (!e.dataset.kb) { e.dataset.kb = 'n' + Math.random().toString(36).slice(2); }
            return e.dataset.kb;
        });
}"""
_FOCUS_STYLE = """() => {
    const e = document.activeElement;
    const s = getComputedStyle(e);
    return {tag: e.tagName.toLowerCase(), id: e.id, visible: e.matches(':focus-visible'),
            outline: s.outlineStyle, width: s.outlineWidth};
}"""


def assert_focus_visible(page: Page) -> None:
    style = page.evaluate(_FOCUS_STYLE)
    assert style["visible"] and style["outline"] != "none" and style["width"] != "0px", style


def assert_focus_at_page_start(page: Page) -> None:
    """After a navigation focus is at the start of the page, and the first Tab offers the skip link, which works."""
    assert page.evaluate(_FOCUS_KEY) == "body"
    page.keyboard.press("Tab")
    expect(page.locator("a.skip")).to_be_focused()
    assert_focus_visible(page)
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()  # the next Tab goes into the main content


def assert_every_control_reachable(page: Page) -> None:
    """Tab all the way round the page: every visible control is a Tab stop, with a visible focus indicator."""
    wanted = set(page.evaluate(_CONTROLS))
    seen: list[str] = []
    for _ in range(4 * len(wanted) + 10):
        page.keyboard.press("Tab")
        key = page.evaluate(_FOCUS_KEY)
        if key == "body":
            continue
        if seen and key == seen[0]:
            break
        seen.append(key)
        assert_focus_visible(page)
    assert wanted <= set(seen), f"{page.url}: not reachable by Tab: {wanted - set(seen)}"


def tab_to(page: Page, selector: str, limit: int = 60, key: str = "Tab") -> None:
    """Press Tab (or ``key``, e.g. Shift+Tab) until ``selector`` has focus; its focus must be visible."""
    target = page.locator(selector)
    expect(target).to_have_count(1)
    for _ in range(limit):
        page.keyboard.press(key)
        if target.evaluate("e => e === document.activeElement"):
            assert_focus_visible(page)
            return
    raise AssertionError(f"{selector} cannot be reached with the Tab key on {page.url}")


def type_into(page: Page, selector: str, text: str) -> None:
    tab_to(page, selector)
    page.keyboard.type(text)


def sign_in(context: BrowserContext, base: str, username: str) -> Page:
    page = context.new_page()
    page.goto(base + "/login")
    assert_focus_at_page_start(page)
    type_into(page, "#username", username)
    type_into(page, "#password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/")
    assert_focus_at_page_start(page)
    return page


def open_case_from_home(page: Page, base: str, case_id: str) -> None:
    """Back to the desk by the header link, then into the case from the table."""
    tab_to(page, "header .product a", key="Shift+Tab")  # back up the page to the header
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/")
    tab_to(page, f'a[href="/cases/{case_id}"]')
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(f"/cases/{case_id}$"))
    assert_focus_at_page_start(page)


def test_the_whole_flow_by_keyboard_alone(browser, live_server, group_photo):  # type: ignore[no-untyped-def]
    base = live_server
    officer_context, inspector_context = browser.new_context(), browser.new_context()
    try:
        page = sign_in(officer_context, base, "officer")
        assert_every_control_reachable(page)

        # Submission: sent empty first, so focus must go to the error summary.
        tab_to(page, "#new-request")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile("/cases/new$"))
        assert_focus_at_page_start(page)
        assert_every_control_reachable(page)
        tab_to(page, "#send-request")
        page.keyboard.press("Enter")
        expect(page.locator("#error-summary")).to_be_focused()
        assert_focus_visible(page)
        page.keyboard.press("Tab")  # the first entry of the summary links to its field
        page.keyboard.press("Enter")
        page.keyboard.type("CR-KB-2")
        expect(page.locator("#custody_ref")).to_have_value("CR-KB-2")
        tab_to(page, "#reason-concealing_identity")  # an unchosen radio group's Tab stop is its first radio
        page.keyboard.press("ArrowDown")
        expect(page.locator("#reason-false_details")).to_be_checked()
        tab_to(page, "#check-pnc_name_search")
        page.keyboard.press("Space")
        type_into(page, "#checks_detail", "PNC has no trace of the name given; no fingerprint match.")
        tab_to(page, "#age-under_13")
        for _ in range(3):
            page.keyboard.press("ArrowDown")  # arrow keys move along the radio group and select
        expect(page.locator("#age-18_plus")).to_be_checked()
        tab_to(page, "#disability-no")
        page.keyboard.press("Space")
        tab_to(page, "#reassignment-no")
        page.keyboard.press("Space")
        tab_to(page, "#send-request")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/cases/[0-9A-F]+$"))
        case_id = page.url.rsplit("/", 1)[1]
        expect(page.locator("#case-state")).to_contain_text("Waiting for approval")
        assert_focus_at_page_start(page)

        # Approval by an Inspector in their own session, re-entering their password.
        approver = sign_in(inspector_context, base, "inspector")
        tab_to(approver, f'a[href="/cases/{case_id}"]')
        approver.keyboard.press("Enter")
        approver.wait_for_url(re.compile(f"/cases/{case_id}$"))
        assert_focus_at_page_start(approver)
        assert_every_control_reachable(approver)
        type_into(approver, "#password", PASSWORD)
        tab_to(approver, "form[action$='/approve'] button[type=submit]")
        approver.keyboard.press("Space")
        approver.wait_for_url(re.compile(f"/cases/{case_id}$"))
        expect(approver.locator("#case-state")).to_contain_text("Approved")

        # The photo: a group photo, so the officer must choose the face.
        open_case_from_home(page, base, case_id)
        expect(page.locator("#camera-start")).to_be_visible()
        assert_every_control_reachable(page)  # the camera button and the file input included
        for attempt in range(3):
            # The case page may still be swapping in the live update of the approval (htmx), which takes the focus
            # off the file input: then the key opens nothing, and the officer tabs back and presses it again.
            tab_to(page, "#probe")
            try:
                with page.expect_file_chooser(timeout=10_000) as chooser:
                    page.keyboard.press("Space")  # opens the file dialog, as for anyone at the desk
                break
            except PlaywrightTimeoutError:
                if attempt == 2:
                    raise
        chooser.value.set_files(str(group_photo))  # the OS dialog's part: the one non-keyboard step
        tab_to(page, "#probe-form button[type=submit]")
        page.keyboard.press("Enter")
        expect(page.locator("#probe-result")).to_contain_text("3 faces were found")
        expect(page.locator("#probe-result [role=alert]")).to_be_focused()  # the new content, not the page top
        assert_focus_visible(page)
        tab_to(page, "#face-0")
        page.keyboard.press("ArrowRight")
        expect(page.locator("#face-1")).to_be_checked()
        tab_to(page, "#probe-result button[type=submit]")
        page.keyboard.press("Enter")
        expect(page.locator("#quality")).to_contain_text("Photo quality:")
        expect(page.locator("#quality")).to_be_focused()
        assert_focus_visible(page)
        expect(page.locator("figcaption")).to_contain_text("2 of 3 faces")
        tab_to(page, "#search-button")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/candidates$"))
        assert_focus_at_page_start(page)
        assert_every_control_reachable(page)

        # Judging: sent with nothing chosen first (refused, focus to the summary), then every person above the
        # threshold; the people below it are folded away, opened with the keyboard and one of them decided too.
        tab_to(page, "form[action$='/adjudicate'] button[type=submit]")
        page.keyboard.press("Enter")
        expect(page.locator("#error-summary")).to_be_focused()
        assert_focus_visible(page)
        shown = [int(r) for r in page.locator("form fieldset.person:visible").evaluate_all(
            "els => els.map(e => e.dataset.rank)")]
        assert shown, "at least one person above the threshold"
        for rank in shown:
            tab_to(page, f"#decision-{rank}-viable")  # the first of an unchosen group is its Tab stop
            page.keyboard.press("Space" if rank == shown[0] else "ArrowDown")  # ArrowDown chooses "Not viable"
        tab_to(page, "#below-threshold > summary")
        page.keyboard.press("Enter")
        below = int(page.locator("#below-threshold fieldset.person").first.get_attribute("data-rank"))
        tab_to(page, f"#decision-{below}-viable")
        page.keyboard.press("ArrowDown")
        expect(page.locator(f"#decision-{below}-not_viable")).to_be_checked()
        expect(page.locator(f"#decision-{shown[0]}-viable")).to_be_checked()
        tab_to(page, "form[action$='/adjudicate'] button[type=submit]")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(f"/cases/{case_id}$"))
        expect(page.locator("#case-state")).to_contain_text("Match Report needed")
        assert_focus_at_page_start(page)
        assert_every_control_reachable(page)

        # Match Report: sent empty, then every field by Tab and typing.
        report = "form[action$='/match-report'] button[type=submit]"
        tab_to(page, report)
        page.keyboard.press("Enter")
        expect(page.locator("#error-summary")).to_be_focused()
        assert_focus_visible(page)
        # The five factors come pre-filled: the officer adds to them, then compares feature by feature.
        for field, text in [("probe_quality", " Head turned; the chosen face of three."),
                            ("other_factors", " None seen.")]:
            type_into(page, f"#{field}", text)
        for component in COMPONENTS:
            tab_to(page, f"#feature-{component}")  # an unchosen radio group's first radio is its Tab stop
            page.keyboard.press("Space")
            expect(page.locator(f"#feature-{component}")).to_be_checked()
        for field, text in [("age_judgement", " Adult in both images."),
                            ("rationale", "Hairline, ears and nose agree.")]:
            type_into(page, f"#{field}", text)
        tab_to(page, "#checked_prefill")
        page.keyboard.press("Space")
        tab_to(page, report)
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(f"/cases/{case_id}$"))
        expect(page.locator("#case-state")).to_contain_text("Closed: viable match reported")
        assert_focus_at_page_start(page)

        # The printable summary, by the link at the foot of the case.
        tab_to(page, f'a[href="/cases/{case_id}/summary"]')
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(f"/cases/{case_id}/summary$"))
        assert_focus_at_page_start(page)
        expect(page.get_by_role("heading", level=1)).to_have_text(f"Case summary {case_id}")
        expect(page.locator("#export-notice")).to_contain_text("not an identification and is not evidence")
        expect(page.locator("section[aria-labelledby=report-h]")).to_contain_text("Hairline, ears and nose agree.")
        assert_every_control_reachable(page)
    finally:
        officer_context.close()
        inspector_context.close()
