"""Sign-in and sign-out for central's web interface, and the role guard every staff page sits behind.

The session cookie (signed with ``SECRET_KEY``, HttpOnly, SameSite=Strict)
holds only the username, when they signed in and the account's session
generation then; each request reloads the account, so a changed role applies
at once, a disabled account or a new password (a new generation) ends every
session made before, even a copied cookie, and a session ends after
``MAX_SESSION_HOURS`` however active. ``init_app`` guards whole blueprints:
not signed in goes to ``/login?next=...`` (a same-site path only, so a link
cannot send staff elsewhere after signing in); signed in without the role is a
403 in the usual error shape. ``/healthz``, static files and the ``/tuf``
repository the desks fetch from stay open: they carry no personal data and
desks prove nothing by cookie (TUF signatures protect those files). Each
sign-in, refusal and sign-out is logged to ``central.web.auth``.
"""

from __future__ import annotations

import logging
import time

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

logger = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

MAX_SESSION_HOURS = 12
ROLE_NAMES = {"auditor": "auditor", "peer_reviewer": "peer reviewer", "fleet_admin": "fleet administrator"}
# Where each role lands after signing in without a ``next``, in this order of preference.
_HOME = (("auditor", "audit.events"), ("peer_reviewer", "peer_review.index"), ("fleet_admin", "fleet.index"))


def accounts() -> AccountService:
    service: AccountService = current_app.extensions["central.accounts"]
    return service


def current_user() -> Account | None:
    user: Account | None = g.get("user")
    return user


def _load_user() -> None:
    """The signed-in account for this request, or None (no, expired or withdrawn session).

    A session without a generation (signed in before central kept one) is withdrawn too: one more
    sign-in, rather than a cookie nothing could end.
    """
    g.user = None
    username, since, generation = session.get("user"), session.get("signed_in_at"), session.get("generation")
    if not isinstance(username, str) or not isinstance(since, (int, float)):
        return
    if time.time() - since > MAX_SESSION_HOURS * 3600 or type(generation) is not int:
        session.clear()
        return
    g.user = accounts().for_session(username, generation)
    if g.user is None:
        session.clear()


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
    if role is None or not user.may(role):
        needed = ROLE_NAMES.get(role or "", "right")
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
    if request.method == "GET":
        user = current_user()
        target = (next_url or home_for(user)) if user is not None else None
        if target:
            return redirect(target)
        return render_template("login.html", error=None, username="", next_url=next_url)
    username = request.form.get("username", "").strip()[:64]
    password = request.form.get("password", "")
    try:
        user = accounts().authenticate(username, password)
    except LoginRefusedError as e:
        logger.warning("central sign-in refused for %r from %s: %s", username or "(blank)", request.remote_addr, e)
        return render_template("login.html", error=str(e), username=username, next_url=next_url), 401
    session.clear()  # a fresh session (and CSRF token) for the new sign-in
    session["user"] = user.username
    session["signed_in_at"] = time.time()
    session["generation"] = user.session_generation
    logger.info("central sign-in: %s (%s) from %s", user.username, ", ".join(sorted(user.roles)),
                request.remote_addr)
    return redirect(next_url or home_for(user) or url_for("auth.login"))


@bp.post("/logout")
def logout() -> Response:
    user = current_user()
    session.clear()
    if user is not None:
        logger.info("central sign-out: %s", user.username)
    return redirect(url_for("auth.login"))


def init_app(app: Flask, service: AccountService, role_for_blueprint: dict[str, str], *,
             open_blueprints: frozenset[str], open_endpoints: frozenset[str] = frozenset()) -> None:
    """Sign-in for ``app``: each blueprint in ``role_for_blueprint`` needs that role, except
    ``open_endpoints``; ``open_blueprints`` (health, vendor assets, the desks' /tuf) need no sign-in,
    and anything else is refused until it is classified."""
    if not set(role_for_blueprint.values()) <= set(ROLES):
        raise ValueError(f"Unknown role in {role_for_blueprint}")
    app.extensions["central.accounts"] = service
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
