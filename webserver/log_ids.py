"""The case a request is about, on every log line the request writes (``core.log_format``'s ``case_id``).

A page for one case has ``case_id`` in its route (``/cases/<case_id>/...``): it is bound before the view runs
and unbound when the request ends, so a line from deep in a service still says which case it was about
without every call passing it on. The id is a random token, not the custody reference.
"""

from __future__ import annotations

from flask import Flask, g, request

from core.log_format import bind_ids, unbind_ids

_TOKENS = "_rfr_log_ids"


def init_app(app: Flask) -> None:
    """Bind and unbind the route's ``case_id`` around each request."""

    @app.before_request
    def bind_case() -> None:
        case_id = (request.view_args or {}).get("case_id")
        if case_id is not None:
            setattr(g, _TOKENS, bind_ids(case_id=str(case_id)))

    @app.teardown_request
    def unbind_case(_error: BaseException | None) -> None:
        tokens = g.pop(_TOKENS, None)
        if tokens:
            unbind_ids(tokens)
