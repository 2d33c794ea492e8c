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

from central.audit.store import AuditStore
from central.reports import periods
from central.reports.aggregation import Figures, aggregate, rows

CSV_COLUMNS = ("period", "figure", "category", "count")


@dataclass(frozen=True)
class QuarterlyReport:
    period: periods.Period
    devices: tuple[str, ...]  # the desks selected; empty means all
    figures: Figures


def build(store: AuditStore, year: int, quarter: int, devices: Sequence[str] = ()) -> QuarterlyReport:
    """The report for ``quarter`` of ``year`` over ``devices`` (all when empty)."""
    period = periods.quarter(year, quarter)
    return QuarterlyReport(period, tuple(sorted(set(devices))), aggregate(periods.events_in(store, period, devices)))


def to_csv(report: QuarterlyReport) -> str:
    """``period,figure,category,count``: one row per count, every category present (zeros included)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for figure, category, count in rows(report.figures):
        writer.writerow((report.period.slug, figure, category, count))
    return buffer.getvalue()
