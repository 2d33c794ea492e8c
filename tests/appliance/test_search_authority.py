"""Authorised RFR Users at the desk: without a current authorisation to search, an officer signs in and sees
their cases but cannot start a request, take the photo or search; told why and whom to ask, and audited.

The real desk app (encrypted device database, models, library). The authorisation lapses by the desk's
own clock: an authorisation whose last day was yesterday is lapsed today, one whose last day is today is
not. Approvers are checked by rank as before, whatever their own authorisation.
"""

from __future__ import annotations

import functools
import html
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pytest

from appliance.services.policy import Role, can_run_desk
from appliance.services.search_authority import Standing, assess
from appliance.storage.accounts import AccountStore
from appliance.storage.device_db import DeviceDatabase
from core.desk_config import SEARCH_ROLES, SearchAuthorisation
from core.display_time import long_date
from core.events import AuditEvent
from tests.appliance.desk_helpers import (
    PASSWORD,
    SUBMISSION,
    Desk,
    accounts_command,
    add_users,
    approved_case,
    case_id_from,
    current_authorisation,
    events,
    fast_kdf,
    state_of,
)

ROOT = Path(__file__).resolve().parents[2]
WHOM = "Ask the RFR team, or your force's RFR single point of contact"


@pytest.fixture
def desk_app(app, monkeypatch):
    fast_kdf(monkeypatch)
    add_users(app)
    return app


def set_authorisation(app, username: str, auth: SearchAuthorisation | None) -> None:
    app.extensions["desk"].accounts.set_authorisation(username, auth)


def text(response) -> str:  # type: ignore[no-untyped-def]
    return html.unescape(response.get_data(as_text=True))


# --- the rule -------------------------------------------------------------------------------------------------


def test_the_roles_that_need_an_authorisation_are_the_roles_that_search():
    assert {r.value for r in Role if can_run_desk(r)} == SEARCH_ROLES


def test_the_rule_by_the_day():
    today = date(2026, 12, 4)
    auth = SearchAuthorisation(trained_on=date(2025, 12, 1), authorised_until=today, business_area="Custody")
    assert assess(Role.CUSTODY_OFFICER, auth, today).standing is Standing.ENDING_SOON  # its last day: still good
    assert assess(Role.CUSTODY_OFFICER, auth, today).days_left == 0
    lapsed = assess(Role.DETENTION_OFFICER, auth, today + timedelta(days=1))
    assert lapsed.standing is Standing.LAPSED and not lapsed.may_search
    assert "lapsed on 4 December 2026" in lapsed.refusal and WHOM in lapsed.refusal
    later = auth.model_copy(update={"authorised_until": today + timedelta(days=30)})
    assert assess(Role.INSPECTOR, later, today).standing is Standing.CURRENT
    assert assess(Role.INSPECTOR, later, today + timedelta(days=1)).standing is Standing.ENDING_SOON
    missing = assess(Role.SUPERINTENDENT, None, today)
    assert missing.standing is Standing.MISSING and "no authorisation to search is recorded" in missing.refusal
    for role in (Role.AUDITOR, Role.DEVICE_ADMIN, Role.TECHNICAL_ADVISER):
        assert assess(role, None, today).standing is Standing.NOT_NEEDED


# --- at the desk ----------------------------------------------------------------------------------------------


