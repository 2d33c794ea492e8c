"""Rows of central's governed library register (``reference_libraries``, ``library_compositions``) for tests.

The tables are made by the governance store (``central.libraries.store``); rows are written directly so a
test can put a library in any state at any past date, which the governance service (rightly) does not allow.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from central.database import SqlStore, StoreError
from central.libraries.store import LibraryStore


class RegisterRows(SqlStore):
    def __init__(self, url: str) -> None:
        LibraryStore(url).close()  # the governance store's own tables
        super().__init__(url, schema=lambda _d: [], lock_id=772099, error=StoreError, what="test library register")

    def library(self, library_id: str, name: str, kind: str = "substantive", status: str = "authorised",
                **columns: Any) -> None:
        values: dict[str, Any] = {"library_id": library_id, "name": name, "kind": kind, "status": status,
                                  "purposes": "custody", "authorised_by": "Supt Okafor",
                                  "authorised_rank": "superintendent", "authority_reference": f"AUTH/{library_id}",
                                  "legal_basis": "PACE s.64A; common law policing purpose",
                                  "purpose_text": "Identify detainees whose identity is in doubt",
                                  "requested_by": "insp.request", "requested_at": "2019-01-01T00:00:00.000+00:00"}
        values.update({k: v.isoformat() if isinstance(v, datetime) else v for k, v in columns.items()})
        names = sorted(values)
        with self._lock:
            self._execute(f"INSERT INTO reference_libraries ({', '.join(names)}) VALUES"
                          f" ({', '.join('?' * len(names))})", [values[n] for n in names])

    def composition(self, library_id: str, version: int, built_at: datetime, counts: dict[str, Any]) -> None:
        with self._lock:
            self._execute("INSERT INTO library_compositions (library_id, library_version, built_at, composition)"
                          " VALUES (?, ?, ?, ?)", (library_id, version, built_at.isoformat(), json.dumps(counts)))
