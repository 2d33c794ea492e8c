"""Browser tests: the desk app on a live port, driven by Debian's Chromium through Playwright.

No browser is ever downloaded: pytest-playwright's launch arguments are
overridden to use /usr/bin/chromium, with a fake camera (a test pattern) so
getUserMedia works headless. axe-core (pinned npm package) is served by the
app only in testing mode, so accessibility checks run under the real CSP.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

import appliance.services.accounts as accounts_mod
from appliance.web import create_app
from tests.appliance.conftest import appliance_settings
from tests.appliance.desk_helpers import PASSWORD, USERS, add_users

CHROMIUM = Path("/usr/bin/chromium")
# axe impacts that fail a page (WCAG 2.2 AA checks included in axe's defaults).
BLOCKING = {"serious", "critical"}


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, object]:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    return {"executable_path": str(CHROMIUM), "headless": True,
            "args": ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]}


@pytest.fixture(scope="session")
def live_app(tmp_path_factory, demo_library, pipeline):
    tmp = tmp_path_factory.mktemp("ui-appliance")
    app = create_app(appliance_settings(tmp, demo_library), pipeline=pipeline, start_sync=False,
                     test_config={"TESTING": True, "RFR_AXE": True})
    saved = accounts_mod._N
    accounts_mod._N = 2**10  # cheap hashes for the test accounts only; stored hashes carry their own cost
    try:
        add_users(app)
    finally:
        accounts_mod._N = saved
    return app


@pytest.fixture(scope="session")
def live_server(live_app) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, live_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


class Person:
    """One user in their own browser context (their own cookies: a separate session on the device)."""

    def __init__(self, browser, base: str, username: str) -> None:  # type: ignore[no-untyped-def]
        self.base, self.username = base, username
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.csp_errors: list[str] = []
        self.page.on("console", lambda m: self.csp_errors.append(m.text)
                     if "Content Security Policy" in m.text else None)
        self.page.goto(base + "/login")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(base + "/")

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def people(browser, live_server) -> Iterator:  # type: ignore[no-untyped-def]
    made: list[Person] = []

    def sign_in(username: str) -> Person:
        assert username in USERS
        person = Person(browser, live_server, username)
        made.append(person)
        return person

    yield sign_in
    for person in made:
        assert person.csp_errors == [], person.csp_errors
        person.close()


def axe_violations(page) -> list[dict]:  # type: ignore[no-untyped-def]
    """Serious and critical axe-core violations on the current page (axe served by the app itself)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(url="/vendor/axe.min.js")
    found = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ['violations']});
        return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                            nodes: v.nodes.map(n => n.target.join(' '))}));
    }""")
    return [v for v in found if v["impact"] in BLOCKING]


@pytest.fixture
def accessible():
    """Assert the page has no serious or critical axe violations; returns the pages checked."""
    checked: list[str] = []

    def check(page) -> None:  # type: ignore[no-untyped-def]
        violations = axe_violations(page)
        assert violations == [], f"{page.url}: {violations}"
        checked.append(page.url)

    check.checked = checked  # type: ignore[attr-defined]
    return check
