"""A message the ingest refuses is logged with the desk it came from as the line's ``device_id``."""

from __future__ import annotations

import io
import json
import logging

from central.ingest.handler import Incoming, MessageHandler
from core.log_format import JsonLogFormatter
from core.topics import audit_topic


def test_a_rejected_message_names_its_desk_in_the_json_line(store, registry):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLogFormatter("central"))
    log = logging.getLogger("central.ingest.handler")
    log.addHandler(handler)
    try:
        MessageHandler(store, registry).handle([Incoming(audit_topic("desk-log-07"), b"not an event"),
                                                Incoming("rfr/v1/elsewhere", b"x")])
    finally:
        log.removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["event"], line["device_id"]) for line in lines] == [("message_rejected", "desk-log-07"),
                                                                     ("message_rejected", None)]
    assert store.rejection_count() == 2
