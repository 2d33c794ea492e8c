"""Browser tests: the desk as it is served (``python -m appliance serve``: gunicorn over HTTPS with the
web certificate from its enrolment), driven by Debian's Chromium through Playwright.

No browser is ever downloaded: pytest-playwright's launch arguments are
overridden to use /usr/bin/chromium, with a fake camera (a test pattern) so
getUserMedia works headless. Chromium trusts the fleet CA the way a force
installs it: imported with ``certutil`` into the NSS database of a throwaway
HOME (no certificate error is ignored). axe-core (pinned npm package) is
served to the page by Playwright at the desk's own ``/vendor/axe.min.js``,
so accessibility checks run under the real CSP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Playwright, sync_playwright

import appliance.services.accounts as accounts_mod
from appliance.services.accounts import AccountService
from appliance.settings import ApplianceSettings
from appliance.settings import load as load_settings
from appliance.storage.accounts import AccountStore
from appliance.storage.device_db import DeviceDatabase
from provisioning.ca import CaLayout
from provisioning.device import DevicePki
from supply.pinned import member
from testbed.ports import free_port
from tests.appliance.conftest import own_copy
from tests.appliance.desk_helpers import PASSWORD, USERS, authorisation_for, current_authorisation
from tests.desk_authorisation import seed_authorisation
from tests.desk_keys import provision_library_key
from tests.fleet_key import write_command_key
from tests.fleet_tls import FleetPki, desk_web_toml, start_served, stop_served, wait_https

# One served central for the session. Imported by each test module instead, it was one per module, both under
# client id "central-ui" on the same broker, taking the session from each other tens of thousands of times.
from tests.ui.central_served import served_central  # noqa: F401 (fixture)

CHROMIUM = Path("/usr/bin/chromium")
# axe impacts that fail a page (WCAG 2.2 AA checks included in axe's defaults).
BLOCKING = {"serious", "critical"}
# The served desk lives for the whole session on the session's broker: an id no other test's desk uses, or the two
# would take each other's MQTT session (same client id) and each other's acks and commands.
UI_DESK = "desk-ui-01"


@pytest.fixture(scope="session")
def fleet(tmp_path_factory) -> tuple[FleetPki, DevicePki]:
    """The fleet CA and the desk enrolled with its web certificate for 127.0.0.1 and localhost."""
    root = tmp_path_factory.mktemp("ui-fleet")
    pki = FleetPki.create(root)
    return pki, pki.enrol(root / "device", UI_DESK, web=True)


@pytest.fixture(scope="session")
def browser_home(tmp_path_factory, fleet) -> Path:
    """A HOME whose NSS database trusts the fleet root CA for TLS servers (Chromium on Linux reads it)."""
    if shutil.which("certutil") is None:
        pytest.skip("certutil is not installed (apt-get install libnss3-tools)")
    home = tmp_path_factory.mktemp("ui-home")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "RFR fleet root (test)",
                    "-i", str(CaLayout(fleet[0].ca_dir).root_cert)], check=True)
    return home


@pytest.fixture(scope="session")
def playwright(fleet) -> Iterator[Playwright]:
    """Playwright's own HTTP client (``page.request``, Node) trusts the same fleet CA, through
    NODE_EXTRA_CA_CERTS, which Node reads only when the driver starts: so it is set before."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("NODE_EXTRA_CA_CERTS", str(fleet[0].bundle))
        driver = sync_playwright().start()
    yield driver
    driver.stop()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_home) -> dict[str, object]:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    return {"executable_path": str(CHROMIUM), "headless": True, "env": {**os.environ, "HOME": str(browser_home)},
            "args": ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]}


#: Accounts beyond USERS, for the browser tests of Authorised RFR Users: an officer whose authorisation to
#: search lapsed three days ago (tests/ui/test_search_authority.py).
LAPSED_USERS = {"officer_lapsed": "custody_officer"}


def _add_accounts(settings: ApplianceSettings) -> None:
    """The test accounts, written into the device database before the desk starts (cheap hashes: the cost is
    stored with each hash, so sign-in works the same)."""
    db = DeviceDatabase(settings.data_dir)
    saved = accounts_mod._N
    accounts_mod._N = 2**10
    try:
        service = AccountService(AccountStore(db), settings.auth)
        for name, role in USERS.items():
            service.add(name, role, PASSWORD, authorisation_for(role))
        for name, role in LAPSED_USERS.items():
            service.add(name, role, PASSWORD, current_authorisation(days_left=-3))
    finally:
        accounts_mod._N = saved
        db.close()
    seed_authorisation(settings)  # central's authorisation manifest for its library, through the desk's apply path


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, demo_library, mosquitto, fleet) -> Iterator[str]:
    """``python -m appliance serve`` over HTTPS on a free port; its base URL."""
    pki, desk = fleet
    root = tmp_path_factory.mktemp("ui-appliance")
    port = free_port()
    data_dir = desk.data_dir
    config = root / "appliance.toml"
    config.write_text(
        f'device_id = "{UI_DESK}"\ndata_dir = "{data_dir}"\n'
        f'fleet_command_public_key = "{write_command_key(root / "central-key")[1]}"\n'
        f'[library]\npath = "{own_copy(root, demo_library[0])}"\n'
        f'wrapped_key = "{provision_library_key(data_dir, UI_DESK, demo_library[1])}"\n'
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
        f'[web]\nport = {port}\nsecret_key = "test-secret-key-0123456789"\n' + desk_web_toml(desk))
    _add_accounts(load_settings(config))
    log = root / "appliance.log"
    proc = start_served("appliance", config, log)
    base = f"https://127.0.0.1:{port}"
    try:
        wait_https(base + "/login", pki.trust(), proc, log)
        yield base
    finally:
        assert stop_served(proc) == 0, log.read_text()[-3000:]


class Person:
    """One user in their own browser context (their own cookies: a separate session on the device)."""

    def __init__(self, browser, base: str, username: str) -> None:  # type: ignore[no-untyped-def]
        self.base, self.username = base, username
        self.context = browser.new_context()
        # axe-core for the accessibility checks, answered at the desk's own origin (so the page's CSP applies).
        self.context.route("**/vendor/axe.min.js", lambda route: route.fulfill(
            body=member("axe-core", "package/axe.min.js").read_bytes(), content_type="text/javascript"))
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
        assert username in USERS or username in LAPSED_USERS
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
