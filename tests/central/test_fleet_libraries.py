"""Central stores the libraries each desk's heartbeat says it holds, and the fleet page shows them both ways:
per desk, and per library with the desks that still hold a retired or expired one (issue #18)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from central.audit.store import AuditStore
from central.fleet.health_store import HealthStore, held_libraries
from central.fleet.registry_store import RegistryStore
from central.ingest.health import HealthIngest
from central.web import close_stores, create_app
from core.fleet import Heartbeat
from core.topics import health_topic
from tests.central.library_register_rows import RegisterRows
from tests.central_signin import signed_in

SECRET = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"


def beat(device: str, when: datetime, libraries: tuple[tuple[str, int], ...], **over: object) -> bytes:
    values: dict[str, object] = dict(
        device_id=device, sent_at=when.isoformat(), interval_s=60.0, software_version="0.1.0", library_version=3,
        embedder_id="e@1", disk_free_bytes=50, disk_total_bytes=100, memory_available_bytes=1,
        memory_total_bytes=2, outbox_depth=0, since_last_sync_s=1.0, clock_offset_s=None, key_protection="tpm",
        libraries=libraries)
    values.update(over)
    return Heartbeat(**values).to_bytes()  # type: ignore[arg-type]


def test_heartbeat_libraries_are_stored_and_the_fleet_page_flags_desks_still_holding_withdrawn_ones(
        database_url: str) -> None:
    now = datetime.now(UTC)
    store, registry, health = AuditStore(database_url), RegistryStore(database_url), HealthStore(database_url)
    register = RegisterRows(database_url)
    try:
        for desk in ("desk-lib-a", "desk-lib-b", "desk-lib-old"):
            registry.register_device(desk, "00" * 32)
        register.library("national", "Custody images (substantive)", authorised_at=now - timedelta(days=90))
        register.library("op-kestrel", "Operation Kestrel", kind="temporary", authorised_at=now - timedelta(days=2),
                         expires_at=now - timedelta(minutes=5))
        register.library("legacy-2019", "Legacy 2019 import", status="retired", retired_at=now - timedelta(days=1))
        register.library("op-wren", "Operation Wren", kind="temporary", expires_at=now + timedelta(days=3))
        ingest = HealthIngest(health, registry, store)
        # desk-lib-a: an hour ago it held the temporary library; its newest heartbeat says it destroyed it.
        assert ingest.handle(health_topic("desk-lib-a"),
                             beat("desk-lib-a", now, (("national", 3), ("op-kestrel", 1))), now - timedelta(hours=1))
        assert ingest.handle(health_topic("desk-lib-a"), beat("desk-lib-a", now, (("national", 3), ("op-wren", 2))),
                             now)
        # desk-lib-b was offline at the expiry and still reports the expired and the retired library.
        assert ingest.handle(health_topic("desk-lib-b"),
                             beat("desk-lib-b", now, (("legacy-2019", 7), ("national", 3), ("op-kestrel", 1))), now)
        # desk-lib-old runs software that sends no list: it holds the default library at library_version.
        old = Heartbeat.from_bytes(beat("desk-lib-old", now, ())).to_dict()
        del old["libraries"]
        assert ingest.handle(health_topic("desk-lib-old"), json.dumps(old).encode(), now)
        assert store.rejections() == [] and ingest.stored == 4

        latest = health.latest_health()
        assert held_libraries(latest["desk-lib-a"]) == [("national", 3), ("op-wren", 2)]
        assert held_libraries(latest["desk-lib-b"]) == [("legacy-2019", 7), ("national", 3), ("op-kestrel", 1)]
        assert held_libraries(latest["desk-lib-old"]) == [("national", 3)]
        assert [held_libraries(h) for h in health.health_history("desk-lib-a")][1] == [("national", 3),
                                                                                         ("op-kestrel", 1)]
    finally:
        for each in (store, registry, health, register):
            each.close()

    web = create_app(test_config={"TESTING": True, "SECRET_KEY": SECRET, "DATABASE": database_url})
    try:
        client = signed_in(web)
        page = client.get("/fleet").get_data(as_text=True)
        desk_b_page = client.get("/fleet/desk-lib-b").get_data(as_text=True)
        desk_a_page = client.get("/fleet/desk-lib-a").get_data(as_text=True)
    finally:
        close_stores(web)

    def desk_row(device: str) -> str:
        return page.split(f'data-device="{device}"')[1].split("</tr>")[0]

    def library_row(library_id: str) -> str:
        return page.split(f'<tr class="flagged" data-library="{library_id}"')[-1].split(
            f'data-library="{library_id}"')[-1].split("</tr>")[0]

    assert "Operation Wren v2" in desk_row("desk-lib-a") and "still held" not in desk_row("desk-lib-a")
    assert "withdrawn library" in desk_row("desk-lib-b") and "still holds Operation Kestrel (past its expiry)" in (
        desk_row("desk-lib-b"))
    assert "withdrawn library" not in desk_row("desk-lib-a")
    assert "Operation Kestrel v1" in desk_row("desk-lib-b")
    assert "still held: past its expiry" in desk_row("desk-lib-b") and "still held: retired" in desk_row("desk-lib-b")
    assert "Custody images (substantive) v3" in desk_row("desk-lib-old")
    libraries = page.split('id="libraries"')[1]
    assert '<tr class="flagged" data-library="op-kestrel">' in libraries
    assert '<tr class="flagged" data-library="legacy-2019">' in libraries
    assert '<tr class="ok" data-library="op-wren">' in libraries
    assert '<tr class="ok" data-library="national">' in libraries
    kestrel = library_row("op-kestrel")
    assert "Still held by 1 desk:" in kestrel and "desk-lib-b" in kestrel and "desk-lib-a" not in kestrel
    national = library_row("national")
    assert all(d in national for d in ("desk-lib-a", "desk-lib-b", "desk-lib-old")) and "Still held" not in national
    assert "No: past its expiry" in desk_b_page and "No: retired" in desk_b_page
    assert "No:" not in desk_a_page and "Operation Wren" in desk_a_page
