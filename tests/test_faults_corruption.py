"""A damaged page in the desk's encrypted files: found by SQLCipher's per-page HMAC, reported, never ignored.

One byte of the real file on disk is flipped while the desk is stopped (real SQLCipher, real pipeline and
library), then the desk is opened again.

* The device database: the damage is found at open (``PRAGMA cipher_integrity_check`` on every page), recorded
  in the audit chain as a ``device_fault`` (the chain's own pages are intact, so central hears of it), and
  staff who open the case on the damaged page get a message that says so and whom to call, not a stack trace
  or "something went wrong".
* The library in use: a page no search reads (so opening and searching go on as if nothing were wrong) is
  found by the desk's background check of every page, and recorded the same way. The library store itself is
  not changed; re-fetching the damaged library is left to a reinstall from central.
"""

from __future__ import annotations

import html
import json

from appliance.storage.device_db import DeviceDatabase
from appliance.storage.storage_faults import DAMAGED_MESSAGE
from appliance.web import create_app
from library.cipher import PAGE_SIZE
from tests.appliance.conftest import appliance_settings
from tests.appliance.desk_helpers import PASSWORD, Desk, add_users, approved_case, csrf_from, fast_kdf, to_candidates


def _flip(path, page: int, offset: int = 200) -> None:
    """Flip one bit of ``page`` (1-based) in the file, as a failing disk sector would."""
    data = bytearray(path.read_bytes())
    data[(page - 1) * PAGE_SIZE + offset] ^= 0x04
    path.write_bytes(bytes(data))


def _faults(desk) -> list[dict]:
    found = [json.loads(p.payload) for p in desk.outbox.pending(limit=10_000)]
    return [e for e in found if e["type"] == "device_fault"]


def _open(settings, pipeline):
    app = create_app(settings, pipeline=pipeline, start_sync=False)
    app.config["TESTING"] = True
    return app


def test_damaged_page_of_the_device_database_is_found_recorded_and_told(tmp_path, demo_library, pipeline,
                                                                        monkeypatch):
    fast_kdf(monkeypatch)
    settings = appliance_settings(tmp_path, demo_library)
    app = _open(settings, pipeline)
    add_users(app)
    approved_case(app)  # a case on the cases table's page, which is then damaged
    desk = app.extensions["desk"]
    assert desk.db.damage.problems == []
    desk.close()  # the last connection checkpoints the WAL into device.db
    db = DeviceDatabase(settings.data_dir)
    root = int(db.conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'cases'").fetchone()[0])
    db.close()
    _flip(settings.data_dir / "device.db", root)

    app = _open(settings, pipeline)
    desk = app.extensions["desk"]
    try:
        assert any(f"HMAC verification failed for page {root}" in p for p in desk.db.damage.problems)
        recorded = _faults(desk)
        assert [e["outcome"] for e in recorded] == ["database_damaged"]
        assert any(f"page {root}" in p for p in recorded[0]["details"]["problems"])
        # Accounts and sessions live on other pages: sign-in works, and the home page lists the cases.
        officer = Desk(app)
        officer.token = csrf_from(officer.get("/login").get_data(as_text=True))
        signed_in = officer.client.post("/login", data={"username": "officer", "password": PASSWORD,
                                                        "csrf_token": officer.token})
        assert signed_in.status_code == 302
        page = officer.get("/")
        text = html.unescape(page.get_data(as_text=True))
        assert page.status_code == 500 and DAMAGED_MESSAGE.split(",")[0] in text
        # ... and the damage met there is recorded too, on a fresh connection (the first refuses writes now).
        assert [e["outcome"] for e in _faults(desk)] == ["database_damaged", "database_damaged"]
        assert officer.get("/login").status_code in (200, 302)
        assert "Something went wrong" not in text
        assert desk.audit.verify().findings == []  # the chain itself is whole
    finally:
        desk.close()


def test_damaged_page_of_the_library_is_found_by_the_check_though_searches_go_on(tmp_path, demo_library,
                                                                                  pipeline, face_photo,
                                                                                  monkeypatch):
    fast_kdf(monkeypatch)
    settings = appliance_settings(tmp_path, demo_library)
    app = _open(settings, pipeline)
    desk = app.extensions["desk"]
    assert desk.library_integrity.check() == []  # a sound library: nothing to report
    installed = desk.library_store.current_path()
    desk.close()
    pages = installed.stat().st_size // PAGE_SIZE
    _flip(installed, pages // 2)

    app = _open(settings, pipeline)
    desk = app.extensions["desk"]
    try:
        add_users(app)
        officer, case_id = approved_case(app)
        # Opening and searching read other pages: nothing would show the damage ...
        assert "DEMO-OBAMA" in to_candidates(officer, case_id, face_photo("obama3.jpg").read_bytes())
        # ... but the check of every page finds it, and it is recorded for central and shown on /metrics.
        problems = desk.library_integrity.check()
        assert problems and all("HMAC verification failed" in p for p in problems), problems
        assert desk.library_integrity.damage.damaged
        recorded = _faults(desk)
        assert [e["outcome"] for e in recorded] == ["library_damaged"]
        assert desk.library_integrity.check() == problems and len(_faults(desk)) == 1  # reported once
    finally:
        desk.close()
