"""Reporting periods (calendar quarters and years, UTC) and the events that fall in them.

A period is half-open, ``[start, end)``, matched on when the event happened
(``occurred_at``, normalised to UTC by the store), so an event at midnight on
1 April belongs to Q2 only. Quarters are calendar quarters: Q1 is January to
March.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from central.audit.filter import EventFilter
from central.audit.store import AuditStore

_PAGE = 5000
_FIRST_YEAR, _LAST_YEAR = 2000, 2999


class PeriodError(ValueError):
    """A year or quarter that is not a reporting period; the message says what is allowed."""


@dataclass(frozen=True)
class Period:
    """A reporting period: ``label`` for people, ``[start, end)`` in UTC for the store."""

    label: str
    start: datetime
    end: datetime

    @property
    def slug(self) -> str:
        """The label as a file-name part (``2026-Q1``, ``2026``)."""
        return self.label.replace(" ", "-")


def _check_year(year: int) -> None:
    if not _FIRST_YEAR <= year <= _LAST_YEAR:
        raise PeriodError(f"The year must be between {_FIRST_YEAR} and {_LAST_YEAR}, not {year}.")


def quarter(year: int, number: int) -> Period:
    """Calendar quarter ``number`` (1-4) of ``year``."""
    _check_year(year)
    if number not in (1, 2, 3, 4):
        raise PeriodError(f"The quarter must be 1, 2, 3 or 4, not {number}.")
    start = datetime(year, 3 * number - 2, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC) if number == 4 else datetime(year, 3 * number + 1, 1, tzinfo=UTC)
    return Period(f"{year} Q{number}", start, end)


def year(value: int) -> Period:
    """The calendar year ``value``."""
    _check_year(value)
    return Period(str(value), datetime(value, 1, 1, tzinfo=UTC), datetime(value + 1, 1, 1, tzinfo=UTC))


def last_complete_quarter(today: date) -> tuple[int, int]:
    """(year, quarter) of the newest quarter that has ended by ``today``: what a board reviews by default.

    In December 2026 that is Q3 2026; in January to March 2027, Q4 2026. A quarter still running would
    show a partial count as if it were the quarter's figure.
    """
    current = (today.month - 1) // 3 + 1
    return (today.year - 1, 4) if current == 1 else (today.year, current - 1)


def last_complete_year(today: date) -> int:
    """The newest calendar year that has ended by ``today`` (the annual report's default)."""
    return today.year - 1


def events_in(store: AuditStore, period: Period, devices: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every stored event in ``period`` from ``devices`` (all devices when empty), page by page."""
    out: list[dict[str, Any]] = []
    for device in sorted(set(devices)) or [None]:
        flt = EventFilter(device_id=device, since=period.start.isoformat(), until=period.end.isoformat())
        offset = 0
        while True:
            page = store.query(flt, limit=_PAGE, offset=offset)
            out.extend(page)
            if len(page) < _PAGE:
                break
            offset += _PAGE
    return out
