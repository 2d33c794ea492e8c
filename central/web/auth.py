"""Sign-in and sign-out for central's web interface, and the role guard every staff page sits behind.

Sessions are rows in central's database (``central.accounts.session_store``,
through ``websession``): the cookie (Secure, HttpOnly, SameSite=Strict) holds
only a random token, so nobody can mint one, whatever they know of the secret
key, and signing out deletes the row, so a copied cookie dies with it. The row
holds the username and the account's session generation at sign-in; each
request reloads the account, so a changed role applies at once, and a disabled
account or a new password (a new generation, and its rows deleted) ends every
session made before. A session ends after ``[web] session_idle_minutes`` unused
and ``session_hours`` after sign-in however active. Wrong passwords slow
further attempts (``core.throttle``) rather than lock anyone out, and every
refusal gets the same reply. ``init_app`` guards whole blueprints:
not signed in goes to ``/login?next=...`` (a same-site path only, so a link
cannot send staff elsewhere after signing in); signed in without the role is a
403 in the usual error shape. ``/healthz``, static files and the ``/tuf``
repository the desks fetch from stay open: they carry no personal data and
desks prove nothing by cookie (TUF signatures protect those files). Each
sign-in, refusal (throttled ones included) and sign-out is logged to
``central.web.auth``; a typed name that matches no account is logged as
``(unknown account)``, never as typed (it may be a password in the wrong box).
"""

from __future__ import annotations

import logging

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from central.accounts.service import ROLES, Account, AccountService, LoginRefusedError
from core.redirects import safe_next
from webserver.metrics import reason_code
from websession.interface import ServerSessionInterface
from websession.manager import SessionManager

logger = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

ROLE_NAMES = {"auditor": "auditor", "peer_reviewer": "peer reviewer", "fleet_admin": "fleet administrator",
              "library_authoriser": "library authoriser"}
# Where each role lands after signing in without a ``next``, in this order of preference.
_HOME = (("auditor", "audit.events"), ("peer_reviewer", "peer_review.index"), ("fleet_admin", "fleet.index"),
         ("library_authoriser", "libraries.index"))
#: A blueprint needs one role, or any one of several (``("library_authoriser", "auditor")``: read-only pages).
Roles = str | tuple[str, ...]


def _roles(needed: Roles) -> tuple[str, ...]:
    return (needed,) if isinstance(needed, str) else needed


def accounts() -> AccountService:
    service: AccountService = current_app.extensions["central.accounts"]
    return service


def sessions() -> SessionManager:
    manager: SessionManager = current_app.extensions["central.sessions"]
    return manager


def current_user() -> Account | None:
    user: Account | None = g.get("user")
    return user


def _load_user() -> None:
    """The signed-in account for this request, or None (no, timed-out or withdrawn session).

    A session whose account has since been disabled or given a new password (its generation moved
    on) is deleted, not just ignored.
    """
    g.user = None
    username, generation = session.get("username"), session.get("generation")
    if not isinstance(username, str):
        return
    if type(generation) is int:
        g.user = accounts().for_session(username, generation)
    if g.user is None:
        session.clear()
        session.end()  # type: ignore[attr-defined]


def _guard() -> Response | None:
    """Sign-in first, then the role ``init_app`` set for the request's blueprint.

    Closed by default: only the blueprints and endpoints named open skip it, and
    ``check_classified`` refuses to start an app with a blueprint nobody classified.
    """
    open_blueprints = current_app.extensions["central.open_blueprints"]
    if (request.blueprint in open_blueprints or request.endpoint in current_app.extensions["central.open_endpoints"]
            or request.endpoint == "static" or request.endpoint is None):
        return None
    user = current_user()
    if user is None:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    role = current_app.extensions["central.role_for_blueprint"].get(request.blueprint)
    if role is None or not any(user.may(r) for r in _roles(role)):
        needed = " or ".join(ROLE_NAMES.get(r, r) for r in _roles(role)) if role else "right"
        abort(403, f"Your account ({user.username}) does not have the {needed} role needed for "
                   "this page. Ask the RFR team's administrator if you need it.")
    return None


