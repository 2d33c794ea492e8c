"""The facial recognition board's quarterly review: exact aggregated counts for a quarter and chosen desks.

Aggregates only: the figures come from ``aggregation.aggregate``, whose schema
holds no name, reference or free text. The CSV is the same figures, one row
each, for the board's own analysis.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from central.audit.store import AuditStore
from central.fleet.library_register import LibraryRegister
from central.reports import periods
from central.reports.aggregation import Figures, aggregate, rows
from central.reports.by_library import LibraryBreakdown, breakdown

CSV_COLUMNS = ("period", "figure", "category", "count")


@dataclass(frozen=True)
class QuarterlyReport:
    period: periods.Period
    devices: tuple[str, ...]  # the desks selected; empty means all
    figures: Figures
    libraries: LibraryBreakdown


def library_breakdown(store: AuditStore, register: LibraryRegister | None, period: periods.Period,
                      events: list[dict[str, Any]]) -> LibraryBreakdown:
    """Searches by library, and the libraries' authorisation, composition and lifecycle, from the register
    (``register`` None: one opened on the audit store's database for this report)."""
    own = register is None
    reader = LibraryRegister(store.url) if register is None else register
    try:
        return breakdown(events, reader.libraries(), reader.compositions(built_before=period.end),
                         period.start, period.end)
    finally:
        if own:
            reader.close()


def build(store: AuditStore, year: int, quarter: int, devices: Sequence[str] = (),
          register: LibraryRegister | None = None) -> QuarterlyReport:
    """The report for ``quarter`` of ``year`` over ``devices`` (all when empty)."""
    period = periods.quarter(year, quarter)
    events = periods.events_in(store, period, devices)
    return QuarterlyReport(period, tuple(sorted(set(devices))), aggregate(events),
                           library_breakdown(store, register, period, events))


def to_csv(report: QuarterlyReport) -> str:
    """``period,figure,category,count``: one row per count, every category present (zeros included)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for figure, category, count in [*rows(report.figures), *report.libraries.rows()]:
        writer.writerow((report.period.slug, figure, category, count))
    return buffer.getvalue()
