"""The desk's link to central: the audit outbox out, central's acks in, and the further topics both ways.

``CentralLink`` holds the desk's one MQTT connection (``transport.mqtt``: fixed client id, persistent
MQTT v5 session, QoS 1). Its topic table sends central's acks to the outbox and every other subscribed
topic (peer review outcomes, library announcements, signed wipe commands) to the service that handles
it; its senders drain the further outgoing queues (peer review requests, heartbeats). Everything here
runs in the connection's one thread, so there is no shared state to lock.

Delivery is end to end: central publishes a cumulative ack ("every event up to
N is stored") after it commits, and only then are outbox rows deleted. A broker
PUBACK proves nothing once the broker can lose messages (``kill -9`` between
autosaves), so sent-but-unacked events are simply sent again after
``resend_after_s`` without progress; central's ingest is idempotent by
(device, seq), so a resend can never duplicate an event. At most ``window``
events are outstanding, so a 100,000-event backlog drains in steady batches.

An ack deletes pending audit events, so it is believed only when central's
fleet-command key signed it for this device (``core.audit.ack``) and it
matches this desk's own log: never past what the desk has logged and signed,
and with the hash of this desk's event at ``events_through`` (the outbox
checks both before deleting anything). A replayed older ack deletes nothing
new and moves nothing back, and only an ack newer than any seen counts as
contact with central in the heartbeat. A desk without central's public key
cannot take acks at all, so the key is required.

Every message that arrives is handled on its own: whatever one makes go wrong
is logged and counted in ``refused`` (the services log and audit their own
refusals of outcomes, announcements and commands), and the link carries on (an exception
escaping here would end the connection's thread, and a retained or queued
poison message would then stop the desk's audit sender at every start).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.settings import DeskMqttSettings
from appliance.storage.outbox import AckRefusedError, Outbox
from core.audit.ack import Ack
from core.errors import WireFormatError
from core.topics import ack_topic, audit_topic, checkpoint_topic
from transport.mqtt import ConnectionHooks, Message, MqttConnection

logger = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
RESEND_AFTER_S = 10.0
WINDOW = 500
CHECKPOINT_IDLE_S = 1.0
_BATCH = 100

#: Publishes one QoS 1 message; False if it could not be handed to the socket (try again later).
Publish = Callable[[str, bytes], bool]
#: Further outgoing queues (peer review requests): called in the sender thread while connected, with
#: ``publish`` and the number of the current connection, so a sender can resend after a reconnect.
Sender = Callable[[Publish, int], None]


class CentralLink:
    """Everything the desk sends to central and receives from it over the broker."""

    def __init__(self, settings: DeskMqttSettings, device_id: str, outbox: Outbox, *,
                 central_key: Ed25519PublicKey, resend_after_s: float = RESEND_AFTER_S, window: int = WINDOW,
                 checkpoint_idle_s: float = CHECKPOINT_IDLE_S,
                 handlers: Mapping[str, Callable[[bytes], None]] | None = None,
                 senders: Sequence[Sender] = (),
                 on_central_time: Callable[[datetime, int], None] | None = None) -> None:
        """``handlers`` maps further topics (fleet announcements, peer review outcomes) to what handles
        their payloads; ``senders`` drain further outgoing queues. Both run in the sender thread, so each
        must return quickly. ``central_key`` is central's fleet-command public key: acks must carry its
        signature. ``on_central_time`` hears the issue time of each new signed ack and the last event it covers
        (the desk's clock check)."""
        self._on_central_time = on_central_time
        self._device_id = device_id
        self._central_key = central_key
        self._topic = audit_topic(device_id)
        self._checkpoint_topic = checkpoint_topic(device_id)
        self._outbox = outbox
        # The topic table: central's acks first, then the services' topics; ``_on_message`` guards each, so
        # a bad message never stops the audit sender.
        self._routes: dict[str, Callable[[bytes], None]] = {ack_topic(device_id): self._take_ack}
        self._routes.update(handlers or {})
        self._senders = list(senders)
        self.sessions = 0  # connections accepted so far
        self._resend_after_s = resend_after_s
        self._window = window
        self._checkpoint_idle_s = checkpoint_idle_s
        self._link = MqttConnection(
            settings, client_id=f"appliance-{device_id}", owner="the desk", thread_name="audit-sender",
            session_expiry_s=SESSION_EXPIRY_S, subscriptions=list(self._routes), keepalive_s=settings.keepalive_s,
            max_inflight=100,
            hooks=ConnectionHooks(on_message=self._on_message, on_connected=self._on_connected,
                                  on_turn=self._on_turn, on_offline=self._sign_tail))
        # Sender state, touched only by the sender thread.
        self._cursor: int | None = None  # next event seq to send; None = from the oldest pending
        self._lowest: int | None = None  # the oldest pending event at the last turn
        self._checkpoint_cursor = 0  # newest checkpoint sent this session
        self._last_progress = time.monotonic()
        self._acked_through = 0
        self._last_ack_at: float | None = None  # wall-clock time of central's latest ack (for health)
        self._newest_ack: datetime | None = None  # issued_at of the newest ack taken: older ones are replays
        self.sent = 0
        self.acked = 0
        self.refused = 0  # acks refused (forged, malformed, not ours) and any message whose handling failed

    @property
    def connected(self) -> bool:
        return self._link.connected

    @property
    def acked_through(self) -> int:
        """The highest seq central has acknowledged storing (with nothing missing before it)."""
        return self._acked_through

    @property
    def last_ack_at(self) -> float | None:
        """When (``time.time()``) central last acknowledged anything in this run; None: not yet."""
        return self._last_ack_at

    def start(self) -> None:
        self._link.start()

    def request_stop(self) -> None:
        """Stop after the current loop turn without waiting: callable from a handler or sender running in
        the sender thread itself (a device wipe), where ``stop`` would wait for its own thread."""
        self._link.request_stop()

    def stop(self) -> None:
        self._link.stop(timeout=10)

    def wait_connected(self, timeout: float) -> bool:
        return self._link.wait_connected(timeout)

    # --- hooks: all run in the sender thread (the connection's) ---

    def _on_connected(self) -> None:
        self.sessions += 1
        # Checkpoints are few: offer every unacked one again in the new session.
        self._checkpoint_cursor = 0

    def _on_message(self, message: Message) -> None:
        route = self._routes.get(message.topic)
        if route is None:
            logger.warning("ignoring a message on %s: no handler", message.topic)
            return
        try:
            route(message.payload)
        except Exception:  # one bad message (or a bug its handling hit) must never stop the audit sender
            self.refused += 1
            logger.exception("refused a message on %s (%s bytes): handling it failed", message.topic,
                             len(message.payload))

    def _take_ack(self, payload: bytes) -> None:
        """Delete the outbox rows a signed ack covers, if it matches this desk's log; else delete nothing."""
        try:
            ack = Ack.from_signed(payload, self._central_key)
            if ack.device_id != self._device_id:
                raise WireFormatError(f"the ack is for {ack.device_id}")
            removed = self._outbox.acknowledge_through(ack.events_through, ack.checkpoint_through, ack.head_hash)
        except (WireFormatError, AckRefusedError) as e:
            self.refused += 1
            logger.warning("refused an ack on %s: %s", ack_topic(self._device_id), e)
            return
        issued = ack.issued()
        if self._newest_ack is None or issued > self._newest_ack:  # a replayed older ack is no sign of contact
            self._newest_ack = issued
            self._last_ack_at = time.time()
            if self._on_central_time is not None:
                self._on_central_time(issued, ack.events_through)
        self._acked_through = max(self._acked_through, ack.events_through)
        if removed:
            self._last_progress = time.monotonic()
        self.acked += removed

    def _sign_tail(self) -> None:
        try:
            self._outbox.sign_tail(self._checkpoint_idle_s)
        except Exception:  # a full disk or a damaged page: the sender must live on to send what is stored
            logger.exception("could not sign the audit log's head; will try again")

    def _on_turn(self) -> None:
        self._sign_tail()
        if self._link.connected:
            self._send()
            self._run_senders()

    def _send(self) -> None:
        first = self._outbox.first_pending()
        checkpoints = self._outbox.pending_checkpoints()
        now = time.monotonic()
        if first is None and not checkpoints:
            self._cursor, self._checkpoint_cursor, self._lowest = None, 0, None
            self._last_progress = now
            return
        if first is not None and self._lowest is not None and first < self._lowest:
            # Rows queued again below what was sent (central's resend request after a restore): from there.
            logger.info("events from seq %d queued again; sending from there", first)
            self._cursor, self._checkpoint_cursor = None, 0
        self._lowest = first
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
        if not self._link.publish(topic, payload):
            logger.warning("publish to %s failed (not connected); will retry", topic)
            return False
        return True