def signed_in_user() -> Account:
    """The account behind a guarded view; a 403, never a crash, if a view is ever left unguarded."""
    user = current_user()
    if user is None:
        abort(403, "Sign in to use this page.")
    return user


def home_for(user: Account) -> str | None:
    """The first page the account's roles open (None for an account with no role left)."""
    for role, endpoint in _HOME:
        if user.may(role):
            return url_for(endpoint)
    return None


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int] | str:
    next_url = safe_next(request.args.get("next"))
    if request.method != "POST":  # GET and HEAD show the form; only a POST signs in
        user = current_user()
        target = (next_url or home_for(user)) if user is not None else None
        if target:
            return redirect(target)
        return render_template("login.html", error=None, username="", next_url=next_url)
    username = request.form.get("username", "").strip()[:64]
    password = request.form.get("password", "")
    try:
        user = accounts().authenticate(username, password, request.remote_addr)
    except LoginRefusedError as e:
        # e.actor: the account, or "(unknown account)" for a name that matches none; never the name as typed.
        logger.warning("central sign-in refused for %s from %s: %s", e.actor, request.remote_addr, e.reason,
                       extra={"event": "signin_refused"})
        current_app.extensions["central.signin_failures"].add(reason_code(e.reason))  # for /metrics
        return render_template("login.html", error=str(e), username=username, next_url=next_url), 401
    session.clear()  # a fresh session (and CSRF token) for the new sign-in
    session["username"] = user.username
    session["generation"] = user.session_generation
    session.regenerate()  # type: ignore[attr-defined]
    sessions().purge()  # rows past their timeouts go at each sign-in, so the table holds live sessions only
    logger.info("central sign-in: %s (%s) from %s", user.username, ", ".join(sorted(user.roles)),
                request.remote_addr)
    return redirect(next_url or home_for(user) or url_for("auth.login"))


@bp.post("/logout")
def logout() -> Response:
    user = current_user()
    session.clear()
    session.end()  # type: ignore[attr-defined]
    if user is not None:
        logger.info("central sign-out: %s", user.username)
    return redirect(url_for("auth.login"))


def init_app(app: Flask, service: AccountService, sessions: SessionManager, role_for_blueprint: dict[str, Roles], *,
             open_blueprints: frozenset[str], open_endpoints: frozenset[str] = frozenset()) -> None:
    """Sign-in for ``app``: each blueprint in ``role_for_blueprint`` needs that role, except
    ``open_endpoints``; ``open_blueprints`` (health, vendor assets, the desks' /tuf) need no sign-in,
    and anything else is refused until it is classified. Sessions are ``sessions``' rows, the cookie
    named by ``SESSION_COOKIE_NAME`` carrying only a token (Secure unless ``SESSION_COOKIE_SECURE`` is off)."""
    if not {r for roles in role_for_blueprint.values() for r in _roles(roles)} <= set(ROLES):
        raise ValueError(f"Unknown role in {role_for_blueprint}")
    app.extensions["central.accounts"] = service
    app.extensions["central.sessions"] = sessions
    app.session_interface = ServerSessionInterface(sessions, secure=app.config["SESSION_COOKIE_SECURE"],
                                                   cookie=app.config["SESSION_COOKIE_NAME"],
                                                   signin_cookie=app.config["SESSION_COOKIE_NAME"] + "_signin")
    app.extensions["central.role_for_blueprint"] = dict(role_for_blueprint)
    app.extensions["central.open_blueprints"] = open_blueprints | {bp.name}
    app.extensions["central.open_endpoints"] = open_endpoints
    app.before_request(_load_user)
    app.before_request(_guard)
    app.context_processor(lambda: {"current_user": current_user(), "role_names": ROLE_NAMES})
    app.register_blueprint(bp)


def check_classified(app: Flask) -> None:
    """Refuse to start when a blueprint is neither open nor given a role: a new page must choose."""
    known = set(app.extensions["central.role_for_blueprint"]) | app.extensions["central.open_blueprints"]
    unclassified = sorted(set(app.blueprints) - known)
    if unclassified:
        raise RuntimeError(f"Central's pages {unclassified} have no sign-in rule; add them to central.web.create_app.")
