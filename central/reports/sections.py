"""Figures laid out for people: titled tables (and which of them get a chart), shared by every report.

The board's quarterly page shows exact counts; the public report passes a
``show`` function that suppresses small counts (``disclosure.shown``). Both
come from the same rows, so the two reports never disagree on what a figure is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from central.reports import labels
from central.reports.aggregation import Figures, rows
from central.reports.charts import bar_chart, data_uri

#: Figures drawn as charts as well as tables: the ones a board member compares at a glance.
CHARTED = ("search_outcomes", "searches_by_age_band", "approvals_by_rank", "approvals_by_reason",
           "peer_review_results", "refusals", "library_version_searches")


@dataclass(frozen=True)
class Line:
    label: str
    value: str


@dataclass(frozen=True)
class Section:
    """One figure: its title, its lines, and a chart (a data: URI) when it has one."""

    key: str
    title: str
    lines: tuple[Line, ...]
    chart: str | None = None

    @property
    def chart_alt(self) -> str:
        """What the chart says, in words: a screen reader hears the figures, not just that a chart is there."""
        said = "; ".join(f"{line.label}: {line.value}" for line in self.lines)
        return f"Bar chart: {self.title}. {said}."


def exact(count: int) -> str:
    return f"{count:,}"


def sections(figures: Figures, show: Callable[[int], str] = exact, charts: bool = True,
             suppressed: Callable[[int], bool] = lambda _count: False) -> list[Section]:
    """One section per figure, in schema order; totals (single numbers) first, as a summary."""
    grouped: dict[str, list[tuple[str, int]]] = {}
    for figure, category, count in rows(figures):
        grouped.setdefault(figure, []).append((category, count))
    out = []
    for figure, items in grouped.items():
        title = labels.figure(figure)
        lines = tuple(Line(labels.category(c), show(n)) for c, n in items)
        chart = None
        if charts and figure in CHARTED and any(n for _c, n in items):
            values = {labels.category(c): (None if suppressed(n) else n) for c, n in items}
            note = ("Hatched grey: a count from 1 to 4, not shown exactly to protect the people involved."
                    if any(v is None for v in values.values()) else "")
            chart = data_uri(bar_chart(title, values, note))
        out.append(Section(figure, title, lines, chart))
    return out
