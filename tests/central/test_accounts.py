"""Central's accounts and sign-in: passwords, lockout, roles per page, safe redirects, CSRF, the CLI."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from central.__main__ import main
from central.accounts.service import LOCKOUT_AFTER, WRONG, AccountService, LoginRefusedError
from central.accounts.store import AccountStore
from central.peer_review.store import PeerReviewStore
from central.web.auth import MAX_SESSION_HOURS
from core.desk_config import PASSWORD_HASH
from core.passwords import verify_password
from tests.central.test_peer_review import make_request
from tests.central_signin import PASSWORD, add_account, csrf_token, log_in, signed_in


def test_wrong_password_and_unknown_user_get_the_same_clear_refusal(app: Flask, anonymous: FlaskClient) -> None:
    add_account(app, "auditor1", ["auditor"])
    wrong = log_in(anonymous, "auditor1", "not-the-password")
    unknown = log_in(anonymous, "nobody", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    for response in (wrong, unknown):
        page = response.get_data(as_text=True)
        assert WRONG in page and 'id="error-summary"' in page and page.count("<h1>") == 1
    assert anonymous.get("/audit").status_code == 302  # still not signed in


def test_password_is_stored_as_scrypt_in_the_desk_format(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "central.db")
    try:
        AccountService(store).add("auditor1", ["auditor"], PASSWORD)
        stored = store.get("auditor1")
        assert stored is not None and PASSWORD_HASH.fullmatch(stored.password_hash)
        assert verify_password(PASSWORD, stored.password_hash)
    finally:
        store.close()


def _exercise_store(store: AccountStore) -> None:
    service = AccountService(store)
    service.add("lead", ["fleet_admin", "auditor"], PASSWORD)
    assert not store.insert("lead", frozenset({"auditor"}), "scrypt$x", 0.0)  # a username is taken once
    assert service.authenticate("lead", PASSWORD) == service.account("lead")
    assert [(a.username, a.roles) for a in service.list()] == [("lead", {"auditor", "fleet_admin"})]
    with pytest.raises(LoginRefusedError):
        service.authenticate("lead", "not-the-password")
    assert store.get("lead").failed_logins == 1


def test_store_on_sqlite(tmp_path: Path) -> None:
    store = AccountStore(f"sqlite:///{tmp_path / 'central.db'}")
    try:
        _exercise_store(store)
    finally:
        store.close()


def test_store_on_postgres(postgres) -> None:
    store = AccountStore(postgres.create_database())
    try:
        _exercise_store(store)
    finally:
        store.close()


def test_repeated_wrong_passwords_lock_the_account(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "central.db")
    now = [1000.0]
    service = AccountService(store, clock=lambda: now[0])
    try:
        service.add("auditor1", ["auditor"], PASSWORD)
        for _ in range(LOCKOUT_AFTER - 1):
            with pytest.raises(LoginRefusedError, match="wrong"):
                service.authenticate("auditor1", "not-the-password")
        with pytest.raises(LoginRefusedError, match="now locked"):
            service.authenticate("auditor1", "not-the-password")
        with pytest.raises(LoginRefusedError, match="locked"):
            service.authenticate("auditor1", PASSWORD)
        now[0] += 16 * 60
        assert service.authenticate("auditor1", PASSWORD).roles == {"auditor"}
    finally:
        store.close()


def test_no_session_redirects_to_sign_in_with_next(anonymous: FlaskClient) -> None:
    for path in ("/audit", "/audit/export.csv", "/peer-review", "/fleet", "/reports", "/"):
        response = anonymous.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert anonymous.get("/audit?device=desk-a").headers["Location"] == "/login?next=/audit?device%3Ddesk-a"


def test_open_routes_need_no_sign_in(anonymous: FlaskClient) -> None:
    assert anonymous.get("/healthz").status_code == 200
    css = anonymous.get("/static/central.css")
    assert css.status_code == 200
    css.close()
    assert anonymous.get("/login").status_code == 200
    # The desks' TUF repository answers (here: no repository configured), never with a sign-in redirect.
    assert anonymous.get("/tuf/metadata/timestamp.json").status_code == 404


def test_sign_in_goes_to_next_and_shows_who_is_signed_in(app: Flask, anonymous: FlaskClient) -> None:
    add_account(app, "auditor1", ["auditor"])
    response = log_in(anonymous, "auditor1", next_url="/audit?device=desk-a")
    assert response.status_code == 302 and response.headers["Location"] == "/audit?device=desk-a"
    page = anonymous.get("/audit").get_data(as_text=True)
    assert "Signed in as <strong>auditor1</strong>" in page and "Sign out" in page
    assert "Peer review</a>" not in page  # no link to a page this account may not open


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/audit", "/\\evil.example", "audit"])
def test_off_site_next_is_ignored(app: Flask, anonymous: FlaskClient, target: str) -> None:
    add_account(app, "auditor1", ["auditor"])
    response = anonymous.post("/login", query_string={"next": target}, data={
        "csrf_token": csrf_token(anonymous.get("/login").get_data(as_text=True)),
        "username": "auditor1", "password": PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/audit"


def test_auditor_cannot_open_peer_review(app: Flask) -> None:
    client = signed_in(app, "auditor1", ["auditor"])
    assert client.get("/audit").status_code == 200
    response = client.get("/peer-review")
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "peer reviewer role" in page and "auditor1" in page and "Traceback" not in page
    assert client.get("/fleet").status_code == 403


def test_peer_reviewer_cannot_open_audit_export_or_reports(app: Flask) -> None:
    client = signed_in(app, "reviewer1", ["peer_reviewer"])
    assert client.get("/").headers["Location"] == "/peer-review"
    assert client.get("/peer-review").status_code == 200
    for path in ("/audit", "/audit/export.jsonl", "/reports"):
        assert client.get(path).status_code == 403
    json_refusal = client.get("/audit/export.jsonl", headers={"Accept": "application/json"})
    assert json_refusal.json["error"]["status"] == 403


def test_sign_in_without_csrf_token_is_refused(app: Flask, anonymous: FlaskClient) -> None:
    add_account(app, "auditor1", ["auditor"])
    response = anonymous.post("/login", data={"username": "auditor1", "password": PASSWORD})
    assert response.status_code == 400
    assert "reload the page and try again" in response.get_data(as_text=True)
    assert anonymous.get("/audit").status_code == 302


def test_logout_ends_the_session(app: Flask) -> None:
    client = signed_in(app, "auditor1", ["auditor"])
    page = client.get("/audit").get_data(as_text=True)
    assert client.post("/logout").status_code == 400  # sign-out is a form with a token, too
    response = client.post("/logout", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/audit").status_code == 302
    assert "Signed in as" not in client.get("/login").get_data(as_text=True)


def test_peer_review_outcome_records_the_signed_in_reviewer(app: Flask) -> None:
    reviews: PeerReviewStore = app.extensions["central.peer_reviews"]
    req = make_request()
    reviews.add_request(req)
    client = signed_in(app, "sgt.reviewer", ["peer_reviewer"])
    page = client.get(f"/peer-review/{req.request_id}").get_data(as_text=True)
    assert 'name="reviewer"' not in page and "sgt.reviewer" in page
    client.post(f"/peer-review/{req.request_id}", data={
        "csrf_token": csrf_token(page), "reviewer": "Someone Else", "decision-2": "not_viable",
        "notes": "Different ear shape and nose bridge."})
    record = reviews.get(req.request_id)
    assert record is not None and (record.status, record.reviewer) == ("decided", "sgt.reviewer")
    assert reviews.log(req.request_id)[0]["actor"] == "sgt.reviewer"


def _cli(db: Path, *args: str, password: str = PASSWORD, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return main(["accounts", "add", "--database", f"sqlite:///{db}", *args, "--password-stdin"])


def test_cli_creates_an_account_with_several_roles(tmp_path: Path, monkeypatch, capsys) -> None:
    db = tmp_path / "central.db"
    assert _cli(db, "--username", "lead", "--role", "auditor", "--role", "peer_reviewer",
                monkeypatch=monkeypatch) == 0
    assert "created central account lead with roles auditor, peer_reviewer" in capsys.readouterr().out
    assert main(["accounts", "list", "--database", f"sqlite:///{db}"]) == 0
    assert "lead\tauditor,peer_reviewer" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "password", "message"), [
    (["--username", "lead", "--role", "auditor"], "too-short", "at least 12 characters"),
    (["--username", "lead", "--role", "superuser"], PASSWORD, "There is no role 'superuser'"),
    (["--username", "bad name", "--role", "auditor"], PASSWORD, "A username is 1 to 64"),
])
def test_cli_refuses_bad_input_in_one_line(tmp_path: Path, monkeypatch, capsys, args, password, message) -> None:
    assert _cli(tmp_path / "central.db", *args, password=password, monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err
    assert message in err and "No account was created." in err and "Traceback" not in err


def test_cli_refuses_a_duplicate_user(tmp_path: Path, monkeypatch, capsys) -> None:
    db = tmp_path / "central.db"
    assert _cli(db, "--username", "lead", "--role", "auditor", monkeypatch=monkeypatch) == 0
    assert _cli(db, "--username", "lead", "--role", "fleet_admin", monkeypatch=monkeypatch) == 2
    assert "An account called lead already exists." in capsys.readouterr().err


def test_a_session_ends_after_the_maximum_hours_however_active(app: Flask) -> None:
    client = signed_in(app, "auditor1", ["auditor"])
    assert client.get("/audit").status_code == 200
    with client.session_transaction() as session:
        session["signed_in_at"] -= MAX_SESSION_HOURS * 3600 + 1
    response = client.get("/audit")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_a_page_without_a_sign_in_rule_stops_the_app_starting(tmp_path) -> None:
    """Closed by default: a new blueprint must be given a role or declared open before central starts."""
    from flask import Blueprint, Flask

    from central.web import auth

    app = Flask(__name__)
    auth.init_app(app, None, {"audit": "auditor"}, open_blueprints=frozenset({"health"}))  # type: ignore[arg-type]
    app.register_blueprint(Blueprint("library_admin", __name__))
    with pytest.raises(RuntimeError, match="library_admin"):
        auth.check_classified(app)
