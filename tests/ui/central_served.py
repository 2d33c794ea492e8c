"""Central as it is served (``python -m central serve``: gunicorn over HTTPS with the fleet PKI the browser
trusts), with a seeded database, for the browser tests of the auditor's and the reports' pages.

Import the fixture into a test module (``from tests.ui.central_served import served_central``). Its
database is filled before the server starts: accounts, the case trail of ``tests.central.case_trail``
(desk events with signed checkpoints and a peer review at central), the reports' events, and a heartbeat
from a desk on the evaluation-grade model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from central.publish.repository import init_repository
from central.web import close_stores, create_app
from models.manifest import load_manifest
from supply.pinned import member
from testbed.ports import free_port
from tests.central import case_trail
from tests.central.test_reports import seed as seed_reports
from tests.central_signin import PASSWORD, add_account
from tests.fleet_tls import start_served, stop_served, wait_https

USERS = {"auditor": ["auditor"], "fleetadmin": ["fleet_admin"], "libalice": ["library_authoriser"],
         "libbob": ["library_authoriser"]}
#: The two widths every page is judged at (issue 17): a laptop, and a narrow window or a zoomed one.
VIEWPORTS = {"1366x768": {"width": 1366, "height": 768}, "800px": {"width": 800, "height": 900}}


@dataclass(frozen=True)
class ServedCentral:
    url: str
    log: Path


def _seed(database: Path) -> None:
    app = create_app(test_config={"TESTING": True, "SECRET_KEY": "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k",
                                  "DATABASE": str(database)})
    try:
        for name, roles in USERS.items():
            add_account(app, name, roles)
        case_trail.seed(app.extensions["central.audit_store"], app.extensions["central.registry"],
                        app.extensions["central.peer_reviews"])
        seed_reports(app.extensions["central.audit_store"])
        now = datetime.now(UTC)
        app.extensions["central.health_store"].record_health(dict(
            device_id="desk-north", received_at=now.isoformat(timespec="milliseconds"), sent_at=now.isoformat(),
            interval_s=3600.0, software_version="0.1.0", library_version=7,
            embedder_id=load_manifest("mobilefacenet").ref, disk_free_bytes=50, disk_total_bytes=100,
            memory_available_bytes=1, memory_total_bytes=2, outbox_depth=0, since_last_sync_s=1.0,
            clock_offset_s=0.0, key_protection="tpm"))
    finally:
        close_stores(app)


@pytest.fixture(scope="session")
def served_central(tmp_path_factory, fleet, mosquitto) -> Iterator[ServedCentral]:  # type: ignore[no-untyped-def]
    pki = fleet[0]
    root = tmp_path_factory.mktemp("ui-central")
    repo = init_repository(root / "repo", root / "offline-root-keys")
    port = free_port()
    config = pki.central_config(root, mosquitto, port, repo.repo_dir, "central-ui")
    (root / "central").mkdir()
    _seed(root / "central" / "central.db")
    log = root / "central.log"
    proc = start_served("central", config, log)
    url = f"https://127.0.0.1:{port}"
    try:
        wait_https(url + "/healthz", pki.trust(), proc, log)
        yield ServedCentral(url, log)
    finally:
        assert stop_served(proc) == 0, log.read_text()[-3000:]
    # Its MQTT session was its own all along: a second central under the same client id takes it over and back.
    takeovers = log.read_text().count('"event":"disconnected_from_broker_reconnecting"')
    assert takeovers < 5, f"the served central lost its broker session {takeovers} times"


def central_page(browser: Browser, central: ServedCentral, username: str, viewport: dict[str, int]) -> Page:
    """A new browser context signed in to central as ``username`` at ``viewport``, with axe-core answered at
    the site's own origin (``/vendor/axe.min.js``) so the checks run under central's CSP."""
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    context.route("**/vendor/axe.min.js", lambda route: route.fulfill(
        body=member("axe-core", "package/axe.min.js").read_bytes(), content_type="text/javascript"))
    page = context.new_page()
    csp: list[str] = []
    page.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text else None)
    page.csp_errors = csp  # type: ignore[attr-defined]
    page.goto(central.url + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    return page


def fits(page: Page) -> bool:
    """Nothing sticks out sideways: the page needs no horizontal scrolling at this width."""
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))
