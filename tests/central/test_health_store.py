"""Heartbeat rows: each desk's newest, its history newest first, and pruning, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from central.fleet.health_store import HealthStore

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def health(database_url: str) -> Iterator[HealthStore]:
    store = HealthStore(database_url)
    yield store
    store.close()


def _row(device: str, received: datetime, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict(
        device_id=device, received_at=received.isoformat(timespec="milliseconds"), sent_at=received.isoformat(),
        interval_s=60.0, software_version="0.1.0", library_version=3, embedder_id="e@1", disk_free_bytes=50,
        disk_total_bytes=100, memory_available_bytes=1, memory_total_bytes=2, outbox_depth=0,
        since_last_sync_s=1.0, clock_offset_s=0.25, key_protection="tpm")
    row.update(over)
    return row


def test_latest_history_and_pruning(health: HealthStore) -> None:
    for minutes in range(3):
        health.record_health(_row("desk-a", T0 + timedelta(minutes=minutes), outbox_depth=minutes))
    health.record_health(_row("desk-b", T0, library_version=None, embedder_id=None))
    latest = health.latest_health()
    assert sorted(latest) == ["desk-a", "desk-b"]
    assert latest["desk-a"]["outbox_depth"] == 2 and latest["desk-a"]["clock_offset_s"] == 0.25
    assert latest["desk-b"]["library_version"] is None
    assert [r["outbox_depth"] for r in health.health_history("desk-a")] == [2, 1, 0]
    assert [r["outbox_depth"] for r in health.health_history("desk-a", limit=1)] == [2]
    assert health.prune_health(T0 + timedelta(minutes=1)) == 2  # desk-a's first and desk-b's only heartbeat
    assert sorted(health.latest_health()) == ["desk-a"]
    assert [r["outbox_depth"] for r in health.health_history("desk-a")] == [2, 1]
