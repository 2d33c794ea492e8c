"""The desk's disk fills up for real (a small tmpfs filled to the last byte) while it runs with a real broker.

What must hold: SQLCipher's write fails (SQLITE_FULL) and the desk refuses the search and any new photo with a
message custody staff can act on, not "something went wrong"; every event recorded before stays in the log
and the outbox; the audit sender lives on through its failed checkpoint; once space returns the same search
works, the chain verifies, and the sender signs and sends the new head again.
"""

from __future__ import annotations

from appliance.web import create_app
from tests.appliance.conftest import appliance_settings
from tests.appliance.desk_helpers import add_users, approved_case, fast_kdf, subjects_in_order
from tests.audit_support import wait_for
from tests.fault_disks import fill, free, small_filesystem


def test_desk_disk_full_refuses_searches_keeps_the_outbox_and_recovers(tmp_path, demo_library, pipeline,
                                                                       face_photo, mosquitto, monkeypatch, caplog):
    fast_kdf(monkeypatch)
    photo = face_photo("obama3.jpg").read_bytes()
    with small_filesystem(tmp_path / "disk", "40m") as disk:
        settings = appliance_settings(tmp_path, demo_library, mqtt_port=mosquitto.port, data_dir=disk / "device")
        app = create_app(settings, pipeline=pipeline, start_sync=True)
        app.config["TESTING"] = True
        desk = app.extensions["desk"]
        try:
            add_users(app)
            officer, case_id = approved_case(app)
            assert officer.upload(case_id, photo).status_code == 200
            _, second = approved_case(app)
            before_head, before_depth = desk.outbox.head_seq, desk.outbox.depth()
            assert before_depth > 0  # no central here: nothing is ever acknowledged, everything is kept
            filler = fill(disk)

            # The search and a new photo are refused, in words for staff, and nothing of them is recorded.
            refused = officer.post(f"/cases/{case_id}/search")
            text = refused.get_data(as_text=True)
            assert refused.status_code == 507, text
            assert "storage is full" in text and "RFR helpdesk" in text and "Something went wrong" not in text
            again = officer.upload(second, photo)
            assert again.status_code == 507 and "storage is full" in again.get_data(as_text=True)
            # The sender finds the tail idle and tries to sign it: that write fails too (unless it was signed
            # before the disk filled, when there is nothing to try).
            assert wait_for(lambda: desk.outbox.signed_seq == before_head or any(
                "could not sign the audit log's head" in r.getMessage() for r in caplog.records), 30)
            assert desk.outbox.head_seq == before_head and desk.outbox.depth() == before_depth
            assert desk.audit.verify().findings == []

            # Space returns: the same search works, and the sender (still alive) signs and sends the new head.
            free(filler)
            assert officer.post(f"/cases/{case_id}/search").status_code == 302
            candidates = officer.get(f"/cases/{case_id}/candidates").get_data(as_text=True)
            assert subjects_in_order(candidates)[0] == "DEMO-OBAMA"
            assert desk.outbox.head_seq > before_head
            assert desk.outbox.depth() >= before_depth + (desk.outbox.head_seq - before_head)
            assert desk.audit.verify().findings == []
            assert wait_for(lambda: desk.outbox.signed_seq == desk.outbox.head_seq, 30), \
                "the audit sender died while the disk was full: the new head is never signed or sent"
        finally:
            desk.close()
