"""What the force's operations staff see of a running system: metrics and logs, from real processes.

Central and one desk run as ``python -m central serve`` and ``python -m appliance serve`` (gunicorn over
HTTPS, a real Mosquitto, real models and SQLCipher files), each with a ``[metrics]`` scrape token. A scrape
without the token is refused on both; with it, the desk's search counters and stage latencies and central's
ingest counters move as an officer searches and the desk's events reach central. Every line either process
wrote is then read back as JSON with the keys the issue asks for, and none holds the case's custody
reference, the matched subject or the officer's free-text notes.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.appliance.desk_helpers import SUBMISSION
from tests.appliance.http_desk import HttpDesk
from tests.fleet_tls import https_get, stop_served
from tests.metrics_scrape import label_problems, samples, value
from tests.served_system import Metrics, served_system

DESK_TOKEN = "desk-e2e-scrape-token-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
CENTRAL_TOKEN = "central-e2e-scrape-token-8a7b6c5d4e3f20112233445566778899"
REQUIRED = ("time", "level", "component", "logger", "event", "message", "device_id", "case_id", "message_id")


@pytest.fixture
def served(tmp_path: Path, mosquitto, enrolled_library):
    with served_system(tmp_path, mosquitto, enrolled_library, "desk-ops-01", health_interval_s=1,
                       metrics=Metrics(central_token=CENTRAL_TOKEN, desk_token=DESK_TOKEN)) as system:
        yield system


def scrape(system, product: str, token: str):
    status, _headers, body = https_get(system[product] + "/metrics", system["trust"],
                                       headers={"Authorization": f"Bearer {token}"})
    assert status == 200, body[:500]
    return samples(body.decode())


def until(condition, timeout: float = 60.0):
    """The condition's value once it is truthy (polled), or the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    result = condition()
    while not result and time.monotonic() < deadline:
        time.sleep(0.5)
        result = condition()
    return result


def test_scrapes_need_the_token_and_move_with_a_search_and_its_ingest(served, face_photo):
    # No token, a wrong one, or the other product's: refused, with nothing of the numbers.
    for product, others in (("appliance", CENTRAL_TOKEN), ("central", DESK_TOKEN)):
        for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Bearer {others}"}):
            status, response_headers, body = https_get(served[product] + "/metrics", served["trust"], headers)
            assert status == 401 and b"rfr_" not in body, (product, headers)
            assert response_headers["WWW-Authenticate"] == 'Bearer realm="metrics"'

    desk_before = scrape(served, "appliance", DESK_TOKEN)
    assert value(desk_before, "rfr_desk_searches_total", outcome="candidates_shown") == 0
    assert value(desk_before, "rfr_desk_info", device="desk-ops-01", software_version=next(
        dict(labels)["software_version"] for name, labels in desk_before if name == "rfr_desk_info")) == 1
    central_before = until(lambda: (s := scrape(served, "central", CENTRAL_TOKEN))
                           and value(s, "rfr_central_ingest_events_total", device="desk-ops-01") > 0 and s)
    assert central_before, "the desk's first events never reached central"
    ingested_before = value(central_before, "rfr_central_ingest_events_total", device="desk-ops-01")

    officer = HttpDesk(served["appliance"], "officer", served["trust"])
    case_id = officer.submit()
    HttpDesk(served["appliance"], "inspector", served["trust"]).approve(case_id)
    html = officer.search(case_id, face_photo("obama3.jpg").read_bytes())
    assert re.findall(r'data-subject="([^"]+)"', html)[0] == "DEMO-OBAMA"

    desk_after = scrape(served, "appliance", DESK_TOKEN)
    assert value(desk_after, "rfr_desk_searches_total", outcome="candidates_shown") == 1
    for stage in ("decode", "detect", "embed", "search"):
        assert value(desk_after, "rfr_desk_search_stage_seconds_count", stage=stage) == 1, stage
    head = value(desk_after, "rfr_desk_audit_head_seq")
    assert head > value(desk_before, "rfr_desk_audit_head_seq")
    # Central stores the search and everything before it, acks it, and the desk's outbox empties of events.
    central_after = until(lambda: (s := scrape(served, "central", CENTRAL_TOKEN))
                          and value(s, "rfr_central_ingest_events_total", device="desk-ops-01") >= head and s)
    assert central_after, "the search's events never reached central"
    assert value(central_after, "rfr_central_ingest_events_total", device="desk-ops-01") > ingested_before
    assert value(central_after, "rfr_central_ingest_messages_received_total") > 0
    assert value(central_after, "rfr_central_ingest_connected") == 1
    assert value(central_after, "rfr_central_ingest_lag_seconds", device="desk-ops-01") >= 0
    assert value(central_after, "rfr_central_heartbeat_interval_seconds", device="desk-ops-01") == 1
    assert value(central_after, "rfr_central_heartbeat_age_seconds", device="desk-ops-01") < 60
    assert value(central_after, "rfr_central_audit_findings", device="desk-ops-01", kind="gap") == 0
    acked = until(lambda: value(scrape(served, "appliance", DESK_TOKEN),
                                "rfr_desk_outbox_oldest_unacknowledged_age_seconds") == 0)
    assert acked, "central's acks never emptied the desk's outbox of events"
    assert value(scrape(served, "appliance", DESK_TOKEN), "rfr_desk_last_ack_age_seconds") >= 0
    forbidden = (case_id, SUBMISSION["custody_ref"], "DEMO-OBAMA", "officer", "inspector")
    assert label_problems(desk_after, forbidden) == [] and label_problems(central_after, forbidden) == []

    # The logs: every line of both processes is one JSON object with the same keys and no personal data.
    for name, proc in served["procs"].items():
        assert stop_served(proc) == 0, served["logs"][name].read_text()[-3000:]
    lines = {name: served["logs"][name].read_text().splitlines() for name in ("appliance", "central")}
    personal = (SUBMISSION["custody_ref"], SUBMISSION["checks_detail"], "DEMO-OBAMA", "Obama", "obama3")
    records = {}
    for name, text in lines.items():
        assert text, f"{name} wrote no log lines"
        records[name] = []
        for line in text:
            record = json.loads(line)  # fails the test on any line that is not one JSON object
            assert isinstance(record, dict) and all(k in record for k in REQUIRED), line
            assert record["component"] == name, line
            assert not any(p.lower() in line.lower() for p in personal), line
            records[name].append(record)
    desk_lines = records["appliance"]
    assert all(r["device_id"] == "desk-ops-01" for r in desk_lines)
    assert any(r["case_id"] == case_id and r["event"] == "audit_recorded" and r["message_id"] for r in desk_lines)
    assert any(r["event"] == "http_request" and r["case_id"] is None and f"/cases/{case_id}/search" in r["message"]
               for r in desk_lines)
    assert {r["event"] for r in records["central"]} >= {"serving", "http_request"}
