"""Central's stores share one database whose tables are those it has always had, on SQLite and PostgreSQL.

The audit, registry and health stores were once one store: a database it made must open unchanged,
so the tables and their columns (in order) are pinned here.
"""

from __future__ import annotations

import sqlite3

import pytest

from central.audit.store import AuditStore
from central.database import SqlStore
from central.fleet.health_store import HealthStore
from central.fleet.registry_store import RegistryStore

TABLES = {
    "audit_events": ["id", "device_id", "seq", "event_id", "occurred_at", "occurred_utc", "type", "actor", "outcome",
                     "details", "prev_hash", "hash", "received_at"],
    "audit_checkpoints": ["device_id", "seq", "head", "signed_at", "signature", "status", "received_at"],
    "audit_devices": ["device_id", "public_key", "registered_at", "wrap_public_key"],
    "library_key_grants": ["key_id", "device_id", "granted_at"],
    "audit_heads": ["device_id", "contiguous_seq", "head_hash", "max_seq", "checkpoint_seq", "checkpoint_stored",
                    "reordered", "duplicates"],
    "audit_findings": ["id", "device_id", "seq", "kind", "message", "found_at"],
    "device_revocations": ["device_id", "revoked_at", "revoked_by", "reason"],
    "device_health": ["id", "device_id", "received_at", "sent_at", "interval_s", "software_version",
                      "library_version", "embedder_id", "disk_free_bytes", "disk_total_bytes",
                      "memory_available_bytes", "memory_total_bytes", "outbox_depth", "since_last_sync_s",
                      "clock_offset_s", "key_protection", "libraries"],
    "audit_rejections": ["id", "received_at", "topic", "reason", "size"],
}
INDEXES = {"audit_events_by_time", "audit_events_by_device_time", "audit_events_by_actor_time",
           "device_health_by_device_time"}


def _schema(url: str) -> tuple[dict[str, list[str]], set[str]]:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///"):]) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                               " AND name NOT LIKE 'sqlite_%'")]
            columns = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in tables}
            indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'"
                                                " AND name NOT LIKE 'sqlite_%'")}
        db.close()
        return columns, indexes
    import psycopg

    with psycopg.connect(url) as pg:
        rows = pg.execute("SELECT table_name, column_name FROM information_schema.columns"
                          " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position").fetchall()
        indexes = {r[0] for r in pg.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
                                            " AND indexname NOT LIKE '%pkey' AND indexname NOT LIKE '%key'")}
    columns: dict[str, list[str]] = {}
    for table, column in rows:
        columns.setdefault(table, []).append(column)
    return columns, indexes


@pytest.mark.parametrize("order", [(AuditStore, RegistryStore, HealthStore), (HealthStore, RegistryStore, AuditStore)])
def test_the_three_stores_make_the_tables_central_always_had(database_url: str,
                                                             order: tuple[type[SqlStore], ...]) -> None:
    for _ in range(2):  # opening again finds everything in place
        stores = [kind(database_url) for kind in order]  # type: ignore[call-arg]
        for store in stores:
            store.close()
    columns, indexes = _schema(database_url)
    assert columns == TABLES
    assert indexes == INDEXES
