"""What library and configuration updates write to the desk's audit log, and a lasting refusal written once.

Updates sit below services, so the audit log is used only by its shape
(``AuditLike``); both updaters record as the same actor, since no person
started an update. A refusal that lasts (central keeps offering the same bad
target) is recorded when it starts, not on every poll.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

logger = logging.getLogger(__name__)

ACTOR = "system"


class AuditLike(Protocol):
    """``appliance.services.audit.AuditLog``."""

    def record(self, type: str, actor: str, outcome: str, **details: Any) -> object: ...


class RefusalRecord:
    """Writes ``event_type`` refusals to the audit log, each (reason, target) once until ``clear``."""

    def __init__(self, audit: AuditLike, event_type: str, what: str) -> None:
        self._audit = audit
        self._event_type = event_type
        self._what = what  # in the log line: "library update", "configuration"
        self._last: tuple[str, str | None] | None = None

    def record(self, reason: str | None, target: str | None, message: str, **details: Any) -> None:
        key = (reason or "", target)
        if key == self._last:
            return
        self._last = key
        logger.warning("%s refused (%s): %s", self._what, reason, message)
        self._audit.record(self._event_type, ACTOR, "refused", reason=reason, message=message[:1000], **details,
                           target=target)

    def clear(self) -> None:
        """An update went through: the next refusal, even the same one again, is recorded."""
        self._last = None
