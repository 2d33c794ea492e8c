"""Send queued audit events to central over MQTT, QoS 1, as the network allows.

This is the only module in the appliance that imports paho. A dedicated
sender thread drains the outbox whenever the broker is connected; a row
leaves the outbox only when the broker's PUBACK carries a success reason
code (with MQTT v5 a refused publish still "completes", so the code is
checked explicitly).
"""

from __future__ import annotations

import logging
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.settings import MqttSettings
from appliance.storage.outbox import Outbox
from core.topics import audit_topic

logger = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
RETRY_INTERVAL_S = 2.0


class AuditPublisher:
    def __init__(self, settings: MqttSettings, device_id: str, outbox: Outbox) -> None:
        self._settings = settings
        self._topic = audit_topic(device_id)
        self._outbox = outbox
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"appliance-{device_id}",
                                   protocol=mqtt.MQTTv5)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._connected = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}  # paho message id -> outbox seq
        self._early: dict[int, object] = {}  # PUBACKs that beat the sender recording the message id
        self._thread = threading.Thread(target=self._run, name="audit-sender", daemon=True)
        outbox.on_append(self._wake.set)
        self.sent = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        # connect_async: the desk keeps working while central or the network is away.
        self._client.connect_async(self._settings.host, self._settings.port,
                                   keepalive=self._settings.keepalive_s, clean_start=False, properties=props)
        self._client.loop_start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                    properties: object) -> None:
        if getattr(reason_code, "is_failure", True):
            logger.warning("broker refused connection: %s", reason_code)
            return
        logger.info("connected to broker %s:%s", self._settings.host, self._settings.port)
        self._connected.set()
        self._wake.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                       properties: object) -> None:
        logger.info("disconnected from broker: %s", reason_code)
        self._connected.clear()
        with self._lock:
            self._in_flight.clear()  # resent after reconnect; central discards duplicates
            self._early.clear()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason_code: object,
                    properties: object) -> None:
        # paho calls this holding its own message lock, so self._lock is never held around publish().
        with self._lock:
            seq = self._in_flight.pop(mid, None)
            if seq is None:
                self._early[mid] = reason_code
                return
        self._settle(seq, reason_code)

    def _settle(self, seq: int, reason_code: object) -> None:
        if getattr(reason_code, "is_failure", False):
            logger.error("broker refused audit event %s: %s; it stays queued", seq, reason_code)
            return
        self._outbox.acknowledge(seq)
        self.sent += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(RETRY_INTERVAL_S)
            self._wake.clear()
            if not self._connected.is_set():
                continue
            with self._lock:
                busy = frozenset(self._in_flight.values())
            for item in self._outbox.pending(limit=100, exclude=busy):
                info = self._client.publish(self._topic, item.payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    logger.warning("publish of event %s failed (%s); will retry", item.seq, info.rc)
                    break
                with self._lock:
                    early = self._early.pop(info.mid, None)
                    if early is None:
                        self._in_flight[info.mid] = item.seq
                if early is not None:
                    self._settle(item.seq, early)
