"""Health heartbeats: a live desk reaches central's fleet page; stale, unhealthy and old-library desks are flagged."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from central.audit.store import AuditStore
from central.fleet.health_store import HealthStore
from central.fleet.registry_store import RegistryStore
from central.ingest.health import HealthIngest
from central.web import close_stores
from central.web import create_app as create_central
from core.fleet import Heartbeat
from core.topics import health_topic
from tests.audit_support import wait_for
from tests.central_signin import signed_in
from tests.provisioning.desks import live_desk, running_central


def test_a_desks_heartbeat_reaches_the_fleet_page_with_its_flags(tmp_path, demo_library, pipeline, mosquitto):
    with running_central(tmp_path, mosquitto.port) as central:
        app, device = live_desk(tmp_path, demo_library, pipeline, mosquitto.port, central,
                                health={"interval_s": 0.3})
        try:
            assert wait_for(lambda: len(central.health.health_history(device)) >= 2, timeout=10)
            latest = central.health.latest_health()[device]
            assert latest["key_protection"] == "file"  # no TPM here: reported, and flagged as weaker
            assert latest["library_version"] == app.extensions["desk"].library.current.version
            assert latest["software_version"] == "0.1.0" and latest["disk_total_bytes"] > 0
            assert latest["clock_offset_s"] is not None and abs(latest["clock_offset_s"]) < 5
            page = signed_in(central.web).get("/fleet").get_data(as_text=True)
            row = page.split(f'data-device="{device}"')[1].split("</tr>")[0]
            assert "unhealthy" in row and "keys in files, not sealed to a TPM" in row and "stale" not in row
            history = signed_in(central.web).get(f"/fleet/{device}").get_data(as_text=True)
            assert history.count("<tr><td>") >= 2 and "Revoke " + device in history
        finally:
            app.extensions["desk"].mqtt.stop()
    assert central.ingest.rejected == 0


def _beat(device: str, when: datetime, **over) -> bytes:
    values = dict(device_id=device, sent_at=when.isoformat(), interval_s=60.0, software_version="0.1.0",
                  library_version=3, embedder_id="e@1", disk_free_bytes=50, disk_total_bytes=100,
                  memory_available_bytes=1, memory_total_bytes=2, outbox_depth=0, since_last_sync_s=1.0,
                  clock_offset_s=None, key_protection="tpm")
    values.update(over)
    return Heartbeat(**values).to_bytes()


def test_stale_unhealthy_old_library_and_unregistered_desks(tmp_path):
    db = tmp_path / "central.db"
    store, registry, health = AuditStore(db), RegistryStore(db), HealthStore(db)
    for d in ("desk-fresh", "desk-stale", "desk-full", "desk-old", "desk-silent", "desk-plainkey"):
        registry.register_device(d, "00" * 32)
    ingest = HealthIngest(health, registry, store)
    now = datetime.now(UTC)
    assert ingest.handle(health_topic("desk-fresh"), _beat("desk-fresh", now), now)
    assert ingest.handle(health_topic("desk-stale"), _beat("desk-stale", now), now - timedelta(minutes=4))
    assert ingest.handle(health_topic("desk-full"), _beat("desk-full", now, disk_free_bytes=5), now)
    assert ingest.handle(health_topic("desk-old"), _beat("desk-old", now, library_version=2), now)
    assert ingest.handle(health_topic("desk-plainkey"), _beat("desk-plainkey", now, key_protection="insecure"), now)
    assert not ingest.handle(health_topic("desk-nobody"), _beat("desk-nobody", now), now)
    assert not ingest.handle(health_topic("desk-fresh"), _beat("desk-full", now), now)  # speaks for another
    assert [r["reason"][:30] for r in store.rejections()] == [
        "Heartbeat claims device 'desk-", "Device 'desk-nobody' is not re"]
    for each in (store, registry, health):
        each.close()
    web = create_central(test_config={"TESTING": True, "SECRET_KEY": "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k",
                                      "DATABASE": str(tmp_path / "central.db")})
    try:
        page = signed_in(web).get("/fleet").get_data(as_text=True)
    finally:
        close_stores(web)

    def row(device: str) -> str:
        return page.split(f'data-device="{device}"')[1].split("</tr>")[0]

    assert ">ok<" in row("desk-fresh")
    # Four minutes old when stored, and a few seconds more by the time the page is made: not an exact figure.
    assert "stale" in row("desk-stale") and re.search(r"last heartbeat 2[4-9]\d s ago", row("desk-stale"))
    assert "unhealthy" in row("desk-full") and "disk 5% free" in row("desk-full")
    assert "old library" in row("desk-old") and "library 2 (newest 3)" in row("desk-old")
    assert "no heartbeat received yet" in row("desk-silent")
    assert "unhealthy" in row("desk-plainkey") and "plain key file (insecure setting)" in row("desk-plainkey")
