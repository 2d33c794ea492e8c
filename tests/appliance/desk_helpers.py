"""Helpers to drive the desk workflow through Flask's test client (reusable by other test modules).

``Desk(app, "officer")`` signs one user in on its own client (its own device
session); ``approved_case`` walks a case to the point where a photo can be
taken, the way tests/test_end_to_end.py must now do before it can search.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import date, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.datastructures import FileStorage
from werkzeug.test import TestResponse, encode_multipart

from core.desk_config import SEARCH_ROLES, SearchAuthorisation
from core.morphology import COMPONENTS
from tests.desk_keys import provision_library_key
from tests.fleet_key import write_command_key

PASSWORD = "correct horse battery staple"
USERS = {
    "officer": "custody_officer",
    "officer2": "detention_officer",
    "inspector": "inspector",
    "inspector2": "inspector",
    "super": "superintendent",
    "adviser": "technical_adviser",
    "adviser2": "technical_adviser",
    "admin": "device_admin",
    "auditor": "auditor",
}
SUBMISSION = {
    "custody_ref": "CR-2025-00123",
    "reason": "false_details",
    "checks": ["pnc_name_search", "fingerprints"],
    "checks_detail": "PNC found no trace of the name given; fingerprints returned no match on IDENT1.",
    "age_band": "18_plus",
    "disability": "no",
    "reassignment": "no",
    "libraries": ["national"],  # the test desk's one library, authorised for custody (``library_manifest``)
}

#: The answer a confirmation page sends with the same form when a step destroys data (``confirm.html``).
CONFIRM = {"confirm": "yes"}
#: A feature comparison with every component answered (the ears cannot be seen).
FEATURES = {f"feature-{k}": "similar" for k in COMPONENTS} | {"feature-ears": "not_visible"}
#: A complete Match Report for candidate 1: the five factors, the judgement, the comparison, the check.
MATCH_REPORT = {"rank": "1", "probe_quality": "Good, frontal, sharp.", "reference_quality": "Good studio photo.",
                "time_lapse": "About 3 years.", "lighting": "Even in both.", "other_factors": "None seen.",
                "age_judgement": "Adult in both; little change expected.", "rationale": "Ear shape and scar agree.",
                **FEATURES, "checked_prefill": "yes"}


def fast_kdf(monkeypatch: Any) -> None:
    """Cheaper scrypt for tests only (hashes record their own parameters, so verification still works)."""
    monkeypatch.setattr("appliance.services.accounts._N", 2**10)


def current_authorisation(days_left: int = 365, today: date | None = None) -> SearchAuthorisation:
    """An authorisation to search that runs ``days_left`` more days (negative: lapsed that many days ago).
    ``today``: the desk's own day (``SearchAuthority.today``, in its time zone) where a test counts the days
    left exactly; this machine's day otherwise, which can differ from the desk's around midnight."""
    today = today or date.today()
    return SearchAuthorisation(trained_on=today - timedelta(days=400),
                               authorised_until=today + timedelta(days=days_left),
                               business_area="Custody, test division")


def authorisation_for(role: str) -> SearchAuthorisation | None:
    """What the test accounts carry: a current authorisation for the roles that search (Authorised RFR Users)."""
    return current_authorisation() if role in SEARCH_ROLES else None


def add_users(app: Flask, users: dict[str, str] = USERS) -> None:
    accounts = app.extensions["desk"].accounts
    for name, role in users.items():
        accounts.add(name, role, PASSWORD, authorisation_for(role))


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(r'"X-CSRFToken": "([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def case_id_from(response: TestResponse) -> str:
    match = re.search(r"/cases/([0-9A-F]+)$", response.headers["Location"])
    assert match, response.headers.get("Location")
    return match.group(1)


class Desk:
    """One person at the device: their own client, cookies and CSRF token."""

    browsers = 0

    def __init__(self, app: Flask, username: str | None = None, password: str = PASSWORD) -> None:
        self.client = app.test_client()
        # Each person's browser on an address of its own, so refusals a test provokes on purpose do not add up
        # into one address's sign-in delay for everyone else in it (core.throttle; tests of that set their own).
        Desk.browsers += 1
        self.client.environ_base["REMOTE_ADDR"] = f"10.30.{Desk.browsers // 250 % 250}.{Desk.browsers % 250 + 1}"
        self.token = ""
        if username:
            response = self.login(username, password)
            assert response.status_code == 302, response.get_data(as_text=True)

    def login(self, username: str, password: str = PASSWORD) -> TestResponse:
        self.token = csrf_from(self.client.get("/login").get_data(as_text=True))
        response = self.client.post("/login", data={"username": username, "password": password,
                                                    "csrf_token": self.token})
        if response.status_code == 302:
            self.refresh()
        return response

    def refresh(self) -> None:
        self.token = csrf_from(self.client.get("/").get_data(as_text=True))

    def get(self, path: str) -> TestResponse:
        return self.client.get(path)

    def post(self, path: str, data: dict[str, Any] | None = None, htmx: bool = False) -> TestResponse:
        headers = {"HX-Request": "true"} if htmx else {}
        return self.client.post(path, data={**(data or {}), "csrf_token": self.token}, headers=headers)

    def upload(self, case_id: str, photo: bytes, filename: str = "probe.jpg") -> TestResponse:
        boundary, body = encode_multipart({"probe": FileStorage(BytesIO(photo), filename=filename)})
        return self.client.post(f"/cases/{case_id}/probe", data=body, headers={
            "HX-Request": "true", "X-CSRFToken": self.token}, content_type=f"multipart/form-data; boundary={boundary}")

    def submit(self, **over: Any) -> TestResponse:
        return self.post("/cases", {**SUBMISSION, **over})


def approved_case(app: Flask, officer: str = "officer", approver: str = "inspector", **over: Any) -> tuple[Desk, str]:
    """Submit as ``officer`` and approve as ``approver``: the case is ready for its photo."""
    desk = Desk(app, officer)
    case_id = case_id_from(desk.submit(**over))
    boss = Desk(app, approver)
    response = boss.post(f"/cases/{case_id}/approve", {"password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    return desk, case_id


def subjects_in_order(html: str) -> list[str]:
    """The people on a candidates page, in the order shown (each person once)."""
    return [subject for _, subject in people_in_order(html)]


def people_in_order(html: str) -> list[tuple[int, str]]:
    """(rank of the best image, subject) of each person on a candidates page, in the order shown."""
    found = re.findall(r'<fieldset class="candidate[^"]*" data-subject="([^"]+)"\s+data-rank="(\d+)"', html)
    return [(int(rank), subject) for subject, rank in found]


def judgement(html: str, first: str, rest: str = "not_viable") -> dict[str, str]:
    """The adjudication form as the page sends it: ``first`` for the best-scoring person, ``rest`` for everyone else."""
    people = people_in_order(html)
    return {f"decision-{rank}": first if i == 0 else rest for i, (rank, _) in enumerate(people)}


def events(app: Flask, type_: str) -> list[dict[str, Any]]:
    """The desk's audit events of one type, as queued for central."""
    out = []
    for p in app.extensions["desk"].outbox.pending(limit=1000):
        event = json.loads(p.payload)
        if event["type"] == type_:
            out.append(event)
    return out


