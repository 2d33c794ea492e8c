"""The annual public report: the year's figures for every desk, and what each reference library holds.

Written for the public, so every count of 1 to 4 is suppressed (``disclosure``),
in the tables and in the charts alike. The demographics of searches are what
the desk records about the detainee: the apparent age band and the apparent
under-18 / under-16 flags; the desk does not record the detainee's sex or
ethnicity, so the report cannot give them for searches (it gives them for the
reference libraries, whose records carry them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from central.audit.store import AuditStore
from central.fleet.library_register import LibraryRegister
from central.reports import periods
from central.reports.aggregation import Figures, aggregate
from central.reports.by_library import LibraryBreakdown
from central.reports.libraries import LibraryComposition, LibrarySource, describe
from central.reports.quarterly import library_breakdown

#: The tables of a library's composition, with the words the public report uses.
COMPOSITION_TABLES = (("by_sex", "Sex"), ("by_ethnicity_code", "Ethnicity code (officer-defined, IC1-IC9)"),
                      ("by_age_range", "Age at the date of the image"), ("by_image_age", "Age of the image"))
SEX_LABELS = {"M": "Male", "F": "Female", "unknown": "Not recorded"}


@dataclass(frozen=True)
class AnnualReport:
    period: periods.Period
    figures: Figures
    libraries: tuple[LibraryComposition, ...]
    governed: LibraryBreakdown


def composition_date(period: periods.Period, today: date) -> date:
    """The last day of the year, or today while the year is still running (image ages are counted to it)."""
    return min((period.end - timedelta(days=1)).date(), today)


def build(store: AuditStore, year: int, libraries: Sequence[LibrarySource], today: date,
          register: LibraryRegister | None = None) -> AnnualReport:
    """The report for calendar ``year``: every desk's events, each library's composition, and the governed
    libraries searched, created and destroyed (``central.reports.by_library``)."""
    period = periods.year(year)
    as_of = composition_date(period, today)
    events = periods.events_in(store, period)
    return AnnualReport(period, aggregate(events), tuple(describe(source, as_of) for source in libraries),
                        library_breakdown(store, register, period, events))
