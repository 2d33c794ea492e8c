"""What every staff page at central does before its own work: fetch the app's shared object, then the
record the address names, refusing with a 404 in plain words when there is none.

``/libraries``, ``/fleet`` and ``/peer-review`` each used to open with their own copy of both steps. The
role a blueprint needs is checked before any of this, once for every page, by ``central.web.auth``
(the blueprint's role is given to ``auth.init_app`` in ``create_app``); what one person may do to one
record (nobody reviews a request they made, nobody authorises a library they requested) stays with
the page or the service that owns the rule.
"""

from __future__ import annotations

from typing import TypeVar

from flask import abort, current_app

T = TypeVar("T")


def extension(name: str, kind: type[T]) -> T:
    """The object ``create_app`` keeps under ``name`` (a store, a service, a configuration), typed as ``kind``.

    A missing one is a wiring fault, not a user's mistake: it raises ``KeyError`` (a 500), never a 404.
    """
    value: T = current_app.extensions[name]
    return value


def optional_extension(name: str, kind: type[T]) -> T | None:
    """As :func:`extension`, for an object central may run without (None when it is not configured)."""
    value: T | None = current_app.extensions.get(name)
    return value


def found(record: T | None, missing: str) -> T:
    """The record a page's address names; ``missing`` (what staff should read) as a 404 if there is none."""
    if record is None:
        abort(404, missing)
    return record
