"""The desk's template filters for moments: ``when`` (local time with zone, in a ``<time>`` element that
carries UTC for machines) and ``utc`` (exports). The zone comes from the desk's configuration, once."""

from __future__ import annotations

from datetime import tzinfo

from flask import Flask
from markupsafe import Markup, escape

from core.display_time import local_time, long_date, utc_iso


def init_app(app: Flask, where: tzinfo) -> None:
    def when(seconds: float | None, utc: bool = False) -> Markup:
        """``utc``: also say the moment in UTC, as an export (the printable summary) must."""
        if seconds is None:
            return Markup(escape(local_time(None, where)))
        shown = Markup('<time datetime="{}">{}</time>').format(utc_iso(seconds), local_time(seconds, where))
        return shown + Markup(" (UTC {})").format(utc_iso(seconds)) if utc else shown

    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["local_time"] = lambda seconds: local_time(seconds, where)
    app.jinja_env.filters["utc"] = utc_iso
    app.jinja_env.filters["long_date"] = long_date  # a calendar day: '3 December 2026'
