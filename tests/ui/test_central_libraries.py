"""The library pages in Debian's Chromium against central as served (gunicorn, HTTPS, its real TUF repository):
one person requests a temporary library, a second authorises and grants it, at 1366x768 and 800 px, with
axe-core finding no serious or critical violation and nothing scrolling sideways."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from playwright.sync_api import expect

from tests.ui.central_served import VIEWPORTS, central_page, fits
from tests.ui.conftest import axe_violations


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> dict[str, int]:
    return VIEWPORTS[request.param]


def _accessible(page) -> None:  # type: ignore[no-untyped-def]
    assert axe_violations(page) == [], page.url
    assert fits(page), f"{page.url} scrolls sideways at {page.viewport_size}"


def test_two_people_request_and_authorise_a_temporary_library(browser, served_central, viewport) -> None:
    library_id = f"temp-op-kestrel-{viewport['width']}"
    alice = central_page(browser, served_central, "libalice", viewport)
    alice.get_by_role("navigation", name="Main").get_by_role("link", name="Libraries").click()
    expect(alice.get_by_role("heading", level=1, name="Reference libraries")).to_be_visible()
    _accessible(alice)
    alice.get_by_role("link", name="Request a new library").click()
    _accessible(alice)
    alice.get_by_label("Library id").fill(library_id)
    alice.get_by_label("Name").fill("Operation Kestrel")
    alice.get_by_label("Temporary, for one investigation or operation").check()
    alice.get_by_label("Purpose").fill("Identify suspects arrested in Operation Kestrel.")
    alice.get_by_label("Legal basis").fill("PACE 1984 s.64A.")
    alice.get_by_label("Authority reference").fill("RFR-AUTH-2026-014")
    alice.get_by_role("button", name="Request library").click()
    # No expiry: refused in plain words, with what was typed kept.
    expect(alice.get_by_role("alert")).to_contain_text("A temporary library must have an expiry")
    _accessible(alice)
    alice.get_by_label("Date").fill((date.today() + timedelta(days=30)).isoformat())
    alice.get_by_label("Time").fill("18:00")
    alice.get_by_role("button", name="Request library").click()
    expect(alice.get_by_role("heading", level=1, name="Operation Kestrel")).to_be_visible()
    expect(alice.get_by_text("You requested this library, so you cannot authorise or refuse it")).to_be_visible()
    _accessible(alice)

    bob = central_page(browser, served_central, "libbob", viewport)
    bob.goto(f"{served_central.url}/libraries/{library_id}")
    authorise = bob.get_by_role("group", name="Authorise this library")
    authorise.get_by_label("Your name").fill("B. Hughes")
    authorise.get_by_label("Your rank").fill("Superintendent")
    authorise.get_by_label("Review by").fill((date.today() + timedelta(days=20)).isoformat())
    authorise.get_by_label("I have considered its legality").check()
    authorise.get_by_role("button", name="Authorise").click()
    expect(bob.get_by_text("Operation Kestrel is authorised.")).to_be_visible()
    grant = bob.get_by_role("group", name="Grant to a desk")
    grant.get_by_label("Desk id").fill("desk-north")
    grant.get_by_label("Let this desk search it").check()
    grant.get_by_role("button", name="Grant to a desk").click()
    expect(bob.get_by_text("New authorisation manifests signed for desk-north.")).to_be_visible()
    expect(bob.locator("#record")).to_contain_text("B. Hughes (Superintendent, account libbob)")
    _accessible(bob)
    assert alice.csp_errors == [] and bob.csp_errors == []  # type: ignore[attr-defined]
    alice.context.close()
    bob.context.close()
