"""Send the outbox to central over MQTT and drop rows only when central acknowledges them.

This is the only module in the appliance that imports paho, and one thread
owns the client: it runs paho's network loop, publishes, and applies acks, so
there is no shared client state to lock. The client uses a fixed client id, a
persistent MQTT v5 session (``clean_start=False`` with a session expiry) and
QoS 1, and subscribes to its own ack topic.

Delivery is end to end: central publishes a cumulative ack ("every event up to
N is stored") after it commits, and only then are outbox rows deleted. A broker
PUBACK proves nothing once the broker can lose messages (``kill -9`` between
autosaves), so sent-but-unacked events are simply sent again after
``resend_after_s`` without progress; central's ingest is idempotent by
(device, seq), so a resend can never duplicate an event. At most ``window``
events are outstanding, so a 100,000-event backlog drains in steady batches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.settings import MqttSettings
from appliance.storage.outbox import Outbox
from core.audit.ack import Ack
from core.errors import WireFormatError
from core.topics import ack_topic, audit_topic, checkpoint_topic
from devicekeys.tls import client_context

logger = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
RESEND_AFTER_S = 10.0
WINDOW = 500
CHECKPOINT_IDLE_S = 1.0
_LOOP_S = 0.05
_BATCH = 100

#: Publishes one QoS 1 message; False if it could not be handed to the socket (try again later).
Publish = Callable[[str, bytes], bool]
#: Further outgoing queues (peer review requests): called in the sender thread while connected, with
#: ``publish`` and the number of the current connection, so a sender can resend after a reconnect.
Sender = Callable[[Publish, int], None]


class AuditPublisher:
    def __init__(self, settings: MqttSettings, device_id: str, outbox: Outbox, *,
                 resend_after_s: float = RESEND_AFTER_S, window: int = WINDOW,
                 checkpoint_idle_s: float = CHECKPOINT_IDLE_S,
                 handlers: Mapping[str, Callable[[bytes], None]] | None = None,
                 senders: Sequence[Sender] = ()) -> None:
        """``handlers`` maps further topics (fleet announcements, peer review outcomes) to what handles
        their payloads; ``senders`` drain further outgoing queues. Both run in the sender thread, so each
        must return quickly."""
        self._settings = settings
        self._device_id = device_id
        self._topic = audit_topic(device_id)
        self._checkpoint_topic = checkpoint_topic(device_id)
        self._ack_topic = ack_topic(device_id)
        self._outbox = outbox
        self._handlers = dict(handlers or {})
        self._senders = list(senders)
        self.sessions = 0  # connections accepted so far
        self._resend_after_s = resend_after_s
        self._window = window
        self._checkpoint_idle_s = checkpoint_idle_s
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"appliance-{device_id}",
                                   protocol=mqtt.MQTTv5)
        self._client.max_inflight_messages_set(100)
        if settings.ca_file is not None and settings.cert_file is not None and settings.key_file is not None:
            # Mutual TLS: a sealed key is unsealed into memory only (see devicekeys.tls).
            self._client.tls_set_context(client_context(settings.ca_file, settings.cert_file, settings.key_file))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-sender", daemon=True)
        # Sender state, touched only by the sender thread.
        self._cursor: int | None = None  # next event seq to send; None = from the oldest pending
        self._checkpoint_cursor = 0  # newest checkpoint sent this session
        self._last_progress = time.monotonic()
        self._acked_through = 0
        self._last_ack_at: float | None = None  # wall-clock time of central's latest ack (for health)
        self.sent = 0
        self.acked = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def acked_through(self) -> int:
        """The highest seq central has acknowledged storing (with nothing missing before it)."""
        return self._acked_through

    @property
    def last_ack_at(self) -> float | None:
        """When (``time.time()``) central last acknowledged anything in this run; None: not yet."""
        return self._last_ack_at

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Stop after the current loop turn without waiting: callable from a handler or sender running in
        the sender thread itself (a device wipe), where ``stop`` would wait for its own thread."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # --- paho callbacks: all run in the sender thread, inside client.loop() ---

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                    properties: object) -> None:
        if getattr(reason_code, "is_failure", True):
            logger.warning("broker refused connection: %s", reason_code)
            return
        logger.info("connected to broker %s:%s", self._settings.host, self._settings.port)
        client.subscribe(self._ack_topic, qos=1)
        for topic in self._handlers:
            client.subscribe(topic, qos=1)
        self.sessions += 1
        self._connected.set()
        # Checkpoints are few: offer every unacked one again in the new session.
        self._checkpoint_cursor = 0

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                       properties: object) -> None:
        logger.info("disconnected from broker: %s", reason_code)
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        handler = self._handlers.get(msg.topic)
        if handler is not None:
            try:
                handler(msg.payload)
            except Exception:  # a bad announcement must never stop the audit sender
                logger.exception("handler for %s failed", msg.topic)
            return
        try:
            ack = Ack.from_bytes(msg.payload)
            if ack.device_id != self._device_id:
                raise WireFormatError(f"ack is for {ack.device_id}")
        except WireFormatError as e:
            logger.warning("ignoring malformed ack on %s: %s", msg.topic, e)
            return
        self._last_ack_at = time.time()
        removed = self._outbox.acknowledge_through(ack.events_through, ack.checkpoint_through)
        self._acked_through = max(self._acked_through, ack.events_through)
        if removed:
            self._last_progress = time.monotonic()
        self.acked += removed

    # --- the sender thread ---

    def _connect(self) -> bool:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        try:
            self._client.connect(self._settings.host, self._settings.port, keepalive=self._settings.keepalive_s,
                                 clean_start=False, properties=props)
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
                    self._outbox.sign_tail(self._checkpoint_idle_s)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                backoff = 0.5
            rc = self._client.loop(timeout=_LOOP_S)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self._connected.clear()
                socket_open = False
                continue
            self._outbox.sign_tail(self._checkpoint_idle_s)
            if self._connected.is_set():
                self._send()
                self._run_senders()
        try:
            if socket_open:
                self._client.disconnect()
                self._client.loop(timeout=0.2)
        finally:
            self._connected.clear()
            # paho closes its wake-up socket pair only in loop_stop() or at garbage collection; we never
            # call loop_start(), so close them here rather than leak them.
            self._client._reset_sockets()

    def _send(self) -> None:
        first = self._outbox.first_pending()
        checkpoints = self._outbox.pending_checkpoints()
        now = time.monotonic()
        if first is None and not checkpoints:
            self._cursor = None
            self._last_progress = now
            return
        if now - self._last_progress > self._resend_after_s:
            logger.info("no ack from central in %.0f s; sending unacknowledged events from seq %s again",
                        self._resend_after_s, first)
            self._cursor, self._checkpoint_cursor, self._last_progress = None, 0, now
        if first is not None:
            if self._cursor is None or self._cursor < first:
                self._cursor = first
            room = first + self._window - self._cursor
            if room > 0:
                for item in self._outbox.pending(limit=min(room, _BATCH), from_seq=self._cursor):
                    if not self._publish(self._topic, item.payload):
                        return
                    self._cursor = item.seq + 1
                    self.sent += 1
        for cp in checkpoints:
            if cp.seq <= self._checkpoint_cursor or (self._cursor is not None and cp.seq >= self._cursor):
                continue  # sent already, or ahead of the events it signs
            if not self._publish(self._checkpoint_topic, cp.payload):
                return
            self._checkpoint_cursor = cp.seq

    def _run_senders(self) -> None:
        for sender in self._senders:
            try:
                sender(self._publish, self.sessions)
            except Exception:  # a failing queue must never stop the audit sender
                logger.exception("sender %r failed", sender)

    def _publish(self, topic: str, payload: bytes) -> bool:
        info = self._client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            logger.warning("publish to %s failed (%s); will retry", topic, info.rc)
            return False
        return True
