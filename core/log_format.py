"""One JSON object per log line, for journald and whatever the force ships logs to.

Both products' entry points (``python -m appliance``, ``python -m central``) and gunicorn's own loggers write
through ``JsonLogFormatter`` to stderr/stdout; systemd's journal stores each line as it is (no second
timestamp, no multi-line tracebacks to split: a traceback is one escaped field). Every line has the same
keys, so a query never meets a missing one:

``time`` (UTC, ISO 8601, milliseconds), ``level``, ``component`` (appliance or central), ``logger``,
``event`` (a short code: given by the call as ``extra={"event": ...}``, else made from the message's
template, so it is the same for every line from one call site), ``message``, and the correlation ids
``device_id``, ``case_id``, ``message_id`` (null when the line is about none).

The ids come from the call's ``extra`` or from ``log_context`` (a request for one case, a message from one
desk). Personal data never goes in: an ``extra`` key from ``PERSONAL_KEYS`` (a custody reference, a
subject's reference, a name, a date of birth, image or template bytes, a password) is written as
``"[withheld]"``, and the products log ids and codes, never what staff typed about a detainee.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

CORRELATION_IDS = ("device_id", "case_id", "message_id")
REQUIRED_KEYS = ("time", "level", "component", "logger", "event", "message", *CORRELATION_IDS)
#: ``extra`` keys never written out: what identifies a detainee or a member of the public, or biometric data.
PERSONAL_KEYS = frozenset({"custody_ref", "subject_ref", "subject", "name", "full_name", "first_name",
                           "last_name", "surname", "dob", "date_of_birth", "birth_date", "address", "postcode",
                           "image", "photo", "probe", "template", "embedding", "thumbnail", "password",
                           "reason_text", "checks_detail"})
WITHHELD = "[withheld]"

_ids: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(f"rfr_log_{name}", default=None) for name in CORRELATION_IDS}
_process_ids: dict[str, str] = {}
# The LogRecord's own attributes: anything else on a record came from ``extra``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
_WORDS = re.compile(r"[a-z]+")


def set_process_ids(**ids: str) -> None:
    """Ids that hold for every line of this process (a desk's ``device_id``)."""
    for name, value in ids.items():
        if name not in _ids:
            raise ValueError(f"{name} is not a correlation id ({', '.join(CORRELATION_IDS)})")
        _process_ids[name] = value


@contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Lines logged inside carry these ids (one request, one incoming message), in this thread only."""
    tokens = []
    for name, value in ids.items():
        if name not in _ids:
            raise ValueError(f"{name} is not a correlation id ({', '.join(CORRELATION_IDS)})")
        tokens.append((_ids[name], _ids[name].set(value)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bind_ids(**ids: str | None) -> list[tuple[contextvars.ContextVar[str | None], contextvars.Token[str | None]]]:
    """Like ``log_context`` for frameworks with separate before and after hooks: pass the result to
    ``unbind_ids`` when the request ends."""
    return [(_ids[name], _ids[name].set(value)) for name, value in ids.items() if name in _ids]


def unbind_ids(tokens: list[tuple[contextvars.ContextVar[str | None], contextvars.Token[str | None]]]) -> None:
    for var, token in reversed(tokens):
        try:
            var.reset(token)
        except ValueError:  # set in another context (a thread handed the request on): nothing to undo here
            continue


def event_code(template: object) -> str:
    """A stable short code for a message template: its first words, without the values put into it."""
    words = _WORDS.findall(re.sub(r"%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[sdrfix]", " ", str(template).lower()))
    return "_".join(words[:6]) or "log"


class JsonLogFormatter(logging.Formatter):
    """Formats a record as one JSON line with ``REQUIRED_KEYS`` and the call's ``extra`` values."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "event": str(extra.pop("event", None) or event_code(record.msg)),
            "message": record.getMessage(),
        }
        for name in CORRELATION_IDS:
            value = extra.pop(name, None) or _ids[name].get() or _process_ids.get(name)
            line[name] = None if value is None else str(value)
        for key, value in extra.items():
            if key in line:
                continue  # the fixed keys are the formatter's own
            line[key] = WITHHELD if key.lower() in PERSONAL_KEYS else _plain(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def _plain(value: object) -> object:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def configure_logging(component: str, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Every logger of this process writes JSON lines to ``stream`` (stderr: journald reads it).

    Like ``logging.basicConfig``, it leaves a root logger that already has handlers alone: a program that
    calls an entry point's ``main`` in-process (a test harness capturing logs) keeps its own.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLogFormatter(component))
    root.addHandler(handler)
    root.setLevel(level)
