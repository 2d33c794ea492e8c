"""One error shape for the whole app: a sentence for people, never a stack trace.

JSON clients (``/healthz``, anything asking for ``application/json``) get
``{"error": {"status", "title", "message"}}``; browsers get the same fields on an
HTML page in the normal layout. Unexpected exceptions are logged in full on the
server and shown to the user only as a 500 with a generic message.
"""

from __future__ import annotations

import logging

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError
from werkzeug.wrappers import Response

logger = logging.getLogger(__name__)

_DEFAULT_MESSAGES = {
    404: "There is no page at this address. Use the navigation to find what you need.",
    405: "This page cannot be used that way.",
    500: "Something went wrong on the server. It has been logged; please try again or tell the RFR team.",
}


def _wants_json() -> bool:
    if request.path == "/healthz" or request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _message(error: HTTPException) -> str:
    code = error.code or 500
    # Werkzeug's stock descriptions are written for developers; abort(404, "...") texts are ours.
    stock = type(error).description
    if error.description and error.description != stock:
        return error.description
    return _DEFAULT_MESSAGES.get(code, error.description or "The request could not be handled.")


def render_error(error: HTTPException) -> tuple[Response | str | dict[str, object], int]:
    code = error.code or 500
    payload = {"status": code, "title": error.name, "message": _message(error)}
    if _wants_json():
        return {"error": payload}, code
    return render_template("error.html", error=payload), code


def _unexpected(error: Exception) -> tuple[Response | str | dict[str, object], int]:
    if isinstance(error, HTTPException):
        return render_error(error)
    logger.exception("unhandled error on %s %s", request.method, request.path)
    return render_error(InternalServerError())


def _csrf_refused(error: CSRFError) -> tuple[Response | str | dict[str, object], int]:
    # Flask-WTF's reasons ("The CSRF session token is missing.") mean nothing to custody staff.
    logger.info("form refused on %s %s: %s", request.method, request.path, error.description)
    return render_error(BadRequest("The form had expired or did not come from this site. Go back, reload the "
                                   "page and try again."))


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, _csrf_refused)
    app.register_error_handler(HTTPException, render_error)
    app.register_error_handler(Exception, _unexpected)
