"""Audit events from the broker into the audit store: central's only paho importer.

Each worker holds a persistent MQTT v5 session under a fixed client id, so
QoS 1 messages published while central is down wait at the broker. One thread
owns each client: it runs paho's loop, gathers messages into small batches,
stores a batch in one transaction and only then sends the PUBACKs (manual
ack), so a crash before the commit leaves the messages with the broker.

After storing, the worker tells each device how much of its chain is stored
with no gap (``core.audit.ack``), and the device drops those outbox rows.
That ack, not the broker's, is what makes delivery loss-free: anything the
broker loses is resent by the device. Several workers (in one or many
processes) can share the topics with an MQTT v5 shared subscription
(``$share/<group>/...``); the store's (device, seq) key makes any double
delivery harmless.

The worker also takes the desks' peer review requests (``central.peer_review``)
and sends the outcomes the reviewers have decided, QoS 1 to each device's
outcome topic; the database is the queue between the reviewers' page and here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from central.audit.store import AuditStore
from central.fleet.health_store import HealthStore
from central.fleet.registry_store import RegistryStore
from central.ingest.handler import Incoming, MessageHandler
from central.ingest.health import HealthIngest, is_health_topic
from central.peer_review.ingest import PeerReviewIngest, is_request_topic
from central.peer_review.store import PeerReviewStore
from central.settings import MqttSettings
from core.audit.ack import Ack
from core.topics import (
    HEALTH_SUBSCRIPTION,
    INGEST_SUBSCRIPTIONS,
    PEER_REVIEW_REQUEST_SUBSCRIPTION,
    ack_topic,
    shared,
)
from devicekeys.tls import client_context

logger = logging.getLogger(__name__)

_QOS = 1
_BATCH_MAX = 500
_BATCH_AGE_S = 0.05
_RECEIVE_MAXIMUM = 1000  # how many unacked messages the broker may send us at once (one batch's worth)
_OUTCOME_POLL_S = 0.5  # how often decided peer review outcomes are looked for


class AuditIngest:
    """One ingest worker: subscribes to every device's audit and checkpoint topics and stores what arrives."""

    def __init__(self, settings: MqttSettings, store: AuditStore, *, client_id: str | None = None,
                 shared_group: str | None = None, ack_interval_s: float = 0.2,
                 peer_reviews: PeerReviewStore | None = None) -> None:
        """The registry and health stores are the worker's own, in the audit store's database, as is
        ``peer_reviews`` unless one is given."""
        self._settings = settings
        self._registry = RegistryStore(store.url)
        self._health_store = HealthStore(store.url)
        self._handler = MessageHandler(store, self._registry)
        self._own_reviews = peer_reviews is None
        self._reviews = PeerReviewIngest(peer_reviews or PeerReviewStore(store.url), self._registry, store)
        self._last_outcome_poll = 0.0
        self._client_id = client_id or settings.client_id
        self._subscriptions = [shared(shared_group, s) if shared_group else s
                               for s in (*INGEST_SUBSCRIPTIONS, PEER_REVIEW_REQUEST_SUBSCRIPTION,
                                         HEALTH_SUBSCRIPTION)]
        self._health = HealthIngest(self._health_store, self._registry, store)
        self._ack_interval_s = ack_interval_s
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._granted: set[int] = set()
        self._pending_sub: set[int] = set()
        self._batch: list[MQTTMessage] = []
        self._batch_started = 0.0
        self._dirty: set[str] = set()
        self._last_ack = 0.0
        self._client = Client(CallbackAPIVersion.VERSION2, client_id=self._client_id,
                              protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True)
        self._client.max_inflight_messages_set(200)
        if settings.ca_file is not None and settings.cert_file is not None and settings.key_file is not None:
            # Mutual TLS with central's fleet certificate (its CN is the broker user the ACL grants central's rights).
            self._client.tls_set_context(client_context(settings.ca_file, settings.cert_file, settings.key_file))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._retained: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"ingest-{self._client_id}", daemon=True)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def received(self) -> int:
        """Valid events and checkpoints received, counting redelivered duplicates."""
        return self._handler.counters.received

    @property
    def rejected(self) -> int:
        """Messages refused as malformed, oversized, unsigned, unregistered or on a wrong topic."""
        return self._handler.counters.rejected

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
        self._thread.start()

    def stop(self) -> None:
        """Store what is batched, disconnect; the broker keeps the session."""
        self._stop.set()
        self._thread.join(timeout=15)
        self._connected.clear()
        if self._own_reviews:
            self._reviews.store.close()
        self._registry.close()
        self._health_store.close()

    def wait_connected(self, timeout: float) -> bool:
        """True once the broker has accepted the connection and granted the subscriptions."""
        return self._connected.wait(timeout)

    # --- paho callbacks, run by the worker thread inside client.loop() ---

    def _on_connect(self, client: Client, userdata: Any, flags: ConnectFlags, reason_code: ReasonCode,
                    properties: Properties | None) -> None:
        if reason_code.is_failure:
            # A refused connection is not a connection (unlike Frigate's _on_connect).
            logger.error("broker %s:%s refused central's connection: %s",
                         self._settings.host, self._settings.port, reason_code)
            return
        logger.info("connected to broker %s:%s as %s (session present: %s)",
                    self._settings.host, self._settings.port, self._client_id, flags.session_present)
        # Subscribing again on a resumed session is harmless and covers a session the broker lost.
        self._pending_sub.clear()
        for sub in self._subscriptions:
            result, mid = client.subscribe(sub, qos=_QOS)
            if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
                logger.error("could not send subscription for %s: %s", sub, result)
            self._pending_sub.add(mid)

    def _on_subscribe(self, client: Client, userdata: Any, mid: int, reason_codes: list[ReasonCode],
                      properties: Properties | None) -> None:
        code = reason_codes[0]
        if code.is_failure:
            logger.error("broker refused subscription: %s", code)
            return
        if code.value < _QOS:
            logger.warning("subscription granted only QoS %s", code.value)
        self._pending_sub.discard(mid)
        if not self._pending_sub:
            self._connected.set()  # ready to receive: every subscription granted

    def _on_disconnect(self, client: Client, userdata: Any, flags: DisconnectFlags, reason_code: ReasonCode,
                       properties: Properties | None) -> None:
        self._connected.clear()
        if reason_code.is_failure:
            logger.warning("disconnected from broker: %s; reconnecting", reason_code)

    def _on_message(self, client: Client, userdata: Any, msg: MQTTMessage) -> None:
        if not self._batch:
            self._batch_started = time.monotonic()
        self._batch.append(msg)

    # --- the worker thread ---

    def _connect(self) -> bool:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._settings.session_expiry_s
        props.ReceiveMaximum = _RECEIVE_MAXIMUM
        try:
            self._client.connect(self._settings.host, self._settings.port, keepalive=30, clean_start=False,
                                 properties=props)
        except OSError as e:
            logger.debug("cannot reach broker %s:%s: %s", self._settings.host, self._settings.port, e)
            return False
        return True

    def _run(self) -> None:
        backoff = 0.5
        socket_open = False
        while not self._stop.is_set():
            if not socket_open:
                socket_open = self._connect()
                if not socket_open:
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                backoff = 0.5
            rc = self._client.loop(timeout=0.005 if self._batch else 0.05)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # Unacked messages stay with the broker and come again in the resumed session.
                self._batch.clear()
                self._connected.clear()
                socket_open = False
                continue
            now = time.monotonic()
            due = self._batch and (len(self._batch) >= _BATCH_MAX or now - self._batch_started >= _BATCH_AGE_S)
            if due and not self._flush():
                self._client.disconnect()
                self._client.loop(timeout=0.1)
                socket_open = False
                self._stop.wait(1.0)
                continue
            if self._dirty and now - self._last_ack >= self._ack_interval_s:
                self._send_acks()
            if self._connected.is_set():
                self._send_retained()
                if now - self._last_outcome_poll >= _OUTCOME_POLL_S:
                    self._send_outcomes()
        if socket_open:
            if self._batch:
                self._flush()
            if self._dirty:
                self._send_acks()
            self._client.disconnect()
            self._client.loop(timeout=0.2)
        # paho closes its sockets only in loop_stop() or at garbage collection; we never call loop_start().
        self._client._reset_sockets()

    def _flush(self) -> bool:
        batch, self._batch = self._batch, []
        try:
            for m in batch:
                if is_request_topic(m.topic):
                    self._reviews.handle(m.topic, m.payload)
                elif is_health_topic(m.topic):
                    self._health.handle(m.topic, m.payload)
            touched = self._handler.handle([Incoming(m.topic, m.payload) for m in batch
                                            if not is_request_topic(m.topic) and not is_health_topic(m.topic)])
        except Exception:
            # Not acknowledged: reconnecting makes the broker redeliver; devices resend anyway.
            logger.exception("could not store a batch of %s messages; left unacknowledged", len(batch))
            return False
        for m in batch:
            if m.qos > 0:
                self._client.ack(m.mid, m.qos)
        self._dirty |= touched
        return True

    def publish_retained(self, topic: str, payload: bytes) -> None:
        """Queue a retained QoS 1 message (a fleet announcement); the worker thread sends it when connected."""
        self._retained.put((topic, payload))

    def _send_retained(self) -> None:
        while not self._retained.empty():
            topic, payload = self._retained.get_nowait()
            self._client.publish(topic, payload, qos=_QOS, retain=True)

    def _send_outcomes(self) -> None:
        """Send each decided peer review outcome not yet sent (QoS 1, not retained)."""
        self._last_outcome_poll = time.monotonic()
        try:
            for request_id, topic, payload in self._reviews.store.claim_due():
                info = self._client.publish(topic, payload, qos=_QOS)
                self._reviews.store.sent(request_id, info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS)
        except Exception:  # the store is down: the outcomes wait there, the audit ingest goes on
            logger.exception("could not send peer review outcomes; will try again")

    def _send_acks(self) -> None:
        store = self._handler.store
        for device in sorted(self._dirty):
            head = store.head(device)
            if head is None:
                continue
            ack = Ack(device, head.contiguous_seq, head.checkpoint_stored)
            self._client.publish(ack_topic(device), ack.to_bytes(), qos=_QOS)
        self._dirty.clear()
        self._last_ack = time.monotonic()