def test_a_lapsed_officer_signs_in_sees_their_cases_but_cannot_submit_photograph_or_search(desk_app, face_photo):
    app = desk_app
    desk, case_id = approved_case(app, "officer", "inspector")
    assert desk.upload(case_id, face_photo("obama3.jpg").read_bytes()).status_code == 200
    _, approved_only = approved_case(app, "officer", "inspector", custody_ref="CR-2025-00456")
    lapsed_on = date.today() - timedelta(days=3)
    set_authorisation(app, "officer", current_authorisation(days_left=-3))

    officer = Desk(app, "officer")  # signs in
    home = text(officer.get("/"))
    assert f"lapsed on {long_date(lapsed_on)}" in home and WHOM in home
    assert "Start a new facial search request" not in home
    assert "CR-2025-00123" in home and "CR-2025-00456" in home  # their cases are still listed
    assert officer.get(f"/cases/{case_id}").status_code == 200  # and open

    searched = officer.post(f"/cases/{case_id}/search")
    assert searched.status_code == 403
    assert f"lapsed on {long_date(lapsed_on)}" in text(searched) and WHOM in text(searched)
    assert state_of(app, case_id) == "probe_captured" and app.extensions["desk"].cases.candidates(case_id) == []

    photo = officer.upload(approved_only, face_photo("obama3.jpg").read_bytes())
    assert photo.status_code == 403 and "lapsed on" in text(photo)
    assert app.extensions["desk"].cases.probe(approved_only) is None  # no photo of the detainee was kept

    form = officer.get("/cases/new")
    assert form.status_code == 403 and "lapsed on" in text(form) and "Reason for the search" not in text(form)
    before = len(app.extensions["desk"].cases.list())
    submitted = officer.submit()
    assert submitted.status_code == 403 and "lapsed on" in text(submitted)
    assert officer.submit(custody_ref="").status_code == 403  # an incomplete form is refused the same way
    assert len(app.extensions["desk"].cases.list()) == before

    refused = [e for e in events(app, "search_refused") if e["outcome"] == "not_authorised_user"]
    assert [(e["actor"], e["details"]["step"], e["details"]["case_id"]) for e in refused] == [
        ("officer", "search", case_id), ("officer", "photo", approved_only)]
    assert refused[0]["details"]["refusal"] == "lapsed"
    assert refused[0]["details"]["authorised_until"] == lapsed_on.isoformat()
    requests = [e for e in events(app, "request_refused") if e["outcome"] == "not_authorised_user"]
    assert [(e["actor"], e["details"]["step"], e["details"]["refusal"]) for e in requests] == [
        ("officer", "submission", "lapsed")] * 2
    assert not [e for e in events(app, "search") if e["details"].get("case_id") == case_id]

    # Renewed (a new authorisation recorded): the same session searches at once, no new sign-in.
    set_authorisation(app, "officer", current_authorisation())
    assert officer.post(f"/cases/{case_id}/search").status_code == 302
    assert state_of(app, case_id) == "candidates_shown"


def test_no_authorisation_recorded_says_so_and_approvers_are_checked_by_rank_as_before(desk_app):
    app = desk_app
    set_authorisation(app, "officer2", None)
    officer2 = Desk(app, "officer2")
    home = text(officer2.get("/"))
    assert "no authorisation to search is recorded for your account" in home and WHOM in home
    response = officer2.submit()
    assert response.status_code == 403 and "Authorised RFR Users" in text(response)
    assert events(app, "request_refused")[-1]["details"]["refusal"] == "missing"

    # An Inspector with no authorisation of their own still approves (approving is not searching).
    set_authorisation(app, "inspector", None)
    case_id = case_id_from(Desk(app, "officer").submit())
    assert Desk(app, "inspector").post(f"/cases/{case_id}/approve", {"password": PASSWORD}).status_code == 302
    assert state_of(app, case_id) == "approved"


def test_the_home_page_shows_the_authorisation_and_warns_within_thirty_days(desk_app):
    app = desk_app
    officer = Desk(app, "officer")
    home = text(officer.get("/"))
    until = date.today() + timedelta(days=365)
    assert f"You are authorised to search until {long_date(until)}" in home
    assert "Custody, test division" in home and "Renew soon" not in home
    assert "Start a new facial search request" in home
    desk_today = app.extensions["desk"].cases.authority.today()  # the desk's day, not this machine's
    set_authorisation(app, "officer", current_authorisation(days_left=10, today=desk_today))
    home = text(officer.get("/"))
    assert "Renew soon." in home and "(10 days left)" in home and WHOM in home
    assert "Start a new facial search request" in home  # still current: warned, not stopped
    auditor_home = text(Desk(app, "auditor").get("/"))
    assert "Your authorisation to search" not in auditor_home


# --- storage and the device administrator's command -----------------------------------------------------------


def test_an_older_device_database_gains_the_columns_and_its_accounts_have_no_authorisation(tmp_path):
    db = DeviceDatabase(tmp_path)
    db.conn.executescript("""CREATE TABLE accounts (username TEXT PRIMARY KEY, role TEXT NOT NULL,
        password_hash TEXT NOT NULL, failed_logins INTEGER NOT NULL DEFAULT 0, locked_until REAL NOT NULL DEFAULT 0,
        created_at REAL NOT NULL, disabled INTEGER NOT NULL DEFAULT 0);
        INSERT INTO accounts (username, role, password_hash, created_at) VALUES ('old', 'custody_officer', 'x', 1);""")
    db.conn.commit()
    store = AccountStore(db)
    row = store.get("old")
    assert row is not None and row.authorisation is None
    auth = current_authorisation()
    assert store.set_authorisation("old", auth) and store.get("old").authorisation == auth  # type: ignore[union-attr]
    AccountStore(db)  # opening again changes nothing
    db.close()
    with pytest.raises(sqlite3.DatabaseError):  # still encrypted: not readable without the key
        sqlite3.connect(tmp_path / "device.db").execute("SELECT * FROM accounts").fetchall()


