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

from appliance.comms.mqtt import AuditPublisher
from appliance.services.accounts import AccountService, SessionManager
from appliance.services.audit import AuditLog
from appliance.services.cases import CaseError, CaseService
from appliance.services.health import HealthReporter
from appliance.services.library import LibraryHolder
from appliance.services.peer_review import CentralPeerReviewChannel, LocalPeerReviewChannel, PeerReviewChannel
from appliance.services.policy import PolicyRefusal
from appliance.services.retention import RetentionService, ServiceLock
from appliance.services.wipe import WITHDRAWN_MESSAGE, WipeService, is_withdrawn, load_command_key
from appliance.settings import ApplianceSettings
from appliance.storage.accounts import AccountStore, SessionStore
from appliance.storage.cases import CaseStore
from appliance.storage.desk_config import DeskConfigStore
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox
from appliance.storage.peer_review_outbox import PeerReviewOutbox
from appliance.storage.peer_reviews import PeerReviewStore
from appliance.storage.signing_key import KEY_NAME as SIGNING_KEY_NAME
from appliance.storage.signing_key import load_or_create_signing_key
from appliance.updates.config import ConfigUpdater
from appliance.updates.updater import LibraryUpdater
from core.topics import fleet_command_topic, library_announce_topic, peer_review_outcome_topic
from devicekeys.keys import tpm_for_policy
from library.snapshot import read_key_file
from library.store import LibraryStore
from models.pipeline import FacePipeline

logger = logging.getLogger(__name__)

csrf = CSRFProtect()
htmx = Htmx()

