"""Central's accounts and sign-in: passwords, the throttle, roles per page, safe redirects, CSRF, the CLI."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from central.__main__ import main
from central.accounts.service import AccountService, LoginRefusedError
from central.accounts.store import AccountStore
from central.peer_review.store import PeerReviewStore
from core.desk_config import PASSWORD_HASH
from core.passwords import hash_password, verify_password
from core.throttle import REFUSED
from tests.central.test_peer_review import make_request
from tests.central_signin import PASSWORD, add_account, copied_session, csrf_token, log_in, signed_in

NEW_PASSWORD = "a-new-central-password"


def test_wrong_password_and_unknown_user_get_the_same_clear_refusal(app: Flask, anonymous: FlaskClient) -> None:
    add_account(app, "auditor1", ["auditor"])
    wrong = log_in(anonymous, "auditor1", "not-the-password")
    unknown = log_in(anonymous, "nobody", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    for response in (wrong, unknown):
        page = response.get_data(as_text=True)
        assert REFUSED in page and 'id="error-summary"' in page and page.count("<h1>") == 1
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
    signed_in_as = service.authenticate("lead", PASSWORD).session_generation
    assert service.disable("lead") and not service.disable("lead")
    with pytest.raises(LoginRefusedError):
        service.authenticate("lead", PASSWORD)
    assert service.enable("lead") and not service.enable("lead")
    assert service.for_session("lead", signed_in_as) is None  # enabling does not revive the old session
    service.change_password("lead", NEW_PASSWORD)
    with pytest.raises(LoginRefusedError):
        service.authenticate("lead", PASSWORD)
    now = service.authenticate("lead", NEW_PASSWORD).session_generation
    assert service.for_session("lead", now) is not None and store.get("lead").failed_logins == 0


def test_store_keeps_accounts_roles_locks_and_session_generations(database_url: str) -> None:
    store = AccountStore(database_url)
    try:
        _exercise_store(store)
    finally:
        store.close()


# central_accounts as the first release with sign-in made it, before sessions could be ended.
_FIRST_SCHEMA = """CREATE TABLE central_accounts (
    username TEXT PRIMARY KEY, roles TEXT NOT NULL, password_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until DOUBLE PRECISION NOT NULL DEFAULT 0, disabled INTEGER NOT NULL DEFAULT 0)"""
_FIRST_ROW = ("INSERT INTO central_accounts (username, roles, password_hash, created_at)"
              " VALUES ('lead', 'auditor', ?, 0)")


def test_a_database_from_before_session_generations_keeps_working(database_url: str) -> None:
    if database_url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(database_url[len("sqlite:///"):]) as conn:
            conn.execute(_FIRST_SCHEMA)
            conn.execute(_FIRST_ROW, (hash_password(PASSWORD),))
        conn.close()
    else:
        import psycopg

        with psycopg.connect(database_url, autocommit=True) as pg:
            pg.execute(_FIRST_SCHEMA)
            pg.execute(_FIRST_ROW.replace("?", "%s"), (hash_password(PASSWORD),))
    for _ in range(2):  # opening it again finds the column already there
        store = AccountStore(database_url)
        try:
            service = AccountService(store)
            assert service.authenticate("lead", PASSWORD).roles == {"auditor"}
            service.change_password("lead", NEW_PASSWORD)
            service.change_password("lead", PASSWORD)
            assert service.existing("lead").session_generation > 0
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
    # The desks' TUF repository needs no sign-in but a desk's fleet certificate: refused, never a sign-in redirect.
    assert anonymous.get("/tuf/metadata/timestamp.json").status_code == 403


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


def test_a_page_without_a_sign_in_rule_stops_the_app_starting(tmp_path) -> None:
    """Closed by default: a new blueprint must be given a role or declared open before central starts."""
    from flask import Blueprint, Flask

    from central.web import auth

    app = Flask(__name__)
    auth.init_app(app, None, None, {"audit": "auditor"},  # type: ignore[arg-type]
                  open_blueprints=frozenset({"health"}))
    app.register_blueprint(Blueprint("library_admin", __name__))
    with pytest.raises(RuntimeError, match="library_admin"):
        auth.check_classified(app)


def _accounts_cli(app: Flask, *args: str) -> int:
    """``python -m central accounts ...`` on the app's own database, as an administrator on the server would."""
    command, *rest = args
    return main(["accounts", command, "--database", app.config["DATABASE"], *rest])


def _type_passwords(monkeypatch: pytest.MonkeyPatch, *typed: str) -> list[str]:
    """Answer the terminal's password prompts in order; returns the prompts shown."""
    answers, prompts = iter(typed), []

    def getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr("getpass.getpass", getpass)
    return prompts


