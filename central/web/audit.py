"""The auditors' pages: events filtered by device, user, time, type and outcome; exports; chain status.

The table body polls itself every few seconds with htmx; the same route returns
either the whole page or only the rows (for an ``HX-Request``), so the page also
works, minus live updates, without JavaScript. Exports (CSV and JSON Lines)
take the same filters and carry the checkpoints, links and keys needed to
verify them offline with ``python -m central.audit verify``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, abort, current_app, make_response, redirect, render_template, url_for
from htmx_flask import request
from werkzeug.wrappers import Response

from central.audit.export import to_csv, to_jsonl
from central.audit.filter import EventFilter
from central.web.auth import current_user, home_for
from central.web.stores import audit_store, registry_store
from core.errors import WireFormatError
from core.events import EVENT_TYPES
from core.topics import validate_device_id

bp = Blueprint("audit", __name__)

_SUMMARY_CHARS = 120
_FILTER_KEYS = ("device", "actor", "type", "outcome", "since", "until")


def summarise(details: dict[str, Any]) -> str:
    """One short line from an event's details, so a row stays one row."""
    text = ", ".join(f"{k}={v}" for k, v in sorted(details.items()))
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 1] + "…"


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


def _filters() -> tuple[EventFilter, dict[str, str]]:
    """The filter from the query string, validated, and the raw values to put back in links."""
    raw = {k: request.args.get(k, "").strip() for k in _FILTER_KEYS}
    device = raw["device"] or None
    if device is not None:
        try:
            validate_device_id(device)
        except WireFormatError as e:
            abort(400, str(e))
    if raw["type"] and raw["type"] not in EVENT_TYPES:
        abort(400, f"There is no event type {raw['type'][:40]!r}.")
    for key in ("actor", "outcome"):
        if len(raw[key]) > 200:
            abort(400, f"The {key} filter is too long.")
    flt = EventFilter(device_id=device, actor=raw["actor"] or None, type=raw["type"] or None,
                      outcome=raw["outcome"] or None, since=_time_arg("since"), until=_time_arg("until"))
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
    rows = store.query(flt, limit=current_app.config["AUDIT_PAGE_SIZE"])
    for row in rows:
        row["summary"] = summarise(row["details"])
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
            types=sorted(EVENT_TYPES),
            outcomes=store.distinct("outcome"),
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
