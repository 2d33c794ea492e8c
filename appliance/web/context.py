"""What a request acts on: the desk the app was built on.

Its own module, so the blueprints reach the desk without importing the app factory that imports them.
"""

from __future__ import annotations

from flask import current_app

from appliance.runtime import Desk


def current_desk() -> Desk:
    """The desk the current app was built on (``appliance.runtime``): what the blueprints act on."""
    desk: Desk = current_app.extensions["desk"]
    return desk