def state_of(app: Flask, case_id: str) -> str:
    return str(app.extensions["desk"].cases.get(case_id).state.value)


def to_candidates(desk: Desk, case_id: str, photo: bytes) -> str:
    """Upload the photo, search, and return the candidates page."""
    assert desk.upload(case_id, photo).status_code == 200
    assert desk.post(f"/cases/{case_id}/search").status_code == 302
    return desk.get(f"/cases/{case_id}/candidates").get_data(as_text=True)


def same_page(html: str) -> str:
    """The page without its CSRF tokens, which carry a timestamp and differ on every request."""
    return re.sub(r'("X-CSRFToken": "|name="csrf_token" value=")[^"]+', r"\1", html)


def accounts_command(tmp_path: Path, device_id: str, demo_library: tuple[Path, Path]
                     ) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``python -m appliance accounts ARGS --config FILE`` as the device administrator runs it, against a
    settings file written for a desk whose data lives in ``tmp_path / "device"``; ``stdin`` feeds the password."""
    config = tmp_path / "appliance.toml"
    wrapped = provision_library_key(tmp_path / "device", device_id, demo_library[1])
    config.write_text(
        f'device_id = "{device_id}"\ndata_dir = "{tmp_path / "device"}"\n'
        f'fleet_command_public_key = "{write_command_key(tmp_path / "central-key")[1]}"\n'
        f'[library]\npath = "{demo_library[0]}"\nwrapped_key = "{wrapped}"\n'
        f'[web]\nsecret_key = "cli-secret-key-0123456789"\n')
    root = Path(__file__).resolve().parents[2]

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "appliance", "accounts", *args, "--config", str(config)],
                              cwd=root, input=stdin, capture_output=True, text=True, check=False)
    return run