def test_device_admin_command_records_authorisations(tmp_path, demo_library):
    run = functools.partial(accounts_command(tmp_path, "desk-cli-02", demo_library), stdin="a long passphrase here\n")

    made = run("add", "--username", "pc1", "--role", "custody_officer", "--password-stdin", "--trained-on",
               "2026-01-12", "--search-authorised-until", "2027-01-11", "--business-area", "Custody, North")
    assert made.returncode == 0, made.stderr
    assert "authorised to search until 2027-01-11" in made.stdout
    for args, phrase in (
            (("--trained-on", "2026-01-12"), "account not created: Give all three"),
            (("--trained-on", "12/01/2026", "--search-authorised-until", "2027-01-11", "--business-area", "C"),
             "account not created: Give the training date and the last day of the authorisation as YYYY-MM-DD"),
            (("--trained-on", "2026-01-12", "--search-authorised-until", "2026-01-01", "--business-area", "C"),
             "account not created: The authorisation to search is not valid: authorised_until 2026-01-01 must be "
             "after trained_on 2026-01-12")):
        bad = run("add", "--username", "pc2", "--role", "custody_officer", "--password-stdin", *args)
        assert bad.returncode == 1 and phrase in bad.stderr, bad.stderr
    auditor = run("add", "--username", "aud", "--role", "auditor", "--password-stdin", "--trained-on", "2026-01-12",
                  "--search-authorised-until", "2027-01-11", "--business-area", "Custody")
    assert auditor.returncode == 1 and "does not search, so needs no authorisation" in auditor.stderr
    plain = run("add", "--username", "pc3", "--role", "detention_officer", "--password-stdin")
    assert plain.returncode == 0 and "cannot start a request or search until" in plain.stdout

    renewed = run("authorise", "--username", "pc3", "--trained-on", "2026-02-01", "--search-authorised-until",
                  "2027-02-01", "--business-area", "Custody, South")
    assert renewed.returncode == 0 and "authorised to search until 2027-02-01" in renewed.stdout
    assert run("authorise", "--username", "nobody", "--remove").stderr.startswith(
        "authorisation not recorded: There is no account called nobody")
    listed = run("list").stdout
    assert "pc1\tcustody_officer\ttrained 2026-01-12, authorised until 2027-01-11, Custody, North" in listed
    assert "pc3\tdetention_officer\ttrained 2026-02-01, authorised until 2027-02-01, Custody, South" in listed
    assert run("authorise", "--username", "pc1", "--remove").returncode == 0
    assert "pc1\tcustody_officer\tno authorisation to search" in run("list").stdout


def test_authorisations_given_or_removed_by_the_command_are_audited(tmp_path, demo_library):
    """Who may search is decided at the shell too: central must see each such change in the desk's chain."""
    run = functools.partial(accounts_command(tmp_path, "desk-cli-03", demo_library), stdin="a long passphrase here\n")
    assert run("add", "--username", "pc1", "--role", "custody_officer", "--password-stdin", "--trained-on",
               "2026-01-12", "--search-authorised-until", "2027-01-11", "--business-area", "Custody").returncode == 0
    assert run("authorise", "--username", "pc1", "--remove").returncode == 0
    assert run("authorise", "--username", "pc1", "--trained-on", "2026-02-01", "--search-authorised-until",
               "2027-02-01", "--business-area", "Custody, South").returncode == 0
    db = DeviceDatabase(tmp_path / "device")
    try:
        changes = [e for e in (AuditEvent.from_bytes(bytes(r[0]))
                               for r in db.conn.execute("SELECT payload FROM audit_log ORDER BY seq"))
                   if e.type == "config_change"]
    finally:
        db.close()
    assert [(e.outcome, e.details["username"], e.details["authorised_until"]) for e in changes] == [
        ("account_created", "pc1", "2027-01-11"), ("search_authorisation_removed", "pc1", None),
        ("search_authorisation_recorded", "pc1", "2027-02-01")]
    assert all(e.actor.startswith("shell:") for e in changes)


def test_a_returned_request_cannot_be_sent_again_once_the_authorisation_has_lapsed(desk_app):
    app = desk_app
    officer = Desk(app, "officer")
    case_id = case_id_from(officer.submit())
    returned = Desk(app, "inspector").post(f"/cases/{case_id}/return",
                                           {"return_note": "Say which fingerprint check was done."})
    assert returned.status_code == 302 and state_of(app, case_id) == "returned"
    set_authorisation(app, "officer", current_authorisation(days_left=-1))
    again = officer.post(f"/cases/{case_id}/resubmit", SUBMISSION)
    assert again.status_code == 403 and "lapsed on" in text(again) and WHOM in text(again)
    assert state_of(app, case_id) == "returned"
    refused = events(app, "search_refused")[-1]
    assert (refused["outcome"], refused["details"]["step"], refused["details"]["case_id"]) == (
        "not_authorised_user", "submission", case_id)
