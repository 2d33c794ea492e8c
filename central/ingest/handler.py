"""Turn raw MQTT messages into stored events, checkpoints and counted rejections (no paho here).

Every message is distrusted. Its topic must be a device's audit or checkpoint
topic, the device must be registered (its Ed25519 key is on file), the payload
must parse strictly and name the same device as the topic, an event must carry
its chain hashes, and a checkpoint must be signed by the device's key, and
the device must not be revoked (a revoked desk's messages are refused with the
reason "device revoked" and flagged as a finding on /audit; only its own
``device_wiped`` report is still stored, so the audit shows the wipe). A
message that fails is recorded in the store's rejections with the reason and
counted; it never raises out of here and never holds up the good messages in
the same batch. That holds for whatever a message makes go wrong, not only the
refusals foreseen (a parser's RecursionError or MemoryError, a number the
database will not take, a bug): it is refused like a malformed one. Only a
failure of the store itself (``central.database.is_store_failure``) raises,
because then nothing may be acknowledged and the broker must deliver again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from central.audit.store import AuditStore, BatchOutcome
from central.database import is_store_failure
from central.fleet.registry_store import REVOKED_FINDING, REVOKED_REASON, RegistryStore
from core.audit.checkpoint import Checkpoint, public_key_from_bytes
from core.audit.errors import KeyFormatError, SignatureError
from core.errors import WireFormatError
from core.events import AuditEvent
from core.topics import AUDIT, parse_device_topic

logger = logging.getLogger(__name__)


class RevokedDeviceMessage(WireFormatError):
    """A message from a device central has revoked."""

    def __init__(self, device: str, seq: int | None, what: str) -> None:
        super().__init__(f"{REVOKED_REASON}: {device} sent {what} after it was revoked")
        self.device = device
        self.seq = seq


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes


@dataclass
class IngestCounters:
    """What an operator watches: all monotonically increasing."""

    received: int = 0  # valid events and checkpoints, including repeats
    stored: int = 0
    duplicates: int = 0  # repeats of something already stored: resends and replays
    conflicts: int = 0  # a different event for a stored position
    rejected: int = 0


class MessageHandler:
    """Validates and stores batches; thread-safe counters for status pages."""

    def __init__(self, store: AuditStore, registry: RegistryStore) -> None:
        self.store, self._registry = store, registry
        self.counters = IngestCounters()
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._lock = threading.Lock()

    def _key(self, device: str) -> Ed25519PublicKey:
        key = self._keys.get(device)
        if key is not None:
            return key
        hex_key = self._registry.require_registered(device)
        try:
            key = public_key_from_bytes(hex_key.encode())
        except KeyFormatError as e:
            raise WireFormatError(f"Device {device!r} has an unusable registered key: {e}") from e
        self._keys[device] = key
        return key

    def _parse(self, msg: Incoming, revoked: frozenset[str] = frozenset()) -> AuditEvent | Checkpoint:
        device, kind = parse_device_topic(msg.topic)
        key = self._key(device)
        if kind == AUDIT:
            event = AuditEvent.from_bytes(msg.payload)
            if event.device_id != device:
                raise WireFormatError(f"Event claims device {event.device_id!r} but was published by {device!r}.")
            if not event.sealed:
                raise WireFormatError("Event carries no chain hashes (unsigned): it cannot be placed in the chain.")
            if device in revoked and event.type != "device_wiped":
                raise RevokedDeviceMessage(device, event.seq, f"a {event.type} event (seq {event.seq})")
            return event
        cp = Checkpoint.from_bytes(msg.payload)
        if cp.device_id != device:
            raise WireFormatError(f"Checkpoint claims device {cp.device_id!r} but was published by {device!r}.")
        if device in revoked:
            raise RevokedDeviceMessage(device, None, f"a checkpoint (seq {cp.seq})")
        try:
            cp.verify(key)
        except SignatureError as e:
            raise WireFormatError(str(e)) from e
        return cp

    def reject_unhandled(self, topic: str, size: int, error: Exception, when: datetime,
                         what: str = "message") -> None:
        """Refuse a message whose handling raised ``error``: recorded with the rejections and counted.

        A store failure is not the message's fault: it is raised again, so the caller acknowledges nothing.
        """
        if is_store_failure(error):
            raise error
        logger.error("refused a %s on %s (%s bytes): handling it failed", what, topic[:200], size, exc_info=error)
        self.store.record_rejection(topic, f"{what} could not be handled and was dropped "
                                    f"({type(error).__name__}: {str(error)[:200]})", size, received_at=when)
        with self._lock:
            self.counters.rejected += 1

    def handle(self, batch: Sequence[Incoming]) -> set[str]:
        """Store what is valid, record what is not; the devices whose chains changed (to ack).

        Raises only if the store itself fails, in which case nothing of the batch is stored.
        """
        now = datetime.now(UTC)
        items: list[tuple[Incoming, AuditEvent | Checkpoint]] = []
        rejected = 0
        revoked = frozenset(self._registry.revocations()) if batch else frozenset()
        for msg in batch:
            try:
                item = self._parse(msg, revoked)
            except WireFormatError as e:
                rejected += 1
                if isinstance(e, RevokedDeviceMessage):
                    self.store.record_finding(e.device, e.seq, REVOKED_FINDING, str(e), now)
                logger.warning("rejected message on %s (%s bytes): %s", msg.topic[:200], len(msg.payload), e,
                               extra={"event": "message_rejected", "device_id": _topic_device(msg.topic)})
                self.store.record_rejection(msg.topic, str(e), len(msg.payload), received_at=now)
                continue
            except Exception as e:  # whatever else this one message made go wrong
                self.reject_unhandled(msg.topic, len(msg.payload), e, now)
                continue
            items.append((msg, item))
        outcome = self._store(items, now)
        with self._lock:
            c = self.counters
            c.rejected += rejected
            c.received += len(items)
            c.stored += outcome.stored
            c.duplicates += outcome.duplicates
            c.conflicts += outcome.conflicts
        if outcome.conflicts:
            logger.error("%s conflicting events refused (see audit findings)", outcome.conflicts)
        return outcome.devices

    def _store(self, items: Sequence[tuple[Incoming, AuditEvent | Checkpoint]], now: datetime) -> BatchOutcome:
        """One transaction for the batch; if something in it is refused by the database (not a store
        failure), the batch is stored again one message at a time so only the culprit is refused."""
        def split(chosen: Sequence[AuditEvent | Checkpoint]) -> tuple[list[AuditEvent], list[Checkpoint]]:
            return ([i for i in chosen if isinstance(i, AuditEvent)], [i for i in chosen if isinstance(i, Checkpoint)])

        try:
            return self.store.add_batch(*split([item for _, item in items]), now)
        except Exception as e:
            if len(items) == 1:
                self.reject_unhandled(items[0][0].topic, len(items[0][0].payload), e, now)  # raises a store failure
                return BatchOutcome()
            if is_store_failure(e):
                raise
            logger.warning("a batch of %s messages could not be stored (%s); storing them one at a time",
                           len(items), e)
        total = BatchOutcome()
        for msg, item in items:
            try:
                one = self.store.add_batch(*split([item]), now)
            except Exception as e:
                self.reject_unhandled(msg.topic, len(msg.payload), e, now)
                continue
            total.stored += one.stored
            total.duplicates += one.duplicates
            total.conflicts += one.conflicts
            total.checkpoints += one.checkpoints
            total.devices |= one.devices
        return total


def _topic_device(topic: str) -> str | None:
    """The device a topic names, for the log line's ``device_id`` (None for a topic that names none)."""
    try:
        return parse_device_topic(topic)[0]
    except WireFormatError:
        return None
