"""Refusals and returns reach central like every other event, and central's reports count them.

The real desk (its outbox and audit chain) sends through a real Mosquitto to central's real ingest,
which verifies the chain and stores the events; the quarterly report is then built from central's
store, as the board's page builds it.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from appliance.comms.mqtt import CentralLink
from appliance.settings import DeskMqttSettings
from central.audit.store import AuditStore
from central.ingest.mqtt import AuditIngest
from central.reports import quarterly
from central.settings import CentralMqttSettings
from core.audit.checkpoint import public_key_hex
from tests.appliance.desk_helpers import PASSWORD, SUBMISSION, Desk, add_users, case_id_from, fast_kdf
from tests.appliance.test_sync import register, wait_until
from tests.fleet_key import CENTRAL_PUBLIC, COMMAND_KEY

_ids = itertools.count(1)


@pytest.fixture
def central(tmp_path, mosquitto):
    store = AuditStore(tmp_path / "central.db")
    ingest = AuditIngest(CentralMqttSettings(host=mosquitto.host, port=mosquitto.port,
                                             client_id=f"central-handoffs-{next(_ids)}"), store,
                         command_key=COMMAND_KEY)
    ingest.start()
    assert ingest.wait_connected(10)
    yield store
    ingest.stop()
    store.close()


def test_refusals_and_returns_are_stored_by_central_and_counted_in_the_quarter(app, monkeypatch, mosquitto,
                                                                              central):
    fast_kdf(monkeypatch)
    add_users(app)
    desk = app.extensions["desk"]
    device_id = desk.settings.device_id
    register(central, device_id, public_key_hex(desk.outbox.public_key))

    officer, inspector = Desk(app, "officer"), Desk(app, "inspector")
    refused, returned, plain = (case_id_from(officer.submit()) for _ in range(3))
    assert inspector.post(f"/cases/{refused}/refuse", {
        "refusal_reason": "Not necessary: the fingerprint bureau will confirm identity."}).status_code == 302
    assert inspector.post(f"/cases/{returned}/return", {
        "return_note": "Say what the PNC search on the second name found."}).status_code == 302
    assert officer.post(f"/cases/{returned}/resubmit", {
        **SUBMISSION, "checks_detail": SUBMISSION["checks_detail"] + " Second name: no trace."}).status_code == 302
    for case_id in (returned, plain):
        assert inspector.post(f"/cases/{case_id}/approve", {"password": PASSWORD}).status_code == 302

    link = CentralLink(DeskMqttSettings(host=mosquitto.host, port=mosquitto.port), device_id, desk.outbox,
                       central_key=CENTRAL_PUBLIC)
    link.start()
    try:
        assert link.wait_connected(10)
        assert wait_until(lambda: desk.outbox.depth() == 0, timeout=30), "central acknowledged every event"
    finally:
        link.stop()

    stored = central.query(limit=500)
    kinds = [(e["type"], e["outcome"], e["details"].get("case_id")) for e in stored]
    assert ("submission_refused", "refused", refused) in kinds
    assert ("submission_returned", "returned", returned) in kinds
    assert ("submission", "resubmitted", returned) in kinds
    assert central.findings() == [], "the chain with the new kinds verified at central"

    now = datetime.now(UTC)
    figures = quarterly.build(central, now.year, (now.month - 1) // 3 + 1).figures
    assert (figures.submissions, figures.submissions_refused, figures.submissions_returned) == (3, 1, 1)
    assert figures.approvals == 2 and figures.deletions["refused"] == 1
    csv_rows = quarterly.to_csv(quarterly.build(central, now.year, (now.month - 1) // 3 + 1))
    assert ",submissions_refused,total,1" in csv_rows and ",submissions_returned,total,1" in csv_rows
