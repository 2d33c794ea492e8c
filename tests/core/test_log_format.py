"""The JSON log line: the same keys on every line, one line even for a traceback, personal extras withheld."""

from __future__ import annotations

import io
import json
import logging
import threading

from core.log_format import REQUIRED_KEYS, WITHHELD, JsonLogFormatter, event_code, log_context


def _logger(stream: io.StringIO) -> logging.Logger:
    log = logging.getLogger(f"test.log_format.{id(stream)}")
    log.propagate = False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter("appliance"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    return log


def test_every_line_has_the_keys_and_ids_come_from_the_context_or_the_call():
    out = io.StringIO()
    log = _logger(out)
    log.info("library version %s is now current", 7)
    with log_context(case_id="295F126B", device_id="desk-01"):
        log.warning("search refused: %s", "no_face", extra={"event": "search_refused", "message_id": "m-1"})
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2 and all(set(REQUIRED_KEYS) <= set(line) for line in lines)
    first, second = lines
    assert (first["event"], first["level"], first["component"]) == ("library_version_is_now_current", "info",
                                                                      "appliance")
    assert (first["case_id"], first["device_id"], first["message_id"]) == (None, None, None)
    assert (second["event"], second["case_id"], second["device_id"], second["message_id"]) == (
        "search_refused", "295F126B", "desk-01", "m-1")
    assert second["time"].endswith("+00:00")


def test_a_context_stays_in_its_thread():
    out = io.StringIO()
    log = _logger(out)
    with log_context(case_id="AAAA0000"):
        other = threading.Thread(target=lambda: log.info("from another thread"))
        other.start()
        other.join()
    assert json.loads(out.getvalue())["case_id"] is None


def test_personal_extras_are_withheld_and_a_traceback_stays_on_one_line():
    out = io.StringIO()
    log = _logger(out)
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        log.exception("failed", extra={"custody_ref": "CR-2025-00123", "subject_ref": "DEMO-X", "candidates": 3})
    text = out.getvalue()
    assert text.count("\n") == 1 and "CR-2025-00123" not in text and "DEMO-X" not in text
    line = json.loads(text)
    assert line["custody_ref"] == WITHHELD and line["subject_ref"] == WITHHELD and line["candidates"] == 3
    assert "ValueError: bad\nvalue" in line["exception"]


def test_event_codes_leave_out_the_values():
    assert event_code("refused a %s on %s (%s bytes): handling it failed") == "refused_a_on_bytes_handling_it"
    assert event_code("%(h)s %(m)s") == "log"