class DeskRequest(Request):
    """Uploads stay in memory (bounded by MAX_CONTENT_LENGTH): werkzeug would spool a large probe photo
    to a temporary file, leaving biometric bytes on disk outside the encrypted database."""

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        return BytesIO()


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
    if is_withdrawn(settings.data_dir):
        return _withdrawn_app()
    csrf.init_app(app)
    htmx.init_app(app)

    pipeline = pipeline or FacePipeline.load()
    key = read_key_file(settings.library.key_file)
    # Versions live in the device's library store; the file named in settings is the one shipped at
    # provisioning, installed on first start. Updates from central then move the store forward.
    store = LibraryStore(settings.library.store_dir or settings.data_dir / "library")
    if store.current_version() is None:
        store.install_full(settings.library.path, key, expected_embedder=pipeline.embedder_id)
    snapshot = store.open_current(key, expected_embedder=pipeline.embedder_id)
    # Keys through provisioning.keys: sealed to the TPM when [keys] protection allows one (docs/fleet.md).
    tpm = tpm_for_policy(settings.keys.protection)
    db = DeviceDatabase(settings.data_dir, tpm)
    outbox = Outbox(db, load_or_create_signing_key(settings.data_dir, tpm))
    audit = AuditLog(settings.device_id, outbox)
    library = LibraryHolder(snapshot)
    desk_config = DeskConfigStore(db)  # central's signed configuration, once one is applied
    updater = None
    if settings.updates is not None:
        updater = LibraryUpdater.from_settings(settings.updates, data_dir=settings.data_dir, store=store,
                                               library_key=key, embedder_id=pipeline.embedder_id,
                                               holder=library, audit=audit,
                                               config=ConfigUpdater(desk_config, audit))
    handlers = {library_announce_topic(): updater.on_announcement} if updater else {}
    # Peer review: the offline fallback on the device, or central's team over MQTT ([peer_review] channel).
    reviews, case_store = PeerReviewStore(db), CaseStore(db)
    channel: PeerReviewChannel = LocalPeerReviewChannel(reviews)
    central_reviews: CentralPeerReviewChannel | None = None
    if settings.peer_review.channel == "central":
        channel = central_reviews = CentralPeerReviewChannel(
            settings.device_id, reviews, PeerReviewOutbox(db), case_store, library, pipeline.embedder_manifest,
            resend_after_s=settings.peer_review.resend_after_s)
        handlers[peer_review_outcome_topic(settings.device_id)] = central_reviews.handle_outcome
    senders = [central_reviews.drain] if central_reviews else []
    key_paths = [db.key_path, settings.data_dir / SIGNING_KEY_NAME]
    if settings.mqtt.key_file is not None:
        key_paths.append(settings.mqtt.key_file)
    last_ack: list[AuditPublisher] = []  # the publisher, once made (the reporter is one of its senders)
    health = HealthReporter(settings.device_id, settings.data_dir, outbox, library,
                            interval_s=settings.health.interval_s, key_paths=key_paths,
                            last_ack_at=lambda: last_ack[0].last_ack_at if last_ack else None)
    senders.append(health.send)
    wipe: WipeService | None = None
    if settings.fleet_command_public_key is not None:
        wipe = WipeService(settings.device_id, load_command_key(settings.fleet_command_public_key), audit, outbox,
                           db, secrets=[*key_paths[1:], settings.library.key_file],
                           trees=[store.root], files=[settings.library.path])
        handlers[fleet_command_topic(settings.device_id)] = wipe.handle
        senders.append(wipe.drain)  # last: after it runs the database is closed
    publisher = AuditPublisher(settings.mqtt, settings.device_id, outbox, handlers=handlers, senders=senders)
    last_ack.append(publisher)
    if wipe is not None:
        wipe.on_withdrawn(publisher.request_stop)
        if updater is not None:
            wipe.on_withdrawn(updater.stop)
    app.extensions["rfr"] = {
        "settings": settings,
        "library": library,
        "outbox": outbox,
        "audit": audit,
        "publisher": publisher,
        "library_store": store,
        "updater": updater,
        "desk_config": desk_config,
        "health": health,
        "wipe": wipe,
    }
    # Accounts, sessions and the custody-case workflow (all in the encrypted device database).
    sessions = SessionManager(SessionStore(db), settings.auth)
    case_service = CaseService(case_store, reviews, channel, pipeline, library, audit,
                               lambda: desk_config.top_k(settings.search.top_k))
    if central_reviews is not None:
        central_reviews.bind(case_service.apply_peer_review)
    app.extensions["rfr"].update({
        "db": db,
        "accounts": AccountService(AccountStore(db), SessionStore(db), settings.auth),
        "sessions": sessions,
        "cases": case_service,
    })
    sessions.purge()
    # Central's retention period for viable matches: enforced now, then hourly (appliance.services.retention).
    # The lock tells ``python -m appliance retention purge`` that this process owns the audit chain.
    service_lock = ServiceLock(settings.data_dir)
    if not service_lock.acquire():
        logger.warning("%s is held by another process (a retention purge run by hand?)", service_lock.path)
    retention = RetentionService(case_store, desk_config, audit)
    if wipe is not None:
        wipe.on_withdrawn(retention.stop)
    app.extensions["rfr"].update({"retention": retention, "service_lock": service_lock})
    try:
        retention.purge()
    except Exception:
        logger.exception("retention purge at start failed; it is tried again in the background")
    from appliance.web.sessions import ServerSessionInterface

    app.session_interface = ServerSessionInterface(sessions, secure=settings.auth.secure_cookie)
    audit.record("library_loaded", "system", "ok", library_version=snapshot.version, records=snapshot.count,
                 embedder=snapshot.embedder_id)
    if start_sync:
        publisher.start()
        if updater is not None and settings.updates is not None:
            updater.start_polling(settings.updates.poll_interval_s)
        retention.start()

    from appliance.web import auth, cases, desk

    if wipe is not None:
        withdrawn = wipe.withdrawn

        @app.before_request
        def stop_serving() -> Response | None:
            return withdrawn_page() if withdrawn.is_set() else None

    app.before_request(auth.load_user)
    app.register_blueprint(auth.bp)
    app.register_blueprint(desk.bp)
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

    @app.errorhandler(PolicyRefusal)
    def refused(e: PolicyRefusal):  # type: ignore[no-untyped-def]
        return render_error(403, str(e))

    @app.errorhandler(CaseError)
    def case_error(e: CaseError):  # type: ignore[no-untyped-def]
        return render_error(409, str(e))

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
        return render_error(500, "Something went wrong on this device. The last step was not completed. "
                                 "Try again; if it happens again, call the RFR helpdesk.")

    return app
