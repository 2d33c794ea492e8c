"""Central's web interface for the RFR team, built flaskr-style.

``create_app`` wires configuration, one blueprint per feature, sign-in and the
role each blueprint needs (``central.web.auth``), a single error shape and the
security headers; nothing here talks to the broker directly (the
ingest is handed in as a read-only ``IngestStatus`` for the health check).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_wtf import CSRFProtect
from htmx_flask import Htmx

from central.accounts.service import AccountService
from central.accounts.session_store import SessionStore
from central.accounts.signin_failures import SignInFailureStore
from central.accounts.store import AccountStore
from central.audit.store import AuditStore
from central.fleet.health_store import HealthStore
from central.fleet.library_register import LibraryRegister
from central.fleet.registry_store import RegistryStore
from central.ingest.status import IngestStatus
from central.peer_review.store import PeerReviewStore
from central.settings import CentralSettings, check_secret_key, load
from core.errors import SettingsError
from webserver import log_ids
from webserver.body_limit import BodyLimit
from webserver.metrics import MetricsEndpoint, MetricsSettings
from websession.manager import SessionManager

FORM_LIMIT_BYTES = 1024 * 1024

def create_app(
    settings: CentralSettings | None = None,
    test_config: dict[str, Any] | None = None,
    *,
    ingest: IngestStatus | None = None,
) -> Flask:
    """The Flask app; ``test_config`` (``SECRET_KEY``, ``DATABASE``...) overrides ``settings``.

    Without ``settings`` and without a ``DATABASE`` in ``test_config``, settings come from
    the ``RFR_CENTRAL__*`` environment, so a misconfigured server fails at start, not on
    the first request. A ``SECRET_KEY`` that is not 32 random bytes is refused here too
    (``SettingsError``), however it was given.
    """
    app = Flask(__name__)
    # Cookies over HTTPS only unless a plain-HTTP test says otherwise; the timeouts of [web] by default.
    app.config.update(SESSION_COOKIE_SECURE=True, SESSION_IDLE_MINUTES=30, SESSION_HOURS=12)
    if settings is None and not (test_config and "DATABASE" in test_config):
        settings = load(None)
    if settings is not None:
        app.config.from_mapping(
            SECRET_KEY=settings.web.secret_key,
            SESSION_COOKIE_SECURE=settings.web.secure_cookie,
            SESSION_IDLE_MINUTES=settings.web.session_idle_minutes,
            SESSION_HOURS=settings.web.session_hours,
            DATABASE=settings.database_url,
            TUF_REPO_DIR=str(settings.publish.repo_dir) if settings.publish.repo_dir else None,
            TUF_CLIENT_CA=settings.web.client_ca_file,
            TUF_CRL_FILE=settings.tuf_crl_file,
            REPORT_LIBRARIES=list(settings.reports.libraries),
            REVIEW_PROBE_DIR=str(settings.review_probe_dir),
            REVIEW_LIBRARIES=settings.review_libraries,
            METRICS_TOKEN_SHA256=settings.metrics.token_sha256 if settings.metrics else None,
        )
    app.config.update(
        SESSION_COOKIE_NAME="rfr_central_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        AUDIT_PAGE_SIZE=100,
        # Central's forms are a few fields each; nothing at central is uploaded through the web.
        MAX_CONTENT_LENGTH=FORM_LIMIT_BYTES,
    )
    if test_config:
        app.config.update(test_config)
    app.wsgi_app = BodyLimit(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"],  # type: ignore[method-assign]
                             "This form is larger than central accepts. Reload the page and try again.")
    try:
        check_secret_key(str(app.config.get("SECRET_KEY") or ""))
    except ValueError as e:
        raise SettingsError(f"Central cannot start: {e}") from e

    app.extensions["central.audit_store"] = AuditStore(app.config["DATABASE"])
    app.extensions["central.registry"] = RegistryStore(app.config["DATABASE"])
    app.extensions["central.health_store"] = HealthStore(app.config["DATABASE"])
    app.extensions["central.library_register"] = LibraryRegister(app.config["DATABASE"])
    app.extensions["central.ingest"] = ingest
    app.extensions["central.peer_reviews"] = PeerReviewStore(app.config["DATABASE"])
    app.extensions["central.signin_failures"] = SignInFailureStore(app.config["DATABASE"])
    Htmx(app)
    # Every form (sign-in, sign-out, peer review, revocation) carries the session's token.
    CSRFProtect(app)

    from central.web import (
        audit,
        auth,
        errors,
        fleet,
        health,
        libraries,
        peer_review,
        reports,
        security,
        updates,
        vendor,
    )

    errors.init_app(app)
    security.init_app(app)
    app.extensions["central.account_store"] = AccountStore(app.config["DATABASE"])
    app.extensions["central.session_store"] = SessionStore(app.config["DATABASE"])
    sessions = SessionManager(app.extensions["central.session_store"], idle_s=app.config["SESSION_IDLE_MINUTES"] * 60,
                              absolute_s=app.config["SESSION_HOURS"] * 3600)
    # Staff pages by role; /healthz, static files and the desks' /tuf repository stay open (see auth).
    auth.init_app(app, AccountService(app.extensions["central.account_store"]), sessions,
                  {audit.bp.name: "auditor", reports.bp.name: "auditor", peer_review.bp.name: "peer_reviewer",
                   fleet.bp.name: "fleet_admin", libraries.bp.name: libraries.READERS,
                   libraries.actions.name: "library_authoriser"},
                  open_blueprints=frozenset({health.bp.name, vendor.bp.name, updates.bp.name}),
                  open_endpoints=frozenset({"audit.index"}))
    app.register_blueprint(audit.bp)
    app.register_blueprint(health.bp)
    peer_review.init_app(app)  # the probe vault and central's library copies, then the blueprint
    app.register_blueprint(reports.bp)
    app.register_blueprint(vendor.bp)
    fleet.init_app(app, settings.fleet if settings else None, settings.mqtt if settings else None)
    libraries.init_app(app, settings.publish if settings else None)
    # /tuf: the signed library repository (TUF_REPO_DIR or RFR_CENTRAL_TUF_REPO), for enrolled desks only
    updates.init_app(app)
    auth.check_classified(app)
    log_ids.init_app(app)
    if app.config.get("METRICS_TOKEN_SHA256"):  # /metrics for Prometheus, bearer token only (docs/operations.md)
        from central.web.metrics import central_registry

        app.wsgi_app = MetricsEndpoint(app.wsgi_app, central_registry(app, ingest),  # type: ignore[method-assign]
                                       MetricsSettings(token_sha256=app.config["METRICS_TOKEN_SHA256"]))
    return app


def close_stores(app: Flask) -> None:
    """Close the database connections ``create_app`` opened (the audit, registry, health, peer-review,
    account and session stores)."""
    for name in ("central.audit_store", "central.registry", "central.health_store", "central.peer_reviews",
                 "central.account_store", "central.session_store", "central.signin_failures",
                 "central.metrics_reader", "central.library_register"):
        if name in app.extensions:
            app.extensions[name].close()
    if "central.libraries" in app.extensions:
        app.extensions["central.libraries"].store.close()
