"""``/healthz``: a JSON answer for monitoring, with counts an operator can act on."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from central.web.stores import audit_store, ingest_status

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[dict[str, Any], int]:
    store = audit_store()
    ingest = ingest_status()
    body: dict[str, Any] = {
        "status": "ok",
        "events": store.count(),
        "rejections": store.rejection_count(),
        "ingest": None,
    }
    if ingest is not None:
        body["ingest"] = {"connected": ingest.connected, "received": ingest.received,
                          "rejected": ingest.rejected}
        if not ingest.connected:
            # Still answering, but not receiving audit events: monitoring should alert.
            body["status"] = "degraded"
            return body, 503
    return body, 200
