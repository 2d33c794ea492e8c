"""Rows of central's governed library register (``reference_libraries``, ``library_compositions``) for tests.

The columns are the shared contract of issue #18; the tables are made here with exactly those columns when
the governance store has not made them in this database, so the fleet page and the reports can be tested
against the register they read.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from central.database import SqlStore, StoreError

_LIBRARIES = """CREATE TABLE IF NOT EXISTS reference_libraries (
    library_id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, purposes TEXT, purpose_text TEXT,
    legal_basis TEXT, authority_reference TEXT, default_for_custody INTEGER, status TEXT NOT NULL,
    requested_by TEXT, requested_at TEXT, authorised_by TEXT, authorised_rank TEXT, authorised_at TEXT,
    review_due TEXT, expires_at TEXT, suspended_at TEXT, retired_at TEXT)"""
_COMPOSITIONS = """CREATE TABLE IF NOT EXISTS library_compositions (
    library_id TEXT NOT NULL, library_version BIGINT NOT NULL, built_at TEXT NOT NULL, composition TEXT NOT NULL,
    PRIMARY KEY (library_id, library_version))"""


class RegisterRows(SqlStore):
    def __init__(self, url: str) -> None:
        super().__init__(url, schema=lambda _d: [_LIBRARIES, _COMPOSITIONS], lock_id=772099, error=StoreError,
                         what="test library register")

    def library(self, library_id: str, name: str, kind: str = "substantive", status: str = "authorised",
                **columns: Any) -> None:
        values: dict[str, Any] = {"library_id": library_id, "name": name, "kind": kind, "status": status,
                                  "purposes": json.dumps(["custody"]), "authorised_by": "Supt Okafor",
                                  "authorised_rank": "superintendent", "authority_reference": f"AUTH/{library_id}",
                                  "legal_basis": "PACE s.64A; common law policing purpose",
                                  "purpose_text": "Identify detainees whose identity is in doubt"}
        values.update({k: v.isoformat() if isinstance(v, datetime) else v for k, v in columns.items()})
        names = sorted(values)
        with self._lock:
            self._execute(f"INSERT INTO reference_libraries ({', '.join(names)}) VALUES"
                          f" ({', '.join('?' * len(names))})", [values[n] for n in names])

    def composition(self, library_id: str, version: int, built_at: datetime, counts: dict[str, Any]) -> None:
        with self._lock:
            self._execute("INSERT INTO library_compositions (library_id, library_version, built_at, composition)"
                          " VALUES (?, ?, ?, ?)", (library_id, version, built_at.isoformat(), json.dumps(counts)))
