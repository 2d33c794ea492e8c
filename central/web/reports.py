"""Oversight reports: the board's quarterly review (page and CSV) and the annual public report (page and PDF).

Every figure is an aggregate from ``central.reports.aggregation``; nothing on
these pages comes from an event's text. The public report suppresses counts
of 1 to 4 (``central.reports.disclosure``). Charts are PNGs in ``data:`` URIs,
which central's CSP allows (``img-src 'self' data:``), so the PDF printer needs
no fetch either.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

from flask import Blueprint, abort, current_app, render_template, request
from werkzeug.wrappers import Response

from central.reports import annual, disclosure, quarterly
from central.reports.annual import COMPOSITION_TABLES, SEX_LABELS
from central.reports.periods import PeriodError, last_complete_quarter, last_complete_year
from central.reports.sections import exact, sections
from central.reports.settings import LibrarySource
from central.web.stores import audit_store, library_register
from core.errors import WireFormatError
from core.topics import validate_device_id

bp = Blueprint("reports", __name__, url_prefix="/reports")


def _int_arg(name: str, default: int | None = None) -> int:
    raw = request.args.get(name, "").strip()
    if not raw and default is not None:
        return default
    try:
        return int(raw)
    except ValueError:
        abort(400, f"The {name} must be a whole number, like 2026 (not {raw[:20]!r}).")


def _devices() -> list[str]:
    devices = [d.strip() for d in request.args.getlist("device") if d.strip()]
    for device in devices:
        try:
            validate_device_id(device)
        except WireFormatError as e:
            abort(400, str(e))
    return devices


def _today() -> date:
    """Today in UTC, from ``CLOCK`` in the app config when a test sets one (a callable giving an aware time)."""
    clock: Callable[[], datetime] = current_app.config.get("CLOCK") or (lambda: datetime.now(UTC))
    return clock().astimezone(UTC).date()


def _libraries() -> list[LibrarySource]:
    return [LibrarySource.model_validate(entry) for entry in current_app.config.get("REPORT_LIBRARIES") or []]


def _quarterly() -> quarterly.QuarterlyReport:
    try:
        year, number = last_complete_quarter(_today())
        return quarterly.build(audit_store(), _int_arg("year", year), _int_arg("quarter", number), _devices(),
                               library_register())
    except PeriodError as e:
        abort(400, str(e))


def _annual() -> annual.AnnualReport:
    try:
        return annual.build(audit_store(), _int_arg("year", last_complete_year(_today())), _libraries(), _today(),
                            library_register())
    except PeriodError as e:
        abort(400, str(e))


def _download(body: str | bytes, mimetype: str, filename: str) -> Response:
    response = current_app.response_class(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("")
def index() -> str:
    year, number = last_complete_quarter(_today())
    return render_template("reports/index.html", devices=audit_store().devices(), year=year, quarter=number,
                           annual_year=last_complete_year(_today()))


@bp.get("/quarterly")
def quarterly_page() -> str:
    report = _quarterly()
    return render_template("reports/quarterly.html", report=report, sections=sections(report.figures),
                           count=exact, composition_tables=COMPOSITION_TABLES, sex_labels=SEX_LABELS,
                           args={"year": report.period.start.year, "quarter": (report.period.start.month + 2) // 3,
                                 "device": list(report.devices)})


@bp.get("/quarterly.csv")
def quarterly_csv() -> Response:
    report = _quarterly()
    return _download(quarterly.to_csv(report), "text/csv", f"rfr-quarterly-{report.period.slug}.csv")


def _annual_context(report: annual.AnnualReport, charts: bool) -> dict[str, object]:
    return {
        "report": report,
        "sections": sections(report.figures, show=disclosure.shown, charts=charts, suppressed=disclosure.suppressed),
        "shown": disclosure.shown,
        "rule": disclosure.RULE,
        "composition_tables": COMPOSITION_TABLES,
        "sex_labels": SEX_LABELS,
    }


@bp.get("/annual")
def annual_page() -> str:
    report = _annual()
    return render_template("reports/annual.html", **_annual_context(report, charts=True))


@bp.get("/annual.pdf")
def annual_pdf() -> Response:
    from central.reports.pdf import render_pdf  # WeasyPrint loads pango on import: only when printing

    report = _annual()
    html = render_template("reports/annual_print.html", **_annual_context(report, charts=True))
    return _download(render_pdf(html), "application/pdf", f"rfr-annual-report-{report.period.slug}.pdf")
