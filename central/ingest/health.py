"""Heartbeats from the broker into the fleet's health store (``central.fleet.health_store``; no paho here).

Like every other message, a heartbeat is distrusted: the topic names the device, the payload
must parse strictly and name the same device, the device must be registered and not revoked.
What fails is recorded in the rejections with its reason. Central also notes its own view of
the desk's clock (the heartbeat's ``sent_at`` against when it arrived): a desk cannot measure
its offset against central by itself, and a wrong clock makes its audit times wrong.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from central.audit.store import AuditStore
from central.fleet.health_store import HealthStore
from central.fleet.registry_store import REVOKED_FINDING, REVOKED_REASON, RegistryStore
from core.errors import WireFormatError
from core.fleet import Heartbeat
from core.topics import HEALTH, ROOT, device_from_health_topic

logger = logging.getLogger(__name__)

HISTORY = timedelta(days=90)
_PRUNE_EVERY = 1000


def is_health_topic(topic: str) -> bool:
    parts = topic.split("/")
    return len(parts) >= 5 and "/".join(parts[:3]) == f"{ROOT}/devices" and parts[4] == HEALTH


class HealthIngest:
    """Stores valid heartbeats; counts the rest and records them with the audit store's rejections."""

    def __init__(self, store: HealthStore, registry: RegistryStore, audit: AuditStore,
                 history: timedelta = HISTORY) -> None:
        self.store, self._registry, self._audit = store, registry, audit
        self._history = history
        self.stored = 0
        self.rejected = 0

    def _parse(self, topic: str, payload: bytes) -> Heartbeat:
        device = device_from_health_topic(topic)
        self._registry.require_registered(device)
        beat = Heartbeat.from_bytes(payload)
        if beat.device_id != device:
            raise WireFormatError(f"Heartbeat claims device {beat.device_id!r} but was published by {device!r}.")
        if device in self._registry.revocations():
            self._audit.record_finding(device, None, REVOKED_FINDING,
                                      f"{REVOKED_REASON}: {device} sent a heartbeat after it was revoked")
            raise WireFormatError(f"{REVOKED_REASON}: {device} sent a heartbeat after it was revoked")
        return beat

    def handle(self, topic: str, payload: bytes, received_at: datetime | None = None) -> bool:
        """Store one heartbeat; False (and a recorded rejection) when it is refused."""
        now = received_at or datetime.now(UTC)
        try:
            beat = self._parse(topic, payload)
        except WireFormatError as e:
            self.rejected += 1
            logger.warning("rejected heartbeat on %s: %s", topic[:200], e)
            self._audit.record_rejection(topic, str(e), len(payload), received_at=now)
            return False
        observed = (datetime.fromisoformat(beat.sent_at) - now).total_seconds()
        row = {k: v for k, v in beat.to_dict().items() if k != "v"}  # the held libraries are stored as JSON
        row.update(received_at=now.astimezone(UTC).isoformat(timespec="milliseconds"),
                   clock_offset_s=beat.clock_offset_s if beat.clock_offset_s is not None else round(observed, 3))
        self.store.record_health(row)
        self.stored += 1
        if self.stored % _PRUNE_EVERY == 0:
            self.store.prune_health(now - self._history)
        return True
