"""Central's disk and backup figures per audit event, on a real PostgreSQL: what docs/operations.md sizes from.

    .venv/bin/python -m bench.central_sizing                 # 4 desks x 10,000 events
    .venv/bin/python -m bench.central_sizing --per-desk 2000 # quick run

Desk-shaped search events (the fields ``appliance.services.cases`` records: case id, custody reference,
library version, embedder, candidates, top score, quality, age band), hash-chained and checkpointed every 100
events as a desk does (``testbed.chain_writer``), are stored through ``AuditStore.add_batch``, the ingest's own
write path, into a throwaway PostgreSQL 15 cluster (``testbed/postgres.py``). Then ``python -m central backup``
and ``restore`` run into a second database. Printed: database bytes per event (tables and indexes, from
``pg_total_relation_size``), dump bytes per event, and the seconds of backup and restore, with each as a
ratio of the ``pg_dump`` run alone measured in the same run (the baseline: what the backup adds to it).
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from central.audit.store import AuditStore
from central.backup import back_up, restore
from central.settings import CentralSettings
from testbed.chain_writer import ChainWriter
from testbed.postgres import PG_BIN, start_postgres

SECRET = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"


def fill(url: str, desks: int, per_desk: int) -> None:
    store = AuditStore(url)
    try:
        for d in range(desks):
            writer = ChainWriter(f"desk-{d:04d}")
            for start in range(0, per_desk, 500):
                batch = [writer.event("search", "PC 4471", "candidates_shown", case_id=f"{start + i:08X}",
                                      custody_ref=f"CR/2026/{start + i:06d}", library_version=12,
                                      embedder="yunet+sface+dlib@1", faces_found=1, candidates=50,
                                      top_score=0.7312, probe_quality="good", age_band="25-34",
                                      apparent_under_18=False, apparent_under_16=False)
                         for i in range(min(500, per_desk - start))]
                checkpoints = [writer.checkpoint()] if (start + 500) % 100 == 0 or start + 500 >= per_desk else []
                store.add_batch(batch, checkpoints, datetime.now(UTC))
    finally:
        store.close()


def database_bytes(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                                "ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = 'public'"
                                ).fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--desks", type=int, default=4)
    parser.add_argument("--per-desk", type=int, default=10_000)
    args = parser.parse_args()
    events = args.desks * args.per_desk
    server = start_postgres()
    work = Path(tempfile.mkdtemp(prefix="rfr-sizing-"))
    try:
        url, target = server.create_database(), server.create_database()
        started = time.perf_counter()
        fill(url, args.desks, args.per_desk)
        fill_s = time.perf_counter() - started
        db_bytes = database_bytes(url)
        started = time.perf_counter()
        subprocess.run([str(PG_BIN / "pg_dump"), "--format=custom", "--no-owner", "--file",
                        str(work / "plain.pgdump"), url], check=True)
        dump_s = time.perf_counter() - started
        settings = CentralSettings.model_validate({"data_dir": work / "data", "database": url,
                                                   "mqtt": {"host": "127.0.0.1", "port": 1883},
                                                   "web": {"secret_key": SECRET}})
        started = time.perf_counter()
        back_up(settings, work / "backup", b"a passphrase for the sizing run", pg_bin=PG_BIN)
        backup_s = time.perf_counter() - started
        dump_bytes = (work / "backup" / "database.pgdump").stat().st_size
        started = time.perf_counter()
        restore(settings.model_copy(update={"database": target}), work / "backup",
                b"a passphrase for the sizing run", pg_bin=PG_BIN)
        restore_s = time.perf_counter() - started
        result = {"events": events, "desks": args.desks, "fill_s": round(fill_s, 1),
                  "db_bytes_per_event": round(db_bytes / events), "dump_bytes_per_event": round(dump_bytes / events),
                  "pg_dump_s": round(dump_s, 2), "backup_s": round(backup_s, 2), "restore_s": round(restore_s, 2),
                  "backup_over_pg_dump": round(backup_s / dump_s, 2),
                  "restore_over_pg_dump": round(restore_s / dump_s, 2),
                  "restored_bytes_per_event": round(database_bytes(target) / events),
                  "load_avg": [round(x, 2) for x in os.getloadavg()]}
        print(f"{events} events: {result['db_bytes_per_event']} B/event in PostgreSQL, "
              f"{result['dump_bytes_per_event']} B/event dumped; pg_dump {dump_s:.1f} s, backup {backup_s:.1f} s, "
              f"restore {restore_s:.1f} s")
        print(json.dumps(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        server.stop()


if __name__ == "__main__":
    main()
