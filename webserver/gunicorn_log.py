"""gunicorn's own log lines (start, workers, each request) as JSON lines, like the rest of the process.

gunicorn keeps two loggers of its own, ``gunicorn.error`` and ``gunicorn.access``, with plain-text formats
that start with a timestamp; journald adds its own, so those lines would carry two and would not parse as
JSON. ``json_logger`` gives gunicorn a logger class whose handlers write through
``core.log_format.JsonLogFormatter``; the access line says what was asked and answered without a time of
its own, and without the query string (a search form's filter values stay out of the log).
"""

from __future__ import annotations

import logging

from gunicorn.glogging import Logger

from core.log_format import JsonLogFormatter

#: Client, method, path (no query string), status, bytes sent, seconds taken.
ACCESS_FORMAT = '%(h)s %(m)s %(U)s %(s)s %(B)s %(L)s'


class _RequestEvent(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.event = "http_request"
        return True


class JsonGunicornLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger with JSON handlers; ``component`` is set per server by ``json_logger``."""

    component = "web"

    def setup(self, cfg: object) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonLogFormatter(self.component))
        if not any(isinstance(f, _RequestEvent) for f in self.access_log.filters):
            self.access_log.addFilter(_RequestEvent())


def json_logger(component: str) -> type[JsonGunicornLogger]:
    """The logger class for one server (``appliance``, ``central``)."""
    return type(f"JsonGunicornLogger_{component}", (JsonGunicornLogger,), {"component": component})
