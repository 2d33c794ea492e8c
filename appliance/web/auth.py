"""Sign-in, sign-out and the ``login_required`` guard for every other page."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, g, redirect, render_template, request, session, url_for

from appliance.services.accounts import AccountService, LoginRefusedError, User
from appliance.web.context import current_desk
from core.redirects import safe_next

bp = Blueprint("auth", __name__)


def accounts() -> AccountService:
    return current_desk().accounts


def audit(type: str, actor: str, outcome: str, **details: Any) -> None:
    current_desk().audit.record(type, actor, outcome, **details)


def load_user() -> None:
    """Before each request: the signed-in user, if the server-side session names one that still exists."""
    username = session.get("username")
    g.user = accounts().user(username) if username else None
    g.session_expired = bool(getattr(session, "expired", False))


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.get("user") is None:
            ended = {"ended": "1"} if g.get("session_expired") else {}
            target = url_for("auth.login", next=request.full_path.rstrip("?"), **ended)
            if request.headers.get("HX-Request"):
                response = Response("Your session has ended. Sign in again.", status=401)
                response.headers["HX-Redirect"] = target
                return response
            return redirect(target)
        return view(*args, **kwargs)

    return wrapped


def current_user() -> User:
    user = g.get("user")
    assert user is not None, "login_required must guard this view"
    return user


def _safe_next(value: str | None) -> str:
    return safe_next(value) or url_for("desk.home")


@bp.route("/login", methods=["GET", "POST"])
def login():  # type: ignore[no-untyped-def]
    error = None
    notice = None
    if g.get("session_expired") or request.args.get("ended"):
        notice = "Your session ended (unused for too long, or signed out). Sign in again."
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        try:
            user = accounts().authenticate(username, request.form.get("password", ""), request.remote_addr)
        except LoginRefusedError as e:
            # A name that matches no account is not recorded as typed: it may be a password typed in the wrong box.
            audit("login", e.actor, "refused", reason=e.reason, address=request.remote_addr or "")
            return render_template("login.html", error=str(e), username=username, notice=None), 401
        session.clear()
        session["username"] = user.username
        session.regenerate()  # type: ignore[attr-defined]
        audit("login", user.username, "ok", role=user.role.value)
        return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", error=error, username="", notice=notice)


@bp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    user = g.get("user")
    if user is not None:
        audit("logout", user.username, "ok")
    session.clear()
    session.end()  # type: ignore[attr-defined]
    return redirect(url_for("auth.login"))