def _refused_to_sign_in(response) -> bool:  # type: ignore[no-untyped-def]
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_disabling_an_account_ends_its_session_and_stops_sign_in(app: Flask, anonymous: FlaskClient,
                                                                 capsys) -> None:
    client = signed_in(app, "auditor1", ["auditor"])
    assert client.get("/audit").status_code == 200
    assert _accounts_cli(app, "disable", "auditor1") == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "disabled central account auditor1" in out and "accounts enable auditor1" in out
    assert _refused_to_sign_in(client.get("/audit"))
    refused = log_in(anonymous, "auditor1")
    assert refused.status_code == 401 and REFUSED in refused.get_data(as_text=True)
    assert _accounts_cli(app, "list") == 0
    assert "auditor1\tauditor\tdisabled" in capsys.readouterr().out


def test_enabling_restores_sign_in_but_not_the_sessions_from_before(app: Flask, anonymous: FlaskClient,
                                                                   capsys) -> None:
    client = signed_in(app, "auditor1", ["auditor"])
    assert _accounts_cli(app, "disable", "auditor1") == 0
    assert _accounts_cli(app, "enable", "auditor1") == 0
    assert "enabled central account auditor1" in capsys.readouterr().out
    assert _refused_to_sign_in(client.get("/audit"))
    assert log_in(anonymous, "auditor1").status_code == 302
    assert anonymous.get("/audit").status_code == 200
    assert _accounts_cli(app, "enable", "auditor1") == 0
    assert "was not disabled; nothing changed" in capsys.readouterr().out


def test_a_new_password_ends_sessions_from_before_even_a_copied_cookie(app: Flask, anonymous: FlaskClient,
                                                                      monkeypatch, capsys) -> None:
    client = signed_in(app, "auditor1", ["auditor"])
    thief = copied_session(app, client)
    assert thief.get("/audit").status_code == 200
    prompts = _type_passwords(monkeypatch, NEW_PASSWORD, NEW_PASSWORD)
    assert _accounts_cli(app, "password", "auditor1") == 0
    assert prompts == ["New password for auditor1: ", "Same password again: "]
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "changed the password of central account auditor1" in out
    assert _refused_to_sign_in(thief.get("/audit")) and _refused_to_sign_in(client.get("/audit"))
    assert log_in(anonymous, "auditor1", PASSWORD).status_code == 401
    assert log_in(anonymous, "auditor1", NEW_PASSWORD).status_code == 302
    assert anonymous.get("/audit").status_code == 200


def test_a_new_password_clears_the_wrong_password_count(app: Flask, anonymous: FlaskClient, monkeypatch) -> None:
    add_account(app, "auditor1", ["auditor"])
    for _ in range(8):
        log_in(anonymous, "auditor1", "not-the-password")
    store: AccountStore = app.extensions["central.account_store"]
    assert store.get("auditor1").failed_logins > 0
    _type_passwords(monkeypatch, NEW_PASSWORD, NEW_PASSWORD)
    assert _accounts_cli(app, "password", "auditor1") == 0
    assert store.get("auditor1").failed_logins == 0
    other_address = app.test_client()
    other_address.environ_base["REMOTE_ADDR"] = "192.0.2.44"
    assert log_in(other_address, "auditor1", NEW_PASSWORD).status_code == 302


def test_a_new_password_for_a_disabled_account_says_it_is_still_disabled(app: Flask, monkeypatch, capsys) -> None:
    add_account(app, "auditor1", ["auditor"])
    assert _accounts_cli(app, "disable", "auditor1") == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(NEW_PASSWORD + "\n"))
    assert _accounts_cli(app, "password", "auditor1", "--password-stdin") == 0
    assert "still disabled (python -m central accounts enable auditor1)" in capsys.readouterr().out
    assert log_in(app.test_client(), "auditor1", NEW_PASSWORD).status_code == 401


@pytest.mark.parametrize(("typed", "message"), [
    ((NEW_PASSWORD, NEW_PASSWORD + "x"), "the two passwords differ; the password was not changed."),
    (("too-short", "too-short"), "at least 12 characters. Nothing was changed."),
])
def test_a_refused_new_password_changes_nothing(app: Flask, monkeypatch, capsys, typed, message) -> None:
    client = signed_in(app, "auditor1", ["auditor"])
    _type_passwords(monkeypatch, *typed)
    assert _accounts_cli(app, "password", "auditor1") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert client.get("/audit").status_code == 200  # the session survives: nothing changed
    assert log_in(app.test_client(), "auditor1", PASSWORD).status_code == 302


@pytest.mark.parametrize("command", ["disable", "enable", "password"])
def test_an_unknown_account_name_is_refused_in_one_line(app: Flask, monkeypatch, capsys, command) -> None:
    prompts = _type_passwords(monkeypatch, NEW_PASSWORD, NEW_PASSWORD)
    assert _accounts_cli(app, command, "nobody") == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "There is no account called nobody" in captured.err and "Nothing was changed." in captured.err
    assert prompts == []  # refused before asking for a password


def test_a_session_from_before_session_generations_must_sign_in_again(app: Flask) -> None:
    """Cookies issued before central kept a generation carry none: refused, so no session escapes ending."""
    client = signed_in(app, "auditor1", ["auditor"])
    with client.session_transaction() as session:
        del session["generation"]
    assert _refused_to_sign_in(client.get("/audit"))
