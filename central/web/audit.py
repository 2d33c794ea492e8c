"""The audit page: what every appliance has reported, newest first.

The table body polls itself every few seconds with htmx; the same route returns
either the whole page or only the rows (for an ``HX-Request``), so the page also
works, minus live updates, without JavaScript.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, make_response, redirect, render_template, url_for
from htmx_flask import request
from werkzeug.wrappers import Response

from central.web.stores import audit_store
from core.errors import WireFormatError
from core.topics import validate_device_id

bp = Blueprint("audit", __name__)

_SUMMARY_CHARS = 120


def summarise(details: dict[str, Any]) -> str:
    """One short line from an event's details, so a row stays one row."""
    text = ", ".join(f"{k}={v}" for k, v in sorted(details.items()))
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 1] + "…"


def _device_filter() -> str | None:
    device = request.args.get("device", "").strip() or None
    if device is not None:
        try:
            validate_device_id(device)
        except WireFormatError as e:
            abort(400, str(e))
    return device


@bp.get("/")
def index() -> Response:
    return redirect(url_for("audit.events"))


@bp.get("/audit")
def events() -> Response:
    device = _device_filter()
    store = audit_store()
    rows = store.recent(limit=current_app.config["AUDIT_PAGE_SIZE"], device_id=device)
    for row in rows:
        row["summary"] = summarise(row["details"])
    if request.htmx:
        body = render_template("audit/_rows.html", rows=rows)
    else:
        body = render_template(
            "audit/index.html",
            rows=rows,
            device=device,
            devices=store.devices(),
            total=store.count(),
            rejected=store.rejection_count(),
        )
    response = make_response(body)
    # The same URL serves two shapes: caches must not hand the rows to a full-page load.
    response.vary.add("HX-Request")
    return response
