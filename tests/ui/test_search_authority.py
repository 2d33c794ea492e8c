"""Authorised RFR Users in Chromium at 800 px: a lapsed officer reads why they cannot search and whom to ask.

The desk as served (gunicorn over HTTPS). ``officer_lapsed`` (tests/ui/conftest.py) was authorised until
three days ago: signed in, the home page says so in an alert, offers no new request, and the request form's
address shows the same words instead of the form. An authorised officer sees the date their authorisation
ends. Each page fits 800 px without sideways scrolling and passes axe-core.
"""

from __future__ import annotations

from datetime import date, timedelta

from playwright.sync_api import Page, expect

from appliance.services.search_authority import WHOM_TO_ASK
from core.display_time import long_date

NARROW = {"width": 800, "height": 900}


def fits(page: Page) -> None:
    """Nothing wider than the window: the message wraps instead of running off the side."""
    assert page.evaluate("() => document.documentElement.scrollWidth") <= NARROW["width"]


def test_a_lapsed_officer_is_told_why_and_whom_to_ask_at_800px(people, live_server, accessible):
    person = people("officer_lapsed")
    page = person.page
    page.set_viewport_size(NARROW)
    page.goto(live_server + "/")
    status = page.locator("#authority-status")
    lapsed_on = long_date(date.today() - timedelta(days=3))
    expect(status).to_be_visible()
    expect(status).to_have_attribute("role", "alert")
    expect(status).to_contain_text(f"your authorisation to search lapsed on {lapsed_on}")
    expect(status).to_contain_text(WHOM_TO_ASK)
    expect(page.get_by_role("heading", name="Your authorisation to search")).to_be_visible()
    expect(page.get_by_role("link", name="Start a new facial search request")).to_have_count(0)
    box = status.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= NARROW["width"]
    fits(page)
    accessible(page)

    page.goto(live_server + "/cases/new")
    message = page.locator(".message-error")
    expect(message).to_contain_text(f"lapsed on {lapsed_on}")
    expect(message).to_contain_text("RFR single point of contact")
    expect(page.get_by_label("Custody record reference")).to_have_count(0)
    fits(page)
    accessible(page)


def test_an_authorised_officer_sees_when_their_authorisation_ends_at_800px(people, live_server, accessible):
    page = people("officer").page
    page.set_viewport_size(NARROW)
    page.goto(live_server + "/")
    until = long_date(date.today() + timedelta(days=365))
    expect(page.locator("#authority-status")).to_have_text(f"You are authorised to search until {until}.")
    expect(page.get_by_role("link", name="Start a new facial search request")).to_be_visible()
    fits(page)
    accessible(page)
