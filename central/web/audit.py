"""The auditors' pages: events filtered by desk, person, time, type, outcome, case and custody record;
finding a case and reading its timeline; exports; checking an export's proof; chain status.

The table body polls itself every few seconds with htmx; the same route returns
either the whole page or only the rows (for an ``HX-Request``), so the page also
works, minus live updates, without JavaScript. Details are shown as labelled words
(``central.audit.labels``), whole. Exports take the same filters: the evidence file
(CSV or JSON Lines) carries the checkpoints, links and keys needed to verify it
offline with ``python -m central.audit verify`` or on ``/audit/verify``; the
spreadsheet files hold one kind of event each (``central.audit.spreadsheet``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, abort, current_app, make_response, redirect, render_template, url_for
from htmx_flask import request
from werkzeug.wrappers import Response

from central.audit import labels
from central.audit.cases import group_cases
from central.audit.export import to_csv, to_jsonl
from central.audit.filter import EventFilter
from central.audit.spreadsheet import file_name, kind_csv, utc_text
from central.audit.timeline import assemble
from central.audit.verification import verify_export
from central.web.auth import current_user, home_for
from central.web.stores import audit_store, peer_reviews, registry_store
from core.errors import WireFormatError
from core.events import EVENT_TYPES
from core.topics import validate_device_id

bp = Blueprint("audit", __name__)



@bp.context_processor
def _words() -> dict[str, Any]:
    return {"labels": labels}


_FILTER_KEYS = ("device", "actor", "type", "outcome", "since", "until", "case", "custody_ref")
_CASE_LIMIT = 2000  # events read to find cases; the page says when the search should be narrowed
_EXPORT_TEXT_LIMIT = 1024 * 1024  # what the verification form accepts (central's form limit)


def _label_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event with its type, outcome and details in words, for the templates."""
    for row in rows:
        row["type_label"] = labels.event_type(row["type"])
        row["outcome_label"] = labels.outcome(row["outcome"])
        row["detail_lines"] = labels.details(row["details"])
        row["utc_text"] = utc_text(row["occurred_at"])  # the desk may send any offset; the column says UTC
    return rows


def _time_arg(name: str) -> str | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        abort(400, f"The {name!r} time {value[:40]!r} is not a date and time like 2030-01-31T14:00.")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the form's times are UTC, as the table's are
    return moment.isoformat()


def _filters(with_case: bool = False) -> tuple[EventFilter, dict[str, str]]:
    """The filter from the query string, validated, and the raw values to put back in links."""
    raw = {k: request.args.get(k, "").strip() for k in _FILTER_KEYS}
    raw["case"] = raw["case"].upper()  # desks make case ids in upper-case hex
    device = raw["device"] or None
    if device is not None:
        try:
            validate_device_id(device)
        except WireFormatError as e:
            abort(400, str(e))
    if raw["type"] and raw["type"] not in EVENT_TYPES:
        abort(400, f"There is no event type {raw['type'][:40]!r}.")
    for key, name in (("actor", "person"), ("outcome", "outcome"), ("case", "case id"),
                      ("custody_ref", "custody record")):
        if len(raw[key]) > 200:
            abort(400, f"The {name} filter is too long.")
    flt = EventFilter(device_id=device, actor=raw["actor"] or None, type=raw["type"] or None,
                      outcome=raw["outcome"] or None, since=_time_arg("since"), until=_time_arg("until"),
                      case_id=raw["case"] or None, custody_ref=raw["custody_ref"] or None, with_case=with_case)
    return flt, {k: v for k, v in raw.items() if v}


@bp.get("/")
def index() -> Response:
    """Each person's first page: the one their roles open (sign-in if not signed in)."""
    user = current_user()
    return redirect((home_for(user) if user is not None else None) or url_for("auth.login"))


@bp.get("/audit")
def events() -> Response:
    flt, raw = _filters()
    store = audit_store()
    rows = _label_rows(store.query(flt, limit=current_app.config["AUDIT_PAGE_SIZE"]))
    if request.htmx:
        body = render_template("audit/_rows.html", rows=rows)
    else:
        heads = store.heads()
        body = render_template(
            "audit/index.html",
            rows=rows,
            filters=raw,
            device=flt.device_id,
            devices=store.devices(),
            types=sorted(EVENT_TYPES, key=labels.event_type),
            outcomes=store.distinct("outcome"),
            kinds=store.type_counts(flt),
            matching=store.count(flt),
            total=store.count(),
            rejected=store.rejection_count(),
            heads=heads,
            gaps={h.device_id: store.gaps(h.device_id, limit=3) for h in heads if h.max_seq > h.contiguous_seq},
            findings=store.findings(limit=50),
            rejections=store.rejections(limit=10),
        )
    response = make_response(body)
    # The same URL serves two shapes: caches must not hand the rows to a full-page load.
    response.vary.add("HX-Request")
    return response


