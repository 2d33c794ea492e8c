"""The device registry keeps one key per desk and the first revocation of each, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from central.fleet.registry_store import RegistryStore


@pytest.fixture
def registry(database_url: str) -> Iterator[RegistryStore]:
    store = RegistryStore(database_url)
    yield store
    store.close()


def test_a_registered_key_is_found_and_a_new_one_replaces_it(registry: RegistryStore, database_url: str) -> None:
    assert registry.public_key("desk-a") is None
    registry.register_device("desk-b", "22" * 32)
    registry.register_device("desk-a", "00" * 32)
    assert registry.public_key("desk-a") == "00" * 32
    registry.register_device("desk-a", "11" * 32)  # a re-enrolled desk: the cached key is dropped
    assert registry.public_key("desk-a") == "11" * 32
    assert registry.registered_devices() == {"desk-a": "11" * 32, "desk-b": "22" * 32}
    other = RegistryStore(database_url)  # another process sees the same registry
    try:
        assert other.public_key("desk-b") == "22" * 32
    finally:
        other.close()


def test_the_first_revocation_is_kept(registry: RegistryStore) -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert registry.revocations() == {}
    assert registry.revoke_device("desk-a", "sgt.first", "stolen " + "x" * 600, when)
    assert not registry.revoke_device("desk-a", "sgt.second", "lost")
    [(device, row)] = registry.revocations().items()
    assert (device, row["revoked_by"], row["revoked_at"]) == ("desk-a", "sgt.first", "2030-01-02T03:04:05.000+00:00")
    assert row["reason"].startswith("stolen") and len(row["reason"]) == 500


def test_a_naive_time_is_refused(registry: RegistryStore) -> None:
    with pytest.raises(ValueError):
        registry.register_device("desk-a", "00" * 32, datetime.now())


_FIRST_SCHEMA = """CREATE TABLE audit_devices (
    device_id TEXT PRIMARY KEY, public_key TEXT NOT NULL, registered_at TEXT NOT NULL)"""


def test_a_registry_from_before_wrapping_keys_gains_the_column_in_place(database_url: str) -> None:
    """A database made before desks had key-wrapping keys: its desks stay registered, and a new registration
    adds the key (SQLite cannot ADD COLUMN IF NOT EXISTS, PostgreSQL can: both paths run here)."""
    row = ("INSERT INTO audit_devices (device_id, public_key, registered_at) VALUES (?, ?, ?)",
           ("desk-old", "00" * 32, "2026-01-01T00:00:00.000+00:00"))
    if database_url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(database_url[len("sqlite:///"):]) as conn:
            conn.execute(_FIRST_SCHEMA)
            conn.execute(*row)
        conn.close()
    else:
        import psycopg

        with psycopg.connect(database_url, autocommit=True) as pg:
            pg.execute(_FIRST_SCHEMA)
            pg.execute(row[0].replace("?", "%s"), row[1])
    for _ in range(2):  # opening again finds the column already there
        store = RegistryStore(database_url)
        try:
            assert store.public_key("desk-old") == "00" * 32 and store.wrapping_key("desk-old") is None
            assert store.wrapping_keys() == {}  # no key-wrapping key yet: it receives no library key
        finally:
            store.close()
    store = RegistryStore(database_url)
    try:
        store.register_device("desk-old", "00" * 32, wrap_public_key_hex="ab" * 32)
        store.register_device("desk-old", "11" * 32)  # a re-registration without --wrap-key keeps it
        assert store.wrapping_keys() == {"desk-old": "ab" * 32}
        store.record_grants("k" * 32, ["desk-old"])
        store.record_grants("k" * 32, ["desk-old"])  # a repeat grant is kept once
        assert store.revoked_holders("k" * 32) == []
        store.revoke_device("desk-old", "test", "stolen")
        assert store.revoked_holders("k" * 32) == ["desk-old"] and store.wrapping_keys() == {}
    finally:
        store.close()
