"""Read-only view of the governed reference libraries, for the fleet page and the oversight reports.

The tables belong to the library governance store (``central.libraries.store``): ``reference_libraries``
(one row per library: kind, status, who authorised it and when, review and expiry dates) and
``library_compositions`` (the composition counted when each version was built). This module reads them
through that store's own queries, opened with ``create=False``: it never creates or changes them, so it
cannot race that store's schema. A database where the governance store has not run yet has no such
tables: then every library is unknown, and callers fall back to the default ``national`` library.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

from central.libraries.store import LibraryStore

logger = logging.getLogger(__name__)

SUBSTANTIVE, TEMPORARY = "substantive", "temporary"
#: Statuses under which no desk should hold a copy any longer.
GONE_STATUSES = ("retired", "refused")

T = TypeVar("T")


def _moment(value: object) -> datetime | None:
    """A stored time as an aware datetime; a date (a review date, say) is midnight UTC that day."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RegisteredLibrary:
    """One governed library as central records it (times are aware datetimes, or None)."""

    library_id: str
    name: str
    kind: str
    status: str
    purpose_text: str | None = None
    legal_basis: str | None = None
    authority_reference: str | None = None
    requested_by: str | None = None
    authorised_by: str | None = None
    authorised_rank: str | None = None
    requested_at: datetime | None = None
    authorised_at: datetime | None = None
    review_due: datetime | None = None
    expires_at: datetime | None = None
    suspended_at: datetime | None = None
    retired_at: datetime | None = None

    @property
    def temporary(self) -> bool:
        return self.kind == TEMPORARY

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def withdrawn(self, now: datetime) -> str | None:
        """Why no desk should hold this library any more (``retired``, ``refused``, ``expired``), or None."""
        if self.status in GONE_STATUSES:
            return self.status
        if self.expired(now):
            return "expired"
        return None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RegisteredLibrary:
        def text(name: str) -> str | None:
            value = row.get(name)
            return None if value is None else str(value)

        return cls(library_id=str(row["library_id"]), name=str(row.get("name") or row["library_id"]),
                   kind=str(row.get("kind") or SUBSTANTIVE), status=str(row.get("status") or "requested"),
                   purpose_text=text("purpose_text"), legal_basis=text("legal_basis"),
                   authority_reference=text("authority_reference"), requested_by=text("requested_by"),
                   authorised_by=text("authorised_by"), authorised_rank=text("authorised_rank"),
                   requested_at=_moment(row.get("requested_at")), authorised_at=_moment(row.get("authorised_at")),
                   review_due=_moment(row.get("review_due")), expires_at=_moment(row.get("expires_at")),
                   suspended_at=_moment(row.get("suspended_at")), retired_at=_moment(row.get("retired_at")))


@dataclass(frozen=True)
class RecordedComposition:
    """The composition counted when one version of a library was built (``library.composition``'s dict)."""

    library_id: str
    library_version: int
    built_at: datetime | None
    counts: dict[str, Any]


class LibraryRegister:
    """Reads ``reference_libraries`` and ``library_compositions``; creates nothing (see the module docstring)."""

    def __init__(self, url: str | Path) -> None:
        self._store = LibraryStore(url, create=False)

    def close(self) -> None:
        self._store.close()

    def _read(self, query: Callable[[], list[T]]) -> list[T]:
        """The rows, or none when the governance tables do not exist (yet) in this database."""
        try:
            return query()
        except Exception as e:  # sqlite3.OperationalError, psycopg.errors.UndefinedTable
            logger.info("no governed library register in this database: %s", e)
            return []

    def libraries(self) -> dict[str, RegisteredLibrary]:
        """Every library central has a record of, by id."""
        records = sorted(self._read(self._store.all), key=lambda r: r.library_id)
        return {r.library_id: RegisteredLibrary.from_row(asdict(r)) for r in records}

    def compositions(self, built_before: datetime | None = None) -> dict[str, RecordedComposition]:
        """Each library's newest recorded composition (built before ``built_before`` when given)."""
        rows = sorted(self._read(self._store.compositions), key=lambda r: (r["library_id"], r["library_version"]))
        newest: dict[str, RecordedComposition] = {}
        for r in rows:
            built = _moment(r.get("built_at"))
            if built_before is not None and built is not None and built >= built_before:
                continue
            newest[str(r["library_id"])] = RecordedComposition(str(r["library_id"]), int(r["library_version"]),
                                                               built, r["composition"])
        return newest
