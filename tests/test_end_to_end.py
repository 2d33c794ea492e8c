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
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from appliance.settings import load as load_appliance_settings
from testbed.ports import free_port
from tests.appliance.http_desk import HttpDesk, create_accounts
from tests.desk_authorisation import seed_authorisation
from tests.fleet_tls import FleetPki, desk_web_toml, https_get, start_served, stop_served, wait_https
from tests.fleet_tls import opener as fleet_opener

ROOT = Path(__file__).resolve().parents[1]


CENTRAL_PASSWORD = "e2e-auditor-password"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=False,
                            input=stdin)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


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
def system(tmp_path: Path, mosquitto):
    """Central and one appliance as separate processes, with a library built by central's command."""
    run("-m", "central.enrolment", "demo-import", "--out", str(tmp_path / "import"))
    run("-m", "central.enrolment", "enrol", "--images", str(tmp_path / "import" / "images"),
        "--csv", str(tmp_path / "import" / "subjects.csv"),
        "--out", str(tmp_path / "lib.db"), "--key-file", str(tmp_path / "lib.key"))
    central_port, appliance_port = free_port(), free_port()
    pki = FleetPki.create(tmp_path / "fleet")
    desk_pki = pki.enrol(tmp_path / "appliance", "desk-e2e-01", web=True)
    # Central's fleet-command key signs its acks, outcomes and announcements; the desk is given the public half.
    command_key = tmp_path / "central-keys" / "fleet-command.pem"
    run("-m", "central", "devices", "command-key", "--out", str(command_key))
    wrapped = tmp_path / "appliance" / "pki" / "library.wrapped"
    (tmp_path / "central.toml").write_text(
        f'data_dir = "{tmp_path / "central"}"\n'
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\nclient_id = "central-e2e"\n'
        f'[web]\nport = {central_port}\nsecret_key = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"\n'
        + pki.central_web_toml()
        + f'[fleet]\ncommand_key = "{command_key}"\n'
    )
    (tmp_path / "appliance.toml").write_text(
        f'device_id = "desk-e2e-01"\ndata_dir = "{tmp_path / "appliance"}"\n'
        f'fleet_command_public_key = "{command_key}.pub"\n'
        f'[library]\npath = "{tmp_path / "lib.db"}"\nwrapped_key = "{wrapped}"\n'
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
        f'[web]\nport = {appliance_port}\nsecret_key = "e2e-secret-key-0123456789"\n' + desk_web_toml(desk_pki)
    )
    # Provisioning: the appliance's audit signing key and key-wrapping key are made on the desk and registered
    # with central before first start (central refuses audit messages from devices it has no key for); central
    # wraps the library key to the desk, which never sees the plain key file.
    from appliance.storage.signing_key import PUBLIC_NAME, load_or_create_signing_key

    load_or_create_signing_key(tmp_path / "appliance")
    # (the desk's keys, its key-wrapping key included, were made at its enrolment above: pki.enrol)
    run("-m", "central", "devices", "register", "--id", "desk-e2e-01",
        "--public-key", str(tmp_path / "appliance" / PUBLIC_NAME), "--config", str(tmp_path / "central.toml"),
        "--wrap-key", str(tmp_path / "appliance" / "pki" / "library-wrap.pub"))
    run("-m", "central", "devices", "wrap-library-key", "--id", "desk-e2e-01", "--key-file", str(tmp_path / "lib.key"),
        "--out", str(wrapped), "--config", str(tmp_path / "central.toml"))
    run("-m", "central", "accounts", "add", "--config", str(tmp_path / "central.toml"), "--username", "auditor",
        "--role", "auditor", "--password-stdin", stdin=CENTRAL_PASSWORD + "\n")
    create_accounts(tmp_path / "appliance.toml", {"officer": "custody_officer", "inspector": "inspector"})
    # Central's authorisation manifest for the desk's library, through the desk's apply path: a desk searches
    # only libraries it is authorised to (#18).
    seed_authorisation(load_appliance_settings(tmp_path / "appliance.toml"))
    logs = {name: tmp_path / f"{name}.log" for name in ("central", "appliance")}
    procs = {name: start_served(name, tmp_path / f"{name}.toml", logs[name]) for name in ("central", "appliance")}
    try:
        wait_https(f"https://127.0.0.1:{central_port}/healthz", pki.trust(), procs["central"], logs["central"])
        wait_https(f"https://127.0.0.1:{appliance_port}/login", pki.trust(), procs["appliance"], logs["appliance"])
        yield {"central": f"https://127.0.0.1:{central_port}", "appliance": f"https://127.0.0.1:{appliance_port}",
               "tmp": tmp_path, "trust": pki.trust()}
    finally:
        codes = {name: stop_served(proc) for name, proc in procs.items()}
        assert codes == {"central": 0, "appliance": 0}, {n: logs[n].read_text()[-3000:] for n in logs}


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
