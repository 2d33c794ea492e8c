"""Record every action as an audit event in the device's hash-linked log, queued for central.

Events carry no biometric data; ``core.events`` refuses detail keys that
would. The outbox gives each event its sequence number and its place in the
chain in the same transaction that stores it, so an action is never reported
done without being recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from appliance.storage.outbox import Outbox
from core.audit.verify import VerifyReport
from core.events import AuditEvent

logger = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, device_id: str, outbox: Outbox) -> None:
        self.device_id = device_id
        self._outbox = outbox
        self._observers: list[Callable[[AuditEvent], None]] = []
        self._clock_notes: Callable[[], list[dict[str, Any]]] | None = None
        # A clock note is taken and stored under one lock with the event that follows: otherwise the health sender
        # could take the note of a jump and store it after the event the jump falsified, which the chain would then
        # read as trustworthy. It is the device database's own (re-entrant) lock, which every append takes anyway:
        # a lock of its own, taken before the database's, deadlocked with code that records while holding that.
        self._noting = outbox.lock

    def watch_clock(self, notes: Callable[[], list[dict[str, Any]]]) -> None:
        """Before each event, record what ``notes`` says about the clock (``ClockGuard.check``: a jump, a clock
        behind the log or central's, trust restored) as a ``device_fault`` event, so every time that follows a
        jump in the chain is read knowing the clock was doubtful there."""
        self._clock_notes = notes

    def check_clock(self) -> None:
        """Record any new clock note now (the health sender calls this, so a jump is told even on a quiet desk)."""
        with self._noting:
            stored = self._store_clock_notes()
        self._notify(stored)

    def _store_clock_notes(self) -> list[AuditEvent]:
        stored = []
        for note in self._clock_notes() if self._clock_notes is not None else []:
            details = dict(note)
            stored.append(self._store("device_fault", "system", str(details.pop("outcome")), details))
        return stored

    def observe(self, callback: Callable[[AuditEvent], None]) -> None:
        """Call ``callback`` with each event once it is stored (the desk's metrics count them by type and
        outcome); an observer that fails is logged and never undoes or blocks the recording."""
        self._observers.append(callback)

    def record(self, type: str, actor: str, outcome: str, **details: Any) -> AuditEvent:
        with self._noting:
            stored = self._store_clock_notes()
            event = self._store(type, actor, outcome, details)
        self._notify([*stored, event])
        return event

    def _store(self, type: str, actor: str, outcome: str, details: dict[str, Any]) -> AuditEvent:
        event = self._outbox.append(
            lambda seq: AuditEvent(device_id=self.device_id, seq=seq, type=type, actor=actor,
                                   outcome=outcome, details=details)
        )
        logger.info("audit %s seq=%s type=%s outcome=%s", event.event_id, event.seq, type, outcome,
                    extra={"event": "audit_recorded", "message_id": event.event_id,
                           "case_id": details.get("case_id")})
        return event

    def _notify(self, events: list[AuditEvent]) -> None:
        for event in events:
            for observe in self._observers:
                try:
                    observe(event)
                except Exception:
                    logger.exception("an audit observer failed for event seq=%s", event.seq)

    def checkpoint(self) -> None:
        """Sign the chain's head now (for example at shutdown), so no event is left unsigned."""
        self._outbox.sign_tail()

    def verify(self) -> VerifyReport:
        """Check the device's own log; findings name the row that was altered, removed or inserted."""
        return self._outbox.verify()
