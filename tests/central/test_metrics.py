"""Central's /metrics: only with the scrape token, read from the shared database so every web worker
answers alike, and moving as desks' events, findings, heartbeats and refused sign-ins arrive.

Two apps on one database stand for two gunicorn workers: a sign-in refused by one is counted in the
other's scrape. Run on SQLite and PostgreSQL (``database_url``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from central.web import close_stores, create_app
from core.audit import chain
from core.events import AuditEvent
from models.manifest import load_manifest
from testbed.chain_writer import ChainWriter
from tests.central_signin import add_account, log_in
from tests.metrics_scrape import label_problems, samples, value
from webserver.metrics import token_sha256

TOKEN = "central-scrape-token-9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
SECRET = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"


@pytest.fixture
def workers(database_url):
    apps = [create_app(test_config={"TESTING": True, "SECRET_KEY": SECRET, "DATABASE": database_url,
                                    "METRICS_TOKEN_SHA256": token_sha256(TOKEN)}) for _ in range(2)]
    yield apps
    for app in apps:
        close_stores(app)


def scrape(app):
    response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return samples(response.get_data(as_text=True))


def heartbeat(device: str, received: datetime, **over):
    row = dict(device_id=device, received_at=received.isoformat(timespec="milliseconds"),
               sent_at=received.isoformat(), interval_s=60.0, software_version="0.1.0", library_version=3,
               embedder_id=load_manifest("mobilefacenet_mirror").ref, disk_free_bytes=25,
               disk_total_bytes=100, memory_available_bytes=1, memory_total_bytes=2, outbox_depth=7,
               since_last_sync_s=1.0, clock_offset_s=0.25, key_protection="tpm")
    row.update(over)
    return row


def test_central_metrics_are_refused_without_the_token_and_need_no_session(workers):
    client = workers[0].test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_ingest_findings_heartbeats_and_sign_in_failures_move_in_every_worker(workers):
    first, second = workers
    store, health = first.extensions["central.audit_store"], first.extensions["central.health_store"]
    before = scrape(second)
    assert value(before, "rfr_central_ingest_events_total", device="desk-a") == 0

    recorded = datetime.now(UTC) - timedelta(minutes=10)
    events, head = [], chain.genesis_hash("desk-a")
    for seq in range(1, 6):  # recorded on the desk ten minutes ago
        events.append(chain.seal(AuditEvent(device_id="desk-a", seq=seq, type="search", actor="pc1",
                                            outcome="candidates_shown", details={"custody_ref": "CR-2025-00999"},
                                            occurred_at=recorded.isoformat(timespec="milliseconds")), head))
        head = events[-1].hash
    store.add_batch(events[:3], [], recorded + timedelta(seconds=2))
    store.add_batch(events[3:], [], recorded + timedelta(seconds=4))
    other = ChainWriter("desk-b")
    good = other.event()
    edited = replace(other.event(), actor="edited-after-sealing")  # no longer matches its hash: a finding
    store.add_batch([good, edited], [], recorded)
    health.record_health(heartbeat("desk-a", datetime.now(UTC) - timedelta(seconds=90)))
    add_account(first, "auditor", ["auditor"])
    assert log_in(first.test_client(), "auditor", "a wrong password").status_code == 401
    assert log_in(first.test_client(), "nobody-here", "a wrong password").status_code == 401

    after = scrape(second)  # the other worker: nothing is kept in one process's memory
    assert value(after, "rfr_central_ingest_events_total", device="desk-a") == 5
    assert value(after, "rfr_central_ingest_max_seq", device="desk-a") == 5
    assert value(after, "rfr_central_ingest_lag_seconds", device="desk-a") == pytest.approx(4, abs=0.01)
    assert value(after, "rfr_central_ingest_last_event_age_seconds", device="desk-a") >= 595
    assert value(after, "rfr_central_audit_findings", device="desk-b", kind="edited") == 1
    assert value(after, "rfr_central_heartbeat_age_seconds", device="desk-a") >= 90
    assert value(after, "rfr_central_heartbeat_interval_seconds", device="desk-a") == 60
    assert value(after, "rfr_central_desk_outbox_depth", device="desk-a") == 7
    assert value(after, "rfr_central_desk_library_version", device="desk-a") == 3
    assert value(after, "rfr_central_desk_disk_free_ratio", device="desk-a") == 0.25
    embedder = load_manifest("mobilefacenet_mirror")
    assert embedder.licence.grade == "evaluation"
    assert value(after, "rfr_central_desk_evaluation_grade_model", device="desk-a", embedder=embedder.ref) == 1
    assert value(after, "rfr_central_signin_failures_total", reason="wrong_password") == 1
    assert value(after, "rfr_central_signin_failures_total", reason="unknown_account") == 1
    same = {k: v for k, v in scrape(first).items() if "age_seconds" not in k[0]}  # ages move with the clock
    assert same == {k: v for k, v in after.items() if "age_seconds" not in k[0]}
    assert label_problems(after, forbidden=("CR-2025-00999", "auditor", "nobody", "pc1")) == []


def test_a_revoked_desk_is_not_reported_stale(workers):
    app = workers[0]
    app.extensions["central.registry"].register_device("desk-gone", ChainWriter("desk-gone").public_hex)
    app.extensions["central.health_store"].record_health(heartbeat("desk-gone", datetime.now(UTC) - timedelta(days=2)))
    assert value(scrape(app), "rfr_central_heartbeat_age_seconds", device="desk-gone") > 0
    app.extensions["central.registry"].revoke_device("desk-gone", "fleetadmin", "stolen")
    after = scrape(app)
    assert ("rfr_central_heartbeat_age_seconds", (("device", "desk-gone"),)) not in after
    assert value(after, "rfr_central_devices_revoked") == 1


def test_a_malformed_token_digest_stops_central_at_start(tmp_path):
    from central.settings import CentralSettings
    from core.errors import SettingsError
    from core.settings import load_settings

    config = tmp_path / "central.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[mqtt]\nhost = "127.0.0.1"\nport = 18830\n'
                      f'[web]\nsecret_key = "{SECRET}"\n[metrics]\ntoken_sha256 = "the-token-itself-not-its-digest"\n')
    with pytest.raises(SettingsError, match=r"metrics\.token_sha256"):
        load_settings(CentralSettings, config, "RFR_CENTRAL", environ={})
    config.write_text(config.read_text().replace("the-token-itself-not-its-digest", token_sha256(TOKEN)))
    assert load_settings(CentralSettings, config, "RFR_CENTRAL", environ={}).metrics.token_sha256 == token_sha256(TOKEN)
