"""Charts as PNG bytes, drawn with matplotlib's Agg canvas, for pages (data: URIs) and the PDF.

``matplotlib.figure.Figure`` with an explicit Agg canvas, never ``pyplot``:
pyplot keeps global state and a GUI backend, which a multi-threaded web
server must not touch. Every chart is also printed as a table beside it, so
the chart is a convenience for reading, never the only record of a figure.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from central.reports import disclosure

_DPI = 100
_BAR = "#1d70b8"
_SUPPRESSED = "#b1b4b6"


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


@dataclass(frozen=True)
class Bar:
    """One bar as drawn: from ``start`` for ``length`` on the count axis, with the words printed beside it."""

    label: str
    start: float
    length: float
    text: str
    suppressed: bool


def bar_spec(values: Mapping[str, int | None]) -> tuple[list[Bar], float]:
    """The bars and the axis end for ``values`` (``None``: a suppressed count of 1 to 4).

    A suppressed count is drawn as a hatched range from 1 to 4, which is all the public may know of it,
    instead of an empty grey stub; the axis always reaches past the suppression limit, so a count of 1
    or 2 is a visible bar on a scale a reader can judge rather than one filling the whole chart.
    """
    low, high = 1, disclosure.LIMIT - 1
    bars = [Bar(label, low, high - low, disclosure.SMALL, True) if v is None else Bar(label, 0, v, f"{v:,}", False)
            for label, v in values.items()]
    top = max([b.start + b.length for b in bars] + [disclosure.LIMIT])
    return bars, top * 1.3


def bar_chart(title: str, values: Mapping[str, int | None], note: str = "") -> bytes:
    """Horizontal bars, one per category, each labelled with its count in words (``bar_spec``)."""
    bars, end = bar_spec(values)
    fig = Figure(figsize=(6.5, 0.45 * len(bars) + 1.2))
    ax = fig.add_subplot()
    drawn = ax.barh([b.label for b in bars], [b.length for b in bars], left=[b.start for b in bars],
                    color=[_SUPPRESSED if b.suppressed else _BAR for b in bars],
                    edgecolor=["#505a5f" if b.suppressed else _BAR for b in bars])
    for patch, bar in zip(drawn.patches, bars, strict=True):
        if bar.suppressed:
            patch.set_hatch("//")
    ax.invert_yaxis()
    ax.bar_label(drawn, labels=[b.text for b in bars], padding=3)
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_xlim(0, end)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.spines[["top", "right"]].set_visible(False)
    if note:
        fig.text(0.01, 0.005, note, fontsize=8, ha="left", va="bottom")
    return _png(fig)


def det_chart(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
              points: Mapping[str, tuple[float, float]], title: str) -> bytes:
    """Detection error trade-off: FNIR against FPIR on log axes, one line per group.

    ``points`` marks each group's rates at the operating threshold. Zero rates
    cannot sit on a log axis, so they are drawn at the axis floor (one search
    in the largest population) and the caption says so.
    """
    fig = Figure(figsize=(7, 5.5))
    ax = fig.add_subplot()
    floor = 1e-4
    for name, (fpir, fnir) in curves.items():
        xs = [max(x, floor) for x in fpir]
        ys = [max(y, floor) for y in fnir]
        (line,) = ax.step(xs, ys, where="post", label=name, linewidth=1.2)
        if name in points:
            px, py = points[name]
            ax.plot([max(px, floor)], [max(py, floor)], marker="o", color=line.get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("False positive identification rate (non-mated searches returning a candidate)")
    ax.set_ylabel("False negative identification rate (mate not returned)")
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.text(0.01, 0.005, f"Dots: the operating threshold. Rates of zero are drawn at {floor:g}.",
             fontsize=8, ha="left", va="bottom")
    return _png(fig)


def data_uri(png: bytes) -> str:
    """The PNG as a ``data:`` URI: central's CSP allows ``img-src 'self' data:``, and the PDF needs no fetch."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
