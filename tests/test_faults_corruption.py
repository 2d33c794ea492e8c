"""A damaged page in the desk's encrypted files: found by SQLCipher's per-page HMAC, reported, never ignored.

One byte of the real file on disk is flipped while the desk is stopped (real SQLCipher, real pipeline and
library), then the desk is opened again.

* The device database: the damage is found at open (``PRAGMA cipher_integrity_check`` on every page), recorded
  in the audit chain as a ``device_fault`` (the chain's own pages are intact, so central hears of it), and
  staff who open the case on the damaged page get a message that says so and whom to call, not a stack trace
  or "something went wrong".
* The library in use: a page no search reads (so opening and searching go on as if nothing were wrong) is
  found by the desk's background check of every page, and recorded the same way; the library is then refused
  (``appliance.services.library_repair``; its re-fetch from central is in tests/updates/test_library_repair.py).
  A page a search reads is damaged: the search is refused in plain words and the same check and repair start.
* The repair's swap of a fresh copy for the damaged folder, killed midway, is finished at the next start.
"""

from __future__ import annotations

import html
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.runtime import open_desk
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.library_folders import finish_repairs, held_ids, mark_destroyed, repair_folder
from appliance.storage.storage_faults import DAMAGED_MESSAGE, LIBRARY_DAMAGED_MESSAGE
from appliance.web import create_app
from library import cipher
from library.cipher import PAGE_SIZE, read_key_file
from library.store import LibraryStore
from tests.appliance.conftest import appliance_settings
from tests.appliance.desk_helpers import PASSWORD, Desk, add_users, approved_case, csrf_from, fast_kdf, to_candidates
from tests.audit_support import wait_until


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
        assert [e["outcome"] for e in recorded] == ["library_damaged", "library_repair_started"]
        # From then on the library is refused (this desk has no updates configured, so it stays refused until a
        # technician reinstalls it; tests/updates/test_library_repair.py has the re-fetch from central).
        assert desk.libraries.refusal_code("national") == "under_repair"
        assert desk.library_integrity.check() == [] and len(_faults(desk)) == 2  # not checked or reported again
    finally:
        desk.close()




def test_a_search_that_reads_a_damaged_library_page_closes_the_library_for_repair(tmp_path, demo_library, pipeline,
                                                                                    face_photo, monkeypatch):
    """The page a search reads (the records table's) is damaged: staff are told in plain words, the page check
    runs at once and the library is refused and handed to the repair, as when the check itself finds damage;
    the device database is not blamed."""
    fast_kdf(monkeypatch)
    settings = appliance_settings(tmp_path, demo_library)
    app = _open(settings, pipeline)
    desk = app.extensions["desk"]
    installed = desk.library_store.current_path()
    desk.close()
    conn = cipher.connect(installed, read_key_file(demo_library[1]), read_only=True)
    records = int(conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'records'").fetchone()[0])
    conn.close()
    _flip(installed, records)

    app = _open(settings, pipeline)  # the background check is not started: only the search meets the damage
    desk = app.extensions["desk"]
    try:
        add_users(app)
        officer, case_id = approved_case(app)
        assert officer.upload(case_id, face_photo("obama3.jpg").read_bytes()).status_code == 200
        searched = officer.post(f"/cases/{case_id}/search")
        text = html.unescape(searched.get_data(as_text=True))
        assert searched.status_code == 500 and LIBRARY_DAMAGED_MESSAGE.split(",")[0] in text
        wait_until(lambda: desk.libraries.refusal_code("national") == "under_repair", "the library to be closed")
        outcomes = [e["outcome"] for e in _faults(desk)]
        assert outcomes == ["library_damaged", "library_repair_started"]
        assert desk.db.damage.problems == []  # the device database is sound and not reported
    finally:
        desk.close()


@pytest.mark.parametrize("stage", ["moved-aside", "swapped"])
def test_a_repair_swap_killed_midway_is_finished_at_the_next_start(tmp_path, demo_library, pipeline, stage):
    """kill -9 between the swap's renames (no folder under the library's id) or before the damaged copy is
    shredded: the next start serves the fresh copy, and no repair or damaged folder is left."""
    settings = appliance_settings(tmp_path, demo_library)
    root = settings.library_store_dir
    desk = open_desk(settings, pipeline=pipeline)
    installed = desk.library_store.current_path()
    desk.close()
    LibraryStore(repair_folder(root, "national")).install_full(demo_library[0], read_key_file(demo_library[1]))
    _flip(installed, installed.stat().st_size // PAGE_SIZE // 2)  # the copy being replaced is damaged
    script = ("import os, signal, sys\n"
              "from pathlib import Path\n"
              "from appliance.storage.library_folders import swap_in_repaired\n"
              "def stage(name):\n"
              "    if name == sys.argv[2]:\n"
              "        os.kill(os.getpid(), signal.SIGKILL)\n"
              "swap_in_repaired(Path(sys.argv[1]), 'national', on_stage=stage)\n")
    cut = subprocess.run([sys.executable, "-c", script, str(root), stage], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=120)
    assert cut.returncode == -signal.SIGKILL, cut.stderr
    assert any(p.name.startswith((".repair-", ".damaged-")) for p in root.iterdir())  # cut midway

    desk = open_desk(settings, pipeline=pipeline)
    try:
        assert not any(p.name.startswith((".repair-", ".damaged-")) for p in root.iterdir())
        assert desk.libraries.refusal_code("national") is None
        assert desk.library_integrity.check() == []  # the fresh copy, not the damaged one
        served = desk.libraries.current("national")
        assert served.count > 0 and served.record(1).subject_ref
    finally:
        desk.close()


def test_a_cut_repair_never_brings_back_a_library_destroyed_meanwhile(tmp_path):
    root = tmp_path / "library"
    fresh = repair_folder(root, "op-kestrel")
    (fresh / "versions").mkdir(parents=True)
    (fresh / "current").write_text("{}\n")
    mark_destroyed(root, "op-kestrel", "expired")

    finish_repairs(root)

    assert held_ids(root) == [] and not fresh.exists()
