"""Central sees a temporary library leave a desk (issue #18): the real desk holding two libraries over the real
broker, central's real ingest storing its heartbeats and events, central's fleet page and quarterly report.

The desk's clock runs behind the expiry central knows (a desk offline at the expiry moment has not swept yet):
central's fleet page marks it as still holding a library past its expiry. When the desk's sweep destroys the
copy, its next heartbeat clears the mark, and its ``library_destroyed`` event is counted in the report.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from appliance.runtime import open_desk
from central.fleet.health_store import held_libraries
from central.reports import quarterly
from core.audit.checkpoint import public_key_hex
from tests.audit_support import wait_for
from tests.central.library_register_rows import RegisterRows
from tests.central_signin import signed_in
from tests.provisioning.desks import running_central
from tests.updates.test_desk_libraries import (
    DEVICE,
    T0,
    Fleet,
    authorised,
    desk_settings,
    manifest,
    temporary,
)


def _fleet_page(web) -> str:
    return signed_in(web).get("/fleet").get_data(as_text=True)


def _desk_row(page: str) -> str:
    return page.split(f'data-device="{DEVICE}"')[1].split("</tr>")[0]


def _library_row(page: str, library_id: str) -> str:
    return page.split('id="libraries"')[1].split(f'data-library="{library_id}">')[1].split("</tr>")[0]


def test_the_fleet_page_flags_a_desk_still_holding_an_expired_library_until_its_sweep_destroys_it(
        tmp_path, central, pipeline, mosquitto) -> None:
    now = T0
    settings = desk_settings(tmp_path, central, pipeline, mqtt_port=mosquitto.port)
    team = Fleet(central, tmp_path / "builds", pipeline, settings)
    team.folder.mkdir()
    team.library("op-kestrel")
    team.manifest(manifest(DEVICE, 1, [authorised("national"), temporary("op-kestrel", T0 + timedelta(hours=1))]))
    (tmp_path / "rfr").mkdir()
    with running_central(tmp_path / "rfr", mosquitto.port) as rfr:
        register = RegisterRows(str(rfr.db))
        register.library("national", "National custody images", authorised_at=T0 - timedelta(days=30))
        register.library("op-kestrel", "Operation Kestrel", kind="temporary", authorised_at=T0 - timedelta(days=2),
                         expires_at=T0 + timedelta(hours=1))
        register.close()
        desk = open_desk(settings, pipeline=pipeline, clock=lambda: now)
        try:
            rfr.registry.register_device(DEVICE, public_key_hex(desk.outbox.public_key))
            desk.updater.check_now()
            desk.start()

            def held() -> list[tuple[str, int]]:
                latest = rfr.health.latest_health().get(DEVICE)
                return held_libraries(latest) if latest else []

            assert wait_for(lambda: held() == [("national", 1), ("op-kestrel", 1)], timeout=20), held()
            page = _fleet_page(rfr.web)  # central's clock is past the expiry; the desk's is not yet
            assert "still held: past its expiry" in _desk_row(page)
            assert "Still held by 1 desk:" in _library_row(page, "op-kestrel")

            now = T0 + timedelta(hours=1, minutes=5)
            assert [d.library_id for d in desk.expiry.sweep()] == ["op-kestrel"]
            assert wait_for(lambda: held() == [("national", 1)], timeout=20), held()
            page = _fleet_page(rfr.web)
            assert "still held" not in _desk_row(page) and "Operation Kestrel" not in _desk_row(page)
            assert "no desk" in _library_row(page, "op-kestrel")

            def destroyed() -> list[dict]:
                return [e for e in rfr.store.query(limit=500) if e["type"] == "library_destroyed"]

            assert wait_for(lambda: len(destroyed()) == 1, timeout=20)
        finally:
            desk.close()
        when = datetime.fromisoformat(str(destroyed()[0]["occurred_at"])).astimezone(UTC)
        report = quarterly.build(rfr.store, when.year, (when.month - 1) // 3 + 1)
        [gone] = [life for life in report.libraries.destroyed if life.library_id == "op-kestrel"]
        assert (gone.desks_destroyed, gone.destructions["expired"]) == (1, 1)
