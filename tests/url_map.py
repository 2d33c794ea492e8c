"""Reading a Flask app's own routes, for the role x route matrix tests of the desk and central."""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask

#: The methods that change state: each must carry a valid CSRF token.
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def served_routes(app: Flask) -> set[tuple[str, str]]:
    """(method, rule) for every route the app serves, leaving out Flask's automatic HEAD and OPTIONS."""
    return {(m, r.rule) for r in app.url_map.iter_rules() for m in r.methods or () if m not in ("HEAD", "OPTIONS")}


def unlisted(app: Flask, table: Iterable[tuple[str, str]]) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(routes the app serves with no entry in ``table``, entries for routes it no longer serves)."""
    served, listed = served_routes(app), set(table)
    return served - listed, listed - served


def state_changing_endpoints(app: Flask) -> set[str]:
    return {r.endpoint for r in app.url_map.iter_rules() if STATE_CHANGING & set(r.methods or ())}
