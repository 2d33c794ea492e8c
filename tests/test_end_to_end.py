"""The whole system as a newcomer runs it: real broker, real processes, real models, real files.

Central's enrol command builds an encrypted library from registry-package photos; central and the
appliance run as their own processes (``python -m central serve``, ``python -m appliance serve``: gunicorn
over HTTPS, with certificates from a fleet CA made by ``provisioning``, the desk's issued at its enrolment);
an officer submits a case, an Inspector approves it, and a probe of an enrolled person is searched;
the right person ranks first and the search's audit event is stored and listed by central, read by an
auditor signed in to central with an account made by ``python -m central accounts add``.
"""

from __future__ import annotations

import http.cookiejar
import re
import ssl
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.appliance.http_desk import HttpDesk
from tests.fleet_tls import https_get
from tests.fleet_tls import opener as fleet_opener
from tests.served_system import served_system

CENTRAL_PASSWORD = "e2e-auditor-password"


def central_auditor(base: str, context: ssl.SSLContext) -> urllib.request.OpenerDirector:
    """An opener that keeps central's session cookie, signed in through the real form (with its CSRF token)."""
    opener = fleet_opener(context, urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    form = opener.open(base + "/login").read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token, "central's sign-in form carries no CSRF token"
    body = urllib.parse.urlencode({"csrf_token": token.group(1), "username": "auditor",
                                   "password": CENTRAL_PASSWORD}).encode()
    signin = urllib.request.Request(base + "/login", data=body, headers={"Referer": base + "/login"})
    page = opener.open(signin).read().decode()  # follows the redirect to /audit
    assert "Signed in as <strong>auditor</strong>" in page
    return opener


@pytest.fixture
def system(tmp_path: Path, mosquitto, enrolled_library):
    """Central and one appliance as separate processes, with a library built by central's command."""
    with served_system(tmp_path, mosquitto, enrolled_library, "desk-e2e-01",
                       central_accounts={"auditor": ("auditor", CENTRAL_PASSWORD)}) as served:
        yield served


def test_probe_ranks_the_enrolled_person_first_and_central_records_the_search(system, face_photo):
    # The desk's page comes over HTTPS with its enrolment certificate (trusted through the fleet CA) and HSTS.
    status, headers, _ = https_get(system["appliance"] + "/login", system["trust"])
    assert status == 200 and headers["Server"] == "gunicorn" and headers["Strict-Transport-Security"]
    officer = HttpDesk(system["appliance"], "officer", system["trust"])
    assert [c.secure for c in officer.cookies] == [True]  # the served desk's session cookie is HTTPS-only
    case_id = officer.submit()
    HttpDesk(system["appliance"], "inspector", system["trust"]).approve(case_id)
    html = officer.search(case_id, face_photo("obama3.jpg").read_bytes())  # his other photos are enrolled
    ranked = re.findall(r'data-subject="([^"]+)"', html)
    assert ranked[0] == "DEMO-OBAMA"
    # Each person once (their images grouped), distractors listed below him.
    assert len(ranked) == len(set(ranked)) and len(set(ranked)) > 2

    central = central_auditor(system["central"], system["trust"])
    deadline = time.monotonic() + 30
    audit_page = ""
    while time.monotonic() < deadline:
        audit_page = central.open(system["central"] + "/audit").read().decode()
        if "desk-e2e-01" in audit_page and "candidates_shown" in audit_page:
            break
        time.sleep(0.5)
    assert "desk-e2e-01" in audit_page and "candidates_shown" in audit_page

    # The snapshot and the device database hold nothing readable: no names, no SQLite header.
    for path in (system["tmp"] / "lib.db", system["tmp"] / "appliance" / "device.db"):
        raw = path.read_bytes()
        assert b"SQLite format 3" not in raw and b"DEMO-OBAMA" not in raw and b"desk-e2e-01" not in raw
