"""Record every action as an audit event queued for central.

Events carry no biometric data; ``core.events`` refuses detail keys that
would. The device's sequence number makes gaps visible to central.
"""

from __future__ import annotations

import logging
from typing import Any

from appliance.storage.outbox import Outbox
from core.events import AuditEvent

logger = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, device_id: str, outbox: Outbox) -> None:
        self.device_id = device_id
        self._outbox = outbox

    def record(self, type: str, actor: str, outcome: str, **details: Any) -> AuditEvent:
        event = self._outbox.append(
            lambda seq: AuditEvent(device_id=self.device_id, seq=seq, type=type, actor=actor,
                                   outcome=outcome, details=details)
        )
        logger.info("audit %s seq=%s type=%s outcome=%s", event.event_id, event.seq, type, outcome)
        return event
