"""How many sign-ins central has refused, by reason: a counter in the database, for ``/metrics``.

Central's web runs in several gunicorn worker processes (and may run on several hosts), and any of them may
answer a scrape: a counter kept in one process's memory would show only that process's refusals and reset
when it restarts. One row per reason in the shared database, bumped in place, is the same number whichever
process is asked, and outlives restarts (Prometheus's ``rate`` needs no more than that).
"""

from __future__ import annotations

from pathlib import Path

from central.database import Dialect, SqlStore, StoreError


def _schema(dialect: Dialect) -> list[str]:
    return [f"""CREATE TABLE IF NOT EXISTS central_signin_failures (
            reason TEXT PRIMARY KEY,
            refused {dialect.big_int} NOT NULL)"""]


class SignInFailureStore(SqlStore):
    """Refused sign-ins counted by reason code (``wrong_password``, ``throttled``...), never by account."""

    def __init__(self, url: str | Path) -> None:
        super().__init__(url, schema=_schema, lock_id=772011, error=StoreError, what="sign-in failure counts")

    def add(self, reason: str) -> None:
        with self._lock:
            self._execute("INSERT INTO central_signin_failures (reason, refused) VALUES (?, 1) ON CONFLICT (reason)"
                          " DO UPDATE SET refused = central_signin_failures.refused + 1", (reason,))

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {r["reason"]: int(r["refused"]) for r in self._rows(
                "SELECT reason, refused FROM central_signin_failures ORDER BY reason")}
