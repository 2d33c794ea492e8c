"""Audit events from the broker into the audit store: central's only paho importer.

Central holds a persistent MQTT v5 session under a fixed client id, so QoS 1
events published while central is down wait at the broker and arrive when it
comes back. Each message is acknowledged only after it is stored (or its
rejection is recorded): if the database write fails, the broker still holds the
message and redelivers it on the next session instead of it being lost.

Every message is distrusted: the topic names the device the broker let publish
it, and an event claiming a different device is refused, so one appliance can
never write another's audit trail. A malformed message is recorded as a
rejection and never stops the loop.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from datetime import UTC, datetime
from typing import Any

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from central.audit.store import AuditStore
from central.settings import MqttSettings
from core.errors import WireFormatError
from core.events import AuditEvent
from core.topics import AUDIT_SUBSCRIPTION, device_from_audit_topic

logger = logging.getLogger(__name__)

_QOS = 1


class AuditIngest:
    """Subscribes to every device's audit topic and stores what arrives."""

    def __init__(self, settings: MqttSettings, store: AuditStore) -> None:
        self._settings = settings
        self._store = store
        self._connected = threading.Event()
        self._received = 0
        self._rejected = 0
        self._duplicates = 0
        self._client = Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def received(self) -> int:
        """Valid events received, counting redelivered duplicates."""
        return self._received

    @property
    def rejected(self) -> int:
        """Messages refused as malformed, oversized or from the wrong device."""
        return self._rejected

    @property
    def duplicates(self) -> int:
        """Valid events that were already stored (at-least-once redelivery)."""
        return self._duplicates

    def start(self) -> None:
        """Connect in the background; paho keeps reconnecting until ``stop``."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._settings.session_expiry_s
        self._client.connect_async(
            self._settings.host, self._settings.port, keepalive=30, clean_start=False, properties=props
        )
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the network thread; the broker keeps the session."""
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def wait_connected(self, timeout: float) -> bool:
        """True once the broker has accepted the connection and granted the subscription."""
        return self._connected.wait(timeout)

    def _on_connect(
        self,
        client: Client,
        userdata: Any,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            # A refused connection is not a connection (unlike Frigate's _on_connect).
            logger.error("broker %s:%s refused central's connection: %s",
                         self._settings.host, self._settings.port, reason_code)
            return
        logger.info("connected to broker %s:%s (session present: %s)",
                    self._settings.host, self._settings.port, flags.session_present)
        # Subscribing again on a resumed session is harmless and covers a session the broker lost.
        result, _mid = client.subscribe(AUDIT_SUBSCRIPTION, qos=_QOS)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            logger.error("could not send subscription for %s: %s", AUDIT_SUBSCRIPTION, result)

    def _on_subscribe(
        self,
        client: Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        # Connected means "ready to receive": only after the broker granted the subscription.
        code = reason_codes[0]
        if code.is_failure:
            logger.error("broker refused subscription to %s: %s", AUDIT_SUBSCRIPTION, code)
            return
        if code.value < _QOS:
            logger.warning("subscription to %s granted only QoS %s", AUDIT_SUBSCRIPTION, code.value)
        self._connected.set()

    def _on_disconnect(
        self,
        client: Client,
        userdata: Any,
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        if reason_code.is_failure:
            logger.warning("disconnected from broker: %s; reconnecting", reason_code)

    def _on_message(self, client: Client, userdata: Any, msg: MQTTMessage) -> None:
        try:
            self._handle(msg.topic, msg.payload)
        except sqlite3.Error:
            # Not acknowledged: the broker keeps the message and redelivers it next session.
            logger.exception("could not store message from %s; left unacknowledged", msg.topic)
            return
        except Exception:
            # A bug must not stop the ingest of everyone else's audit trail.
            logger.exception("unexpected failure handling message from %s; left unacknowledged", msg.topic)
            return
        if msg.qos > 0:
            client.ack(msg.mid, msg.qos)

    def _handle(self, topic: str, payload: bytes) -> None:
        now = datetime.now(UTC)
        try:
            device = device_from_audit_topic(topic)
            event = AuditEvent.from_bytes(payload)
            if event.device_id != device:
                raise WireFormatError(
                    f"Event claims device {event.device_id!r} but was published by {device!r}."
                )
        except WireFormatError as e:
            self._rejected += 1
            logger.warning("rejected message on %s (%s bytes): %s", topic, len(payload), e)
            self._store.record_rejection(topic, str(e), len(payload), received_at=now)
            return
        self._received += 1
        if self._store.insert(event, received_at=now):
            logger.debug("stored event %s from %s", event.event_id, device)
        else:
            self._duplicates += 1
            logger.info("event %s from %s already stored; ignoring the repeat", event.event_id, device)
