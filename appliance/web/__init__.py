"""Flask app factory for the desk UI (flaskr pattern: factory plus one blueprint per feature)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from htmx_flask import Htmx
from werkzeug.exceptions import HTTPException

from appliance.comms.mqtt import AuditPublisher
from appliance.services.audit import AuditLog
from appliance.services.library import LibraryHolder
from appliance.services.search import SearchService
from appliance.settings import ApplianceSettings
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox
from library.snapshot import Snapshot, read_key_file
from models.pipeline import FacePipeline

logger = logging.getLogger(__name__)

csrf = CSRFProtect()
htmx = Htmx()

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def create_app(settings: ApplianceSettings, *, pipeline: FacePipeline | None = None,
               start_sync: bool = True, test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.web.secret_key,
        MAX_CONTENT_LENGTH=settings.web.max_upload_mb * 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        WTF_CSRF_TIME_LIMIT=None,
    )
    if test_config:
        app.config.update(test_config)
    csrf.init_app(app)
    htmx.init_app(app)

    pipeline = pipeline or FacePipeline.load()
    snapshot = Snapshot.open(settings.library.path, read_key_file(settings.library.key_file),
                             expected_embedder=pipeline.embedder_id)
    db = DeviceDatabase(settings.data_dir)
    outbox = Outbox(db)
    audit = AuditLog(settings.device_id, outbox)
    publisher = AuditPublisher(settings.mqtt, settings.device_id, outbox)
    library = LibraryHolder(snapshot)
    app.extensions["rfr"] = {
        "settings": settings,
        "library": library,
        "outbox": outbox,
        "audit": audit,
        "publisher": publisher,
        "search": SearchService(pipeline, library, audit, settings.search.top_k),
    }
    audit.record("library_loaded", "system", "ok", library_version=snapshot.version, records=snapshot.count,
                 embedder=snapshot.embedder_id)
    if start_sync:
        publisher.start()

    from appliance.web import assets, search

    app.register_blueprint(search.bp)
    app.register_blueprint(assets.bp)

    @app.after_request
    def security_headers(response):  # type: ignore[no-untyped-def]
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def render_error(status: int, message: str):  # type: ignore[no-untyped-def]
        template = "_message.html" if request.headers.get("HX-Request") else "error.html"
        return render_template(template, level="error", message=message, status=status), status

    @app.errorhandler(CSRFError)
    def csrf_error(e: CSRFError):  # type: ignore[no-untyped-def]
        return render_error(400, "This form has expired. Reload the page and try again.")

    @app.errorhandler(413)
    def too_large(e: HTTPException):  # type: ignore[no-untyped-def]
        return render_error(413, f"This file is larger than {settings.web.max_upload_mb} MB. "
                                 "Use a smaller photo, for example a JPEG from the desk camera.")

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):  # type: ignore[no-untyped-def]
        return render_error(e.code or 500, e.description or "That request could not be handled.")

    @app.errorhandler(Exception)
    def unexpected(e: Exception):  # type: ignore[no-untyped-def]
        logger.exception("unexpected error")
        return render_error(500, "Something went wrong on this device. The search was not run. "
                                 "Try again; if it happens again, call the RFR helpdesk.")

    return app
