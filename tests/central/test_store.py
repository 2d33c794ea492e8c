"""The audit store keeps each event once and records every refusal."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from central.audit.store import AuditStore


def test_insert_is_idempotent_by_event_id(store: AuditStore, make_event) -> None:
    event = make_event()
    now = datetime.now(UTC)
    assert store.insert(event, now) is True
    assert store.insert(event, now) is False
    assert store.count() == 1
    [row] = store.recent()
    assert row["event_id"] == event.event_id
    assert row["details"] == event.details
    assert row["device_id"] == "desk-a"


def test_store_survives_reopening(tmp_path: Path, make_event) -> None:
    event = make_event()
    first = AuditStore(tmp_path / "c.db")
    first.insert(event, datetime.now(UTC))
    first.close()
    second = AuditStore(tmp_path / "c.db")
    assert second.insert(event, datetime.now(UTC)) is False
    assert second.count() == 1
    second.close()


def test_recent_is_newest_first_and_filters_by_device(store: AuditStore, make_event) -> None:
    now = datetime.now(UTC)
    store.insert(make_event("desk-a", occurred_at="2030-01-01T10:00:00+00:00"), now)
    store.insert(make_event("desk-b", occurred_at="2030-01-01T11:00:00+00:00"), now)
    store.insert(make_event("desk-a", occurred_at="2030-01-01T13:00:00+02:00"), now)  # 11:00 UTC
    store.insert(make_event("desk-a", occurred_at="2030-01-01T12:00:00+00:00"), now)
    assert [r["occurred_at"][:13] for r in store.recent()] == [
        "2030-01-01T12", "2030-01-01T13", "2030-01-01T11", "2030-01-01T10"
    ]
    assert {r["device_id"] for r in store.recent(device_id="desk-a")} == {"desk-a"}
    assert len(store.recent(limit=1)) == 1
    assert store.devices() == ["desk-a", "desk-b"]


def test_rejections_are_recorded_newest_first(store: AuditStore) -> None:
    store.record_rejection("rfr/v1/devices/desk-a/audit", "Payload is not valid JSON", 12)
    store.record_rejection("rfr/v1/devices/desk-b/audit", "x" * 5000, 20000)
    assert store.rejection_count() == 2
    newest, oldest = store.rejections(limit=10)
    assert newest["topic"] == "rfr/v1/devices/desk-b/audit"
    assert newest["size"] == 20000
    assert len(newest["reason"]) <= 500
    assert oldest["reason"] == "Payload is not valid JSON"
    assert store.count() == 0


def test_naive_received_time_is_refused(store: AuditStore, make_event) -> None:
    with pytest.raises(ValueError):
        store.insert(make_event(), datetime.now())


def test_concurrent_writer_and_readers(store: AuditStore, make_event) -> None:
    events = [make_event() for _ in range(200)]
    errors: list[BaseException] = []

    def write() -> None:
        for e in events:
            store.insert(e, datetime.now(UTC))

    def read() -> None:
        try:
            for _ in range(200):
                store.recent(limit=10)
                store.count()
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 200