def publish_once(settings: MqttSettings, topic: str, payload: bytes, *, client_id: str | None = None,
                 timeout_s: float = 10.0) -> bool:
    """Connect, publish one QoS 1 message, and return True only if the broker's PUBACK says it was accepted.

    For one-off commands (a device wipe from ``python -m central devices revoke`` or the fleet page),
    which must not depend on an ingest worker running in the same process. The reason code is checked
    because paho reports success for a publish the ACL refused (docs/fleet.md).
    """
    client = Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"{settings.client_id}-command",
                    protocol=MQTTProtocolVersion.MQTTv5)
    if settings.ca_file is not None and settings.cert_file is not None and settings.key_file is not None:
        client.tls_set_context(client_context(settings.ca_file, settings.cert_file, settings.key_file))
    done = threading.Event()
    connected = threading.Event()
    outcome: dict[str, bool] = {}

    def on_connect(c: Client, u: Any, f: ConnectFlags, rc: ReasonCode, p: Properties | None) -> None:
        if not rc.is_failure:
            connected.set()

    def on_publish(c: Client, u: Any, mid: int, rc: ReasonCode, p: Properties | None) -> None:
        outcome["ok"] = not rc.is_failure
        done.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    try:
        client.connect(settings.host, settings.port, keepalive=30)
    except OSError as e:
        logger.error("cannot reach broker %s:%s to publish on %s: %s", settings.host, settings.port, topic, e)
        client._reset_sockets()
        return False
    client.loop_start()
    try:
        if not connected.wait(timeout_s):
            logger.error("broker %s:%s did not accept the connection", settings.host, settings.port)
            return False
        client.publish(topic, payload, qos=_QOS)
        return done.wait(timeout_s) and outcome.get("ok", False)
    finally:
        client.disconnect()
        client.loop_stop()