@bp.get("/audit/export.<fmt>")
def export(fmt: str) -> Response:
    if fmt not in ("csv", "jsonl"):
        abort(404, "Exports are CSV (export.csv) or JSON Lines (export.jsonl).")
    flt, _raw = _filters()
    store = audit_store()
    writer = to_csv if fmt == "csv" else to_jsonl
    body = writer(store.export_records(flt, registry_store().registered_devices()), flt.as_dict())
    mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = current_app.response_class(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
    return response


@bp.get("/audit/export/<event_type>.csv")
def export_kind(event_type: str) -> Response:
    """One kind of event, for a spreadsheet (``central.audit.spreadsheet``)."""
    if event_type not in EVENT_TYPES:
        abort(404, f"There is no kind of event {event_type[:40]!r}.")
    flt, _raw = _filters()
    flt = EventFilter(**{**flt.__dict__, "type": event_type})
    rows = audit_store().query_oldest_first(flt, limit=1_000_000)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = current_app.response_class(kind_csv(rows), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{file_name(event_type, stamp)}"'
    return response


def _date_arg(name: str, inclusive_end: bool = False) -> str | None:
    """A day from a date field (``2026-12-04``), as a UTC time; an inclusive "to" day ends at its midnight."""
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        abort(400, f"The date {value[:40]!r} is not a date like 2026-12-31.")
    return (day + timedelta(days=1) if inclusive_end else day).isoformat()


@bp.get("/audit/cases")
def find_case() -> str:
    """Find a case by case id, custody record, desk, person and date; each result opens its timeline."""
    flt, raw = _filters(with_case=True)
    for name in ("from", "to"):
        if request.args.get(name, "").strip():
            raw[name] = request.args[name].strip()
    flt = EventFilter(**{**flt.__dict__, "since": _date_arg("from") or flt.since,
                         "until": _date_arg("to", inclusive_end=True) or flt.until})
    asked = any(raw.get(k) for k in ("case", "custody_ref", "device", "actor", "from", "to"))
    cases, truncated = [], False
    if asked:
        rows = audit_store().query(flt, limit=_CASE_LIMIT)
        truncated = len(rows) == _CASE_LIMIT
        cases = group_cases(rows)
    return render_template("audit/cases.html", cases=cases, asked=asked, truncated=truncated, filters=raw,
                           devices=audit_store().devices())


@bp.get("/audit/cases/<device_id>/<case_id>")
def case_timeline(device_id: str, case_id: str) -> str:
    """Every event of one case, from its desk and from central, in the order they happened."""
    try:
        validate_device_id(device_id)
    except WireFormatError as e:
        abort(404, str(e))
    if not case_id.isalnum() or len(case_id) > 40:
        abort(404, "A case id is letters and digits, like 3FA9C2D1.")
    flt = EventFilter(device_id=device_id, case_id=case_id)
    store = audit_store()
    rows = store.query_oldest_first(flt)
    central_rows = peer_reviews().log_for_case(device_id, case_id)
    if not rows and not central_rows:
        abort(404, f"No event about case {case_id} has reached central from {device_id}.")
    summary = group_cases(rows)
    return render_template("audit/case.html", device_id=device_id, case_id=case_id,
                           case=summary[0] if summary else None, entries=assemble(rows, central_rows),
                           kinds=store.type_counts(flt), filters={"device": device_id, "case": case_id})


@bp.route("/audit/verify", methods=["GET", "POST"])
def verify() -> tuple[str, int] | str:
    """Check an export's proof here, with the same routine as ``python -m central.audit verify``."""
    if request.method != "POST":  # GET, and HEAD answered as GET
        return render_template("audit/verify.html", result=None, error=None, name=None)
    upload = request.files.get("export")
    if upload is None or not upload.filename:
        return render_template("audit/verify.html", result=None, name=None,
                               error="Choose the export file to check (the .jsonl or .csv evidence file)."), 422
    data = upload.read(_EXPORT_TEXT_LIMIT + 1)
    name = upload.filename[:200]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return render_template("audit/verify.html", result=None, name=name,
                               error=f"{name} is not a text export from central: it cannot be read as UTF-8."), 422
    if not text.strip():
        return render_template("audit/verify.html", result=None, name=name, error=f"{name} is empty."), 422
    result = verify_export(text, name, allow_unsigned_tail=request.form.get("allow_unsigned_tail") == "yes")
    return render_template("audit/verify.html", result=result, error=None, name=name)
