"""The audit pages as a browser and a monitor see them."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from flask.testing import FlaskClient

from central.audit.store import AuditStore
from central.fleet.registry_store import RegistryStore
from supply import pinned
from tests.central_signin import signed_in

HX = {"HX-Request": "true"}


def test_root_redirects_to_audit(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/audit"


def test_audit_page_lists_events(client: FlaskClient, app_store: AuditStore, make_event) -> None:
    app_store.insert(make_event("desk-a", actor="PC 4321", details={"reason": "identity doubt"}),
                     datetime.now(UTC))
    app_store.insert(make_event("desk-b", type="search_refused", outcome="no_reason_given"), datetime.now(UTC))
    response = client.get("/audit")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert '<html lang="en-GB">' in page
    assert "<title>Audit events" in page
    assert "<main" in page and "<nav" in page and "<caption>" in page
    assert '<th scope="col">Device</th>' in page
    for text in ("desk-a", "desk-b", "PC 4321", "<dt>Reason for the search</dt>\n  <dd>identity doubt</dd>",
                 "<td>Search refused</td>", "<td>No reason given</td>"):
        assert text in page
    assert 'hx-get="/audit?partial=1"' in page
    assert 'hx-trigger="every 5s"' in page
    assert "/static/vendor/htmx.min.js" in page
    assert "includeIndicatorStyles" in page


def test_htmx_request_gets_only_rows(client: FlaskClient, app_store: AuditStore, make_event) -> None:
    app_store.insert(make_event("desk-a"), datetime.now(UTC))
    response = client.get("/audit?partial=1", headers=HX)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "<tr>" in body and "desk-a" in body
    assert "<html" not in body and "<table" not in body
    assert "HX-Request" in response.headers["Vary"]


def test_empty_store_says_so(client: FlaskClient) -> None:
    assert "No audit events yet." in client.get("/audit").get_data(as_text=True)


def test_filter_by_device(client: FlaskClient, app_store: AuditStore, make_event) -> None:
    app_store.insert(make_event("desk-a", actor="officer-a"), datetime.now(UTC))
    app_store.insert(make_event("desk-b", actor="officer-b"), datetime.now(UTC))
    page = client.get("/audit?device=desk-b").get_data(as_text=True)
    assert "officer-b" in page and "officer-a" not in page
    # The polling request keeps the filter, so the live table does not widen to all devices.
    assert 'hx-get="/audit?partial=1&amp;device=desk-b"' in page
    rows = client.get("/audit?partial=1&device=desk-b", headers=HX).get_data(as_text=True)
    assert "officer-b" in rows and "officer-a" not in rows


def test_invalid_device_filter_is_a_friendly_400(client: FlaskClient) -> None:
    response = client.get("/audit?device=../../etc")
    assert response.status_code == 400
    assert "is not valid" in response.get_data(as_text=True)


def test_healthz_reports_counts(client: FlaskClient, app_store: AuditStore, make_event) -> None:
    app_store.insert(make_event(), datetime.now(UTC))
    app_store.record_rejection("rfr/v1/devices/desk-a/audit", "bad", 3)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "events": 1, "rejections": 1, "ingest": None}


def test_healthz_is_degraded_while_ingest_is_disconnected(tmp_path) -> None:
    from central.web import close_stores, create_app

    class Down:
        connected = False
        received = 0
        rejected = 0

    app = create_app(test_config={"TESTING": True, "SECRET_KEY": "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k",
                                  "DATABASE": str(tmp_path / "c.db")}, ingest=Down())
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "degraded"
    assert response.json["ingest"] == {"connected": False, "received": 0, "rejected": 0}
    close_stores(app)


def test_htmx_is_served_from_the_verified_cache(client: FlaskClient) -> None:
    response = client.get("/static/vendor/htmx.min.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    expected = pinned.member("htmx", "package/dist/htmx.min.js").read_bytes()
    assert hashlib.sha256(response.data).digest() == hashlib.sha256(expected).digest()
    assert b"htmx" in response.data[:2000]
    response.close()


def test_unknown_vendor_asset_is_404(client: FlaskClient) -> None:
    assert client.get("/static/vendor/jquery.js").status_code == 404


def test_own_stylesheet_is_served(client: FlaskClient) -> None:
    response = client.get("/static/central.css")
    assert response.status_code == 200
    response.close()


def test_unknown_route_is_a_friendly_404(client: FlaskClient) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "There is no page at this address" in page
    assert "Traceback" not in page and "werkzeug" not in page.lower()
    assert '<html lang="en-GB">' in page


def test_errors_are_json_for_json_clients(client: FlaskClient) -> None:
    response = client.get("/no/such/page", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.json["error"]["status"] == 404
    assert "no page" in response.json["error"]["message"]


def test_unexpected_error_shows_no_traceback(app) -> None:
    @app.get("/boom")  # before the first request (the signed-in client fixture would make one)
    def boom() -> str:
        raise RuntimeError("secret internals /etc/shadow")

    anonymous = app.test_client()
    assert anonymous.get("/boom").status_code == 302  # a page with no sign-in rule is closed...
    assert signed_in(app).get("/boom").status_code == 403  # ...even to someone signed in with every role
    app.extensions["central.open_endpoints"] = app.extensions["central.open_endpoints"] | {"boom"}
    response = anonymous.get("/boom")
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "secret internals" not in page and "Traceback" not in page
    assert "Something went wrong" in page


def test_security_headers(client: FlaskClient) -> None:
    response = client.get("/audit")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert "<script>" not in response.get_data(as_text=True)


# --- Filters, exports and offline verification (the auditors' side) ---

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from testbed.chain_writer import ChainWriter  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _seed(store: AuditStore, registry: RegistryStore) -> ChainWriter:
    """Device desk-x: 9 events by three users, checkpoints after 4 and 9."""
    w = ChainWriter("desk-x")
    registry.register_device(w.device_id, w.public_hex)
    events, cps = [], []
    for i in range(9):
        events.append(w.event(actor=f"pc{i % 3}", type="search" if i % 2 else "login",
                              outcome="candidates_shown" if i % 2 else "ok", n=i))
        if w.seq in (4, 9):
            cps.append(w.checkpoint())
    store.add_batch(events, cps, datetime.now(UTC))
    return w


def _verify(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "central.audit", "verify", str(path), *extra], cwd=ROOT,
                          capture_output=True, text=True, check=False)


def test_filters_by_user_type_outcome_and_time(client: FlaskClient, app_store: AuditStore,
                                               app_registry: RegistryStore) -> None:
    _seed(app_store, app_registry)
    page = client.get("/audit?actor=pc1&type=search").get_data(as_text=True)
    assert page.count("<td>pc1</td>") == 2 and "<td>pc0</td>" not in page
    assert "2 match the filter" in page
    assert 'href="/audit/export.csv?actor=pc1&amp;type=search"' in page
    assert client.get("/audit?outcome=ok").get_data(as_text=True).count("<td>Signed in</td>") == 5
    assert "0 match" in client.get("/audit?since=2999-01-01T00:00").get_data(as_text=True)
    assert client.get("/audit?since=yesterday").status_code == 400
    assert client.get("/audit?type=reboot").status_code == 400


def test_chain_status_and_findings_are_shown(client: FlaskClient, app_store: AuditStore,
                                             app_registry: RegistryStore) -> None:
    w = _seed(app_store, app_registry)
    w.event()
    later = w.event()
    app_store.add_batch([later], [], datetime.now(UTC))  # seq 10 never arrives
    page = client.get("/audit").get_data(as_text=True)
    assert "<td>desk-x</td>\n      <td>9</td>\n      <td>11</td>" in page
    assert "<td>10</td>" in page  # the missing seq is named


def test_exports_verify_offline_in_both_formats(client: FlaskClient, app_store: AuditStore,
                                                app_registry: RegistryStore, tmp_path: Path) -> None:
    _seed(app_store, app_registry)
    for fmt in ("csv", "jsonl"):
        response = client.get(f"/audit/export.{fmt}?actor=pc1")
        assert response.status_code == 200
        assert "attachment" in response.headers["Content-Disposition"]
        path = tmp_path / f"export.{fmt}"
        path.write_bytes(response.data)
        result = _verify(path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("OK") and "3 events, 6 links and 2 signed checkpoints" in result.stdout
    assert client.get("/audit/export.xml").status_code == 404


@pytest.mark.parametrize("tamper, expected", [
    (lambda lines: [ln.replace('"actor":"pc1"', '"actor":"pc9"', 1) if '"seq":2,' in ln else ln
                    for ln in lines], "position 4: device desk-x seq 2: edited"),
    (lambda lines: [ln for ln in lines if '"seq":3,' not in ln], "position 5: device desk-x seq 4: gap"),
    (lambda lines: [*lines[:4], lines[3], *lines[4:]], "position 5: device desk-x seq 2: duplicate"),
])
def test_tampered_export_fails_with_the_position_and_reason(client, app_store, app_registry, tmp_path, tamper,
                                                            expected) -> None:
    _seed(app_store, app_registry)
    lines = client.get("/audit/export.jsonl").get_data(as_text=True).splitlines()
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(tamper(lines)) + "\n")
    result = _verify(path)
    assert result.returncode == 1
    assert f"FAIL {expected}" in result.stdout, result.stdout


def test_verify_with_a_pinned_key_refuses_a_re_signed_export(client, app_store, app_registry, tmp_path) -> None:
    """Whoever rewrites an export can swap the key inside it; pinning the device's real key catches that."""
    from core.audit.checkpoint import public_key_pem

    _seed(app_store, app_registry)
    path = tmp_path / "export.jsonl"
    path.write_bytes(client.get("/audit/export.jsonl").data)
    impostor = ChainWriter("desk-x")
    key_file = tmp_path / "desk-x.pub"
    key_file.write_bytes(public_key_pem(impostor.key.public_key()))
    result = _verify(path, "--public-key", f"desk-x={key_file}")
    assert result.returncode == 1 and "bad_signature" in result.stdout


def test_verify_command_names_a_missing_export_in_one_line(tmp_path: Path, capsys) -> None:
    from central.audit.__main__ import main

    assert main(["verify", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"central.audit: cannot use {tmp_path / 'missing.jsonl'}: No such file or directory."


def test_central_refuses_an_oversized_form_from_its_declared_length(tmp_path):
    from central.web import FORM_LIMIT_BYTES, create_app

    app = create_app(test_config={"TESTING": True, "SECRET_KEY": "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k",
                                  "DATABASE": str(tmp_path / "central.db")})
    response = app.test_client().post("/login", data=b"x" * (FORM_LIMIT_BYTES + 1),
                                      content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413 and "larger than central accepts" in response.get_data(as_text=True)
