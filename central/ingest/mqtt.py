"""Audit events from the broker into the audit store, with central's topic table.

Each worker holds a persistent MQTT v5 session under a fixed client id (``transport.mqtt``), so
QoS 1 messages published while central is down wait at the broker. The connection's one thread
gathers messages into small batches, stores a batch in one transaction and only then sends the
PUBACKs (manual ack), so a crash before the commit leaves the messages with the broker.

After storing, the worker tells each device how much of its chain is stored
with no gap (``core.audit.ack``, signed with central's fleet-command key and
bound to the hash of the last event it covers), and the device drops those
outbox rows.
That ack, not the broker's, is what makes delivery loss-free: anything the
broker loses is resent by the device. Several workers (in one or many
processes) can share the topics with an MQTT v5 shared subscription
(``$share/<group>/...``); the store's (device, seq) key makes any double
delivery harmless.

The worker also takes the desks' peer review requests (``central.peer_review``)
and heartbeats (``central.ingest.health``), and sends the outcomes the reviewers
have decided, signed, QoS 1 to each device's outcome topic; the database is the
queue between the reviewers' page and here.

Each message is handled on its own. Whatever one message makes go wrong (a
refusal, a parser's RecursionError or MemoryError, a value the database will
not take, a bug) refuses that message with a recorded rejection, and it is
acknowledged like the rest: a poison message must not come back forever and
stop every desk's ingest behind it. Only a failure of the database itself
leaves the batch unacknowledged (and then no desk gets a chain ack for it
either), so the broker delivers it again once the store is back.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from central.audit.store import AuditStore
from central.fleet.health_store import HealthStore
from central.fleet.registry_store import RegistryStore
from central.ingest.handler import Incoming, MessageHandler
from central.ingest.health import HealthIngest, is_health_topic
from central.peer_review.ingest import PeerReviewIngest, is_request_topic
from central.peer_review.probe_vault import ProbeVault
from central.peer_review.probes import ReviewProbes
from central.peer_review.store import PeerReviewStore
from central.settings import CentralMqttSettings
from core.audit.ack import Ack
from core.peer_review import PeerReviewOutcome
from core.topics import (
    HEALTH_SUBSCRIPTION,
    INGEST_SUBSCRIPTIONS,
    PEER_REVIEW_REQUEST_SUBSCRIPTION,
    ack_topic,
    shared,
)
from transport.mqtt import ConnectionHooks, Message, MqttConnection
from transport.mqtt import publish_once as _publish_once

logger = logging.getLogger(__name__)

_BATCH_MAX = 500
_BATCH_AGE_S = 0.05
_RECEIVE_MAXIMUM = 1000  # how many unacked messages the broker may send us at once (one batch's worth)
_OUTCOME_POLL_S = 0.5  # how often decided peer review outcomes are looked for
_PROBE_SWEEP_S = 2.0  # how often held peer review probes are checked against decisions and closed cases
_STORE_DOWN_PAUSE_S = 1.0  # after a batch could not be stored: reconnect (the broker redelivers) after this


class AuditIngest:
    """One ingest worker: subscribes to every device's audit and checkpoint topics and stores what arrives."""

    def __init__(self, settings: CentralMqttSettings, store: AuditStore, *, command_key: Ed25519PrivateKey,
                 client_id: str | None = None, shared_group: str | None = None, ack_interval_s: float = 0.2,
                 peer_reviews: PeerReviewStore | None = None, review_key: X25519PrivateKey | None = None,
                 probe_dir: Path | None = None, probe_max_days: int = 30) -> None:
        """``command_key`` is central's fleet-command key: it signs every ack and outcome sent (desks refuse
        them unsigned). The registry and health stores are the worker's own, in the audit store's database,
        as is ``peer_reviews`` unless one is given. ``review_key`` opens the probes peer review requests carry,
        held in ``probe_dir`` until the review is answered or the case closes (``central.peer_review.probes``)."""
        self._command_key = command_key
        self._registry = RegistryStore(store.url)
        self._health_store = HealthStore(store.url)
        self._handler = MessageHandler(store, self._registry)
        self._own_reviews = peer_reviews is None
        review_store = peer_reviews or PeerReviewStore(store.url)
        self._probes = ReviewProbes(review_store, ProbeVault(probe_dir), max_days=probe_max_days) \
            if probe_dir is not None else None
        self._last_probe_sweep = 0.0
        self._reviews = PeerReviewIngest(review_store, self._registry, store, review_key=review_key,
                                         probes=self._probes)
        self._health = HealthIngest(self._health_store, self._registry, store)
        # The topic table: requests and heartbeats are taken one by one, by the first route whose test their
        # topic passes; everything else is for the audit handler (which refuses wrong topics), one batch at once.
        self._routes: tuple[tuple[Callable[[str], bool], str, Callable[[str, bytes], object]], ...] = (
            (is_request_topic, "peer review request", self._reviews.handle),
            (is_health_topic, "heartbeat", self._health.handle),
        )
        self._last_outcome_poll = 0.0
        client_id = client_id or settings.client_id
        subscriptions = [shared(shared_group, s) if shared_group else s
                         for s in (*INGEST_SUBSCRIPTIONS, PEER_REVIEW_REQUEST_SUBSCRIPTION, HEALTH_SUBSCRIPTION)]
        self._ack_interval_s = ack_interval_s
        self._batch: list[Message] = []
        self._batch_started = 0.0
        self._dirty: set[str] = set()
        self._last_ack = 0.0
        self._retained: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        # Mutual TLS, when set, is with central's fleet certificate (its CN is the broker user the ACL grants
        # central's rights).
        self._link = MqttConnection(
            settings, client_id=client_id, owner="central", thread_name=f"ingest-{client_id}",
            session_expiry_s=settings.session_expiry_s, subscriptions=subscriptions,
            receive_maximum=_RECEIVE_MAXIMUM, max_inflight=200, manual_ack=True,
            hooks=ConnectionHooks(on_message=self._on_message, on_turn=self._on_turn, on_lost=self._on_lost,
                                  on_closing=self._on_closing, poll_s=self._poll_s))

    @property
    def connected(self) -> bool:
        """Connected, with every subscription granted."""
        return self._link.subscribed

    @property
    def received(self) -> int:
        """Valid events and checkpoints received, counting redelivered duplicates."""
        return self._handler.counters.received

    @property
    def rejected(self) -> int:
        """Messages refused as malformed, oversized, unsigned, unregistered or on a wrong topic, or because
        handling them failed: audit events and checkpoints, heartbeats and peer review requests alike."""
        return self._handler.counters.rejected + self._health.rejected + self._reviews.rejected

    @property
    def duplicates(self) -> int:
        """Valid messages that were already stored (resends and replays)."""
        return self._handler.counters.duplicates

    @property
    def stored(self) -> int:
        return self._handler.counters.stored

    @property
    def conflicts(self) -> int:
        return self._handler.counters.conflicts

    def start(self) -> None:
        """Connect in the background; the worker keeps reconnecting until ``stop``."""
        self._link.start()

    def stop(self) -> None:
        """Store what is batched, disconnect; the broker keeps the session."""
        self._link.stop(timeout=15)
        if self._own_reviews:
            self._reviews.store.close()
        self._registry.close()
        self._health_store.close()

    def wait_connected(self, timeout: float) -> bool:
        """True once the broker has accepted the connection and granted the subscriptions."""
        return self._link.wait_subscribed(timeout)

    # --- hooks, run by the worker thread (the connection's) ---

    def _on_message(self, message: Message) -> None:
        if not self._batch:
            self._batch_started = time.monotonic()
        self._batch.append(message)

    def _poll_s(self) -> float:
        return 0.005 if self._batch else 0.05

    def _on_lost(self) -> None:
        # Unacked messages stay with the broker and come again in the resumed session.
        self._batch.clear()

    def _on_turn(self) -> None:
        now = time.monotonic()
        due = self._batch and (len(self._batch) >= _BATCH_MAX or now - self._batch_started >= _BATCH_AGE_S)
        if due and not self._flush():
            self._link.drop(pause_s=_STORE_DOWN_PAUSE_S)
            return
        if self._dirty and now - self._last_ack >= self._ack_interval_s:
            self._send_acks()
        if self._link.subscribed:
            self._send_retained()
            if now - self._last_outcome_poll >= _OUTCOME_POLL_S:
                self._send_outcomes()
        if self._probes is not None and now - self._last_probe_sweep >= _PROBE_SWEEP_S:
            self._sweep_probes()

    def _on_closing(self) -> None:
        if self._batch:
            self._flush()
        if self._dirty:
            self._send_acks()

    def _flush(self) -> bool:
        batch, self._batch = self._batch, []
        try:
            audit: list[Incoming] = []
            for m in batch:
                route = next(((what, handle) for test, what, handle in self._routes if test(m.topic)), None)
                if route is None:
                    audit.append(Incoming(m.topic, m.payload))
                    continue
                what, take = route
                try:
                    take(m.topic, m.payload)
                except Exception as e:  # this message's fault, unless the store failed (then raised again)
                    self._handler.reject_unhandled(m.topic, len(m.payload), e, datetime.now(UTC), what)
            touched = self._handler.handle(audit)
        except Exception:
            # The store failed. Not acknowledged: reconnecting makes the broker redeliver; devices resend anyway.
            logger.exception("could not store a batch of %s messages; left unacknowledged", len(batch))
            return False
        for m in batch:
            self._link.ack(m)
        self._dirty |= touched
        return True

    def publish_retained(self, topic: str, payload: bytes) -> None:
        """Queue a retained QoS 1 message (a fleet announcement); the worker thread sends it when connected."""
        self._retained.put((topic, payload))

    def _send_retained(self) -> None:
        while not self._retained.empty():
            topic, payload = self._retained.get_nowait()
            if not self._link.publish(topic, payload, retain=True):
                self._retained.put((topic, payload))  # the connection went: sent on a later turn
                return

    def _send_outcomes(self) -> None:
        """Send each decided peer review outcome not yet sent (QoS 1, not retained)."""
        self._last_outcome_poll = time.monotonic()
        try:
            for request_id, topic, payload in self._reviews.store.claim_due():
                signed = PeerReviewOutcome.seal(payload, self._command_key)
                self._reviews.store.sent(request_id, self._link.publish(topic, signed))
        except Exception:  # the store is down: the outcomes wait there, the audit ingest goes on
            logger.exception("could not send peer review outcomes; will try again")

    def _sweep_probes(self) -> None:
        """Destroy held probes whose review was answered or whose case closed (``ReviewProbes.sweep``)."""
        self._last_probe_sweep = time.monotonic()
        try:
            assert self._probes is not None
            self._probes.sweep(self._handler.store, revoked=set(self._registry.revocations()))
        except Exception:  # the store or the folder is unusable: the probes wait, the ingest goes on
            logger.exception("could not sweep held peer review probes; will try again")

    def _send_acks(self) -> None:
        """A signed ack for each device whose chain moved; one that cannot be sent now is tried next time."""
        store = self._handler.store
        self._last_ack = time.monotonic()
        for device in sorted(self._dirty):
            try:
                head = store.head(device)
                if head is not None:
                    ack = Ack.now(device, head.contiguous_seq, head.checkpoint_stored, head.head_hash)
                    if not self._link.publish(ack_topic(device), ack.signed(self._command_key)):
                        return
            except Exception:  # the store is down: the devices keep their rows and resend; acked later
                logger.exception("could not send the ack for %s; will try again", device)
                return
            self._dirty.discard(device)


def publish_once(settings: CentralMqttSettings, topic: str, payload: bytes, *, client_id: str | None = None,
                 timeout_s: float = 10.0) -> bool:
    """Publish one command (a device wipe from ``python -m central devices revoke`` or the fleet page) and
    return True only if the broker accepted it; it must not depend on an ingest worker running in the same
    process, so it has a connection of its own (client id ``<client_id>-command``)."""
    return _publish_once(settings, topic, payload, client_id=client_id or f"{settings.client_id}-command",
                         timeout_s=timeout_s)
