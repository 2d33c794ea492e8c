"""Flask app factory for the desk UI (flaskr pattern: factory plus one blueprint per feature).

Every page but sign-in needs a signed-in user (server-side sessions, see
``web.sessions``); the workflow's rules live in ``appliance.services.policy``
and ``appliance.services.cases``, and this layer only shows their refusals.
"""

from __future__ import annotations

import logging
from io import BytesIO
from typing import IO, Any

from flask import Flask, Request, Response, g, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from htmx_flask import Htmx
from werkzeug.exceptions import HTTPException

from appliance.runtime import open_desk
from appliance.services.access import CaseNotFound
from appliance.services.cases import CaseError
from appliance.services.policy import PolicyRefusal
from appliance.services.wipe import WITHDRAWN_MESSAGE, DeskWithdrawnError, is_withdrawn
from appliance.settings import ApplianceSettings
from appliance.storage.storage_faults import (
    DAMAGED_MESSAGE,
    LIBRARY_DAMAGED_MESSAGE,
    STORAGE_FULL_MESSAGE,
    is_damage,
    is_library_damage,
    is_storage_full,
)
from core.display_time import zone
from models.pipeline import FacePipeline
from webserver import log_ids
from webserver.body_limit import BodyLimit

logger = logging.getLogger(__name__)

csrf = CSRFProtect()
htmx = Htmx()

class DeskRequest(Request):
    """Uploads stay in memory (bounded by MAX_CONTENT_LENGTH): werkzeug would spool a large probe photo
    to a temporary file, leaving biometric bytes on disk outside the encrypted database."""

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        return BytesIO()


def too_large_message(settings: ApplianceSettings) -> str:
    return (f"This file is larger than {settings.web.max_upload_mb} MB. "
            "Use a smaller photo, for example a JPEG from the desk camera.")


def withdrawn_page() -> Response:
    """What a wiped desk shows for every request: nothing else is left to serve."""
    body = (f"<!doctype html><html lang=\"en-GB\"><head><meta charset=\"utf-8\"><title>Withdrawn</title></head>"
            f"<body><h1>{WITHDRAWN_MESSAGE}</h1></body></html>")
    return Response(body, status=410, mimetype="text/html")


def _withdrawn_app() -> Flask:
    """A wiped desk restarted: no keys, no library, one page."""
    app = Flask(__name__)
    app.before_request(withdrawn_page)
    return app


CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def create_app(settings: ApplianceSettings, *, pipeline: FacePipeline | None = None,
               start_sync: bool = True, test_config: dict[str, Any] | None = None) -> Flask:
    """The desk's pages on a desk opened from ``settings`` (``appliance.runtime.open_desk``, which also takes
    ``pipeline``); ``start_sync`` starts the desk's background work. A wiped desk gets one page and no desk."""
    # Static files are served from memory (web.assets): a browser that hangs up mid-download must not
    # leave an open file handle behind in the server.
    from appliance.web import assets

    app = Flask(__name__, static_folder=None)
    app.add_url_rule("/static/<path:filename>", endpoint="static", view_func=assets.static_file)
    app.request_class = DeskRequest
    app.config.update(
        SECRET_KEY=settings.web.secret_key,
        MAX_CONTENT_LENGTH=settings.web.max_upload_mb * 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        WTF_CSRF_TIME_LIMIT=None,
    )
    if test_config:
        app.config.update(test_config)
    app.wsgi_app = BodyLimit(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"], too_large_message(settings))  # type: ignore[method-assign]
    if is_withdrawn(settings.data_dir):
        return _withdrawn_app()
    csrf.init_app(app)
    htmx.init_app(app)

    try:
        desk = open_desk(settings, pipeline=pipeline)
    except DeskWithdrawnError:
        return _withdrawn_app()
    app.extensions["desk"] = desk
    # Every page warns while the face model is evaluation-grade (templates/_model_warning.html).
    licence = desk.pipeline.embedder_manifest.licence
    app.jinja_env.globals["model_warning"] = licence.note if licence.grade == "evaluation" else None
    from websession.interface import ServerSessionInterface

    app.session_interface = ServerSessionInterface(desk.sessions, secure=settings.auth.secure_cookie,
                                                  cookie="rfr_session", signin_cookie="rfr_signin")
    if settings.metrics is not None:  # /metrics for Prometheus, bearer token only (docs/operations.md)
        from appliance.web.metrics import DeskMetrics
        from webserver.metrics import MetricsEndpoint

        app.wsgi_app = MetricsEndpoint(app.wsgi_app, DeskMetrics(desk).registry, settings.metrics)  # type: ignore[method-assign]
    log_ids.init_app(app)
    if start_sync:
        desk.start()

    from appliance.web import auth, cases, times
    from appliance.web import desk as desk_pages

    times.init_app(app, zone(settings.web.time_zone))

    withdrawn = desk.wipe.withdrawn

    @app.before_request
    def stop_serving() -> Response | None:
        return withdrawn_page() if withdrawn.is_set() else None

    app.before_request(auth.load_user)
    app.register_blueprint(auth.bp)
    app.register_blueprint(desk_pages.bp)
    app.register_blueprint(cases.bp)
    app.register_blueprint(assets.bp)
    if app.config.get("TESTING") and app.config.get("RFR_AXE"):
        app.register_blueprint(assets.axe_bp)  # accessibility checks in the browser tests only

    @app.context_processor
    def inject_user() -> dict[str, Any]:
        return {"user": g.get("user")}

    @app.after_request
    def security_headers(response):  # type: ignore[no-untyped-def]
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        # Same-origin only: over HTTPS Flask-WTF also checks that a form's Referer is this desk, which
        # "no-referrer" would make every form fail; other sites still get no referrer at all.
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def render_error(status: int, message: str):  # type: ignore[no-untyped-def]
        template = "_message.html" if request.headers.get("HX-Request") else "error.html"
        return render_template(template, level="error", message=message, status=status), status

    @app.errorhandler(CSRFError)
    def csrf_error(e: CSRFError):  # type: ignore[no-untyped-def]
        return render_error(400, "This form has expired. Reload the page and try again.")

    @app.errorhandler(PolicyRefusal)
    def refused(e: PolicyRefusal):  # type: ignore[no-untyped-def]
        return render_error(403, str(e))

    @app.errorhandler(CaseNotFound)
    def no_such_case(e: CaseNotFound):  # type: ignore[no-untyped-def]
        # The same page whether the case does not exist or is not this user's to open.
        return render_error(404, str(e))

    @app.errorhandler(CaseError)
    def case_error(e: CaseError):  # type: ignore[no-untyped-def]
        return render_error(409, str(e))

    @app.errorhandler(413)
    def too_large(e: HTTPException):  # type: ignore[no-untyped-def]
        return render_error(413, too_large_message(settings))

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):  # type: ignore[no-untyped-def]
        return render_error(e.code or 500, e.description or "That request could not be handled.")

    @app.errorhandler(Exception)
    def unexpected(e: Exception):  # type: ignore[no-untyped-def]
        # The desk's own storage failing is no bug: staff are told what happened (appliance.storage.storage_faults).
        if is_storage_full(e) or is_damage(e):
            desk.db.abandon()  # a failed COMMIT leaves its transaction open: the next write must not join it
        if is_storage_full(e):
            logger.error("refused: the device's storage is full (%s)", e, extra={"event": "storage_full"})
            return render_error(507, STORAGE_FULL_MESSAGE)
        if is_library_damage(e):  # a library page, not the device database: the page check and repair take it
            logger.error("a search met a damaged library page (%s); checking every library now", e,
                         extra={"event": "library_damaged"})
            if desk.library_integrity is not None:
                desk.library_integrity.check_soon()
            return render_error(500, LIBRARY_DAMAGED_MESSAGE)
        if is_damage(e):
            fresh = desk.db.damage.note(f"{request.method} {request.path}: {type(e).__name__}: {e}")
            desk.db.reopen()  # the connection that read the bad page refuses writes from then on
            if fresh:  # into the chain too, when the damaged page is not the log's own
                try:
                    desk.audit.record("device_fault", "system", "database_damaged", problems=fresh)
                except Exception:
                    logger.exception("could not record the damage in the audit log")
            return render_error(500, DAMAGED_MESSAGE)
        logger.exception("unexpected error")
        return render_error(500, "Something went wrong on this device. The last step was not completed. "
                                 "Try again; if it happens again, call the RFR helpdesk.")

    return app
