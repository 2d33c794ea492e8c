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
