"""One MQTT v5 connection to the broker, owned by one thread: the only module in the tree that imports paho.

The desk and central both hold their link to the broker through ``MqttConnection``. It connects
(retrying with doubling back-off while the broker is away), sets up mutual TLS from the settings,
keeps a persistent session (a fixed client id, ``clean_start=False`` and a session expiry, QoS 1),
subscribes again after every CONNACK (harmless on a resumed session, and it covers a session the
broker lost), and on stop disconnects cleanly. What each side does with the link is in its hooks
(``ConnectionHooks``), which run in the connection's thread between network turns.

One thread owns the paho client: it waits for the socket, reads, writes, and calls the hooks, so
there is no client state to lock. That is why ``publish``, ``ack`` and ``drop`` may only be called
from a hook.

The thread drives paho's external-loop interface (``loop_read``, ``loop_write`` and ``loop_misc``
around its own ``select``) rather than ``loop()`` or ``loop_start()``: both of those make a wake-up
socket pair that paho closes only when the client object is garbage collected (paho issue #627),
and nothing in its public interface closes it earlier. The external loop never makes one, and paho
closes the network socket itself once the DISCONNECT is written or the connection drops.
"""

from __future__ import annotations

import logging
import select
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devicekeys.tls import client_context
from transport.settings import MqttSettings

logger = logging.getLogger(__name__)

QOS = 1
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
POLL_S = 0.05  # longest wait for network events in one turn, unless the owner asks for less
_CLOSE_S = 0.2  # how long a stop waits for the DISCONNECT to be written
_DROP_S = 0.1


@dataclass(frozen=True)
class Message:
    """One message from the broker, as the owner sees it (paho's message object stays in here)."""

    topic: str
    payload: bytes
    qos: int
    mid: int


def _nothing() -> None:
    return None


def _drop_message(message: Message) -> None:
    return None


def _poll() -> float:
    return POLL_S


@dataclass(frozen=True)
class ConnectionHooks:
    """What the owner does, all in the connection's thread; each hook must return quickly.

    A hook may call ``publish``, ``ack`` and ``drop``; an exception from one ends the thread.
    """

    on_message: Callable[[Message], None] = _drop_message
    #: The broker accepted the connection; the subscriptions are sent, not yet granted.
    on_connected: Callable[[], None] = _nothing
    #: After each turn of the network loop while the socket is open.
    on_turn: Callable[[], None] = _nothing
    #: After each failed connection attempt, before the back-off wait.
    on_offline: Callable[[], None] = _nothing
    #: The connection was lost (not by ``stop`` or ``drop``); the socket is closed.
    on_lost: Callable[[], None] = _nothing
    #: ``stop`` was asked while the socket is open: the last chance to publish or ack before DISCONNECT.
    on_closing: Callable[[], None] = _nothing
    #: How long the next turn may wait for network events, in seconds.
    poll_s: Callable[[], float] = _poll


class MqttConnection:
    """A persistent MQTT v5 session with the broker, kept up by a thread of its own until ``stop``."""

    def __init__(self, settings: MqttSettings, *, client_id: str, owner: str, thread_name: str,
                 session_expiry_s: int, subscriptions: Sequence[str] = (), keepalive_s: int = 30,
                 receive_maximum: int | None = None, max_inflight: int = 20, manual_ack: bool = False,
                 hooks: ConnectionHooks | None = None) -> None:
        """``owner`` names the side in log lines ("central", "the desk"). ``receive_maximum`` caps how many
        unacknowledged messages the broker may send at once; ``manual_ack`` leaves each QoS 1 PUBACK to
        ``ack``, so a message the owner has not yet stored is redelivered after a crash."""
        self._settings = settings
        self._client_id = client_id
        self._owner = owner
        self._subscriptions = list(subscriptions)
        self._keepalive_s = keepalive_s
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        self._hooks = hooks or ConnectionHooks()
        self._client = _new_client(settings, client_id, manual_ack=manual_ack)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._pending_sub: set[int | None] = set()
        self._stop = threading.Event()
        self._open = False  # a socket to the broker exists (touched only by the thread)
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    @property
    def connected(self) -> bool:
        """The broker has accepted the connection (a CONNACK without failure) and it has not dropped since."""
        return self._connected.is_set()

    @property
    def subscribed(self) -> bool:
        """Connected, and the broker has granted every subscription."""
        return self._subscribed.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def start(self) -> None:
        """Connect in the background; the thread keeps reconnecting until ``stop``."""
        self._thread.start()

    def request_stop(self) -> None:
        """Stop after the current turn without waiting: callable from a hook, where ``stop`` would wait for
        its own thread."""
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Run ``on_closing``, disconnect (the broker keeps the session) and wait for the thread to end."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # --- for hooks only: they run in the connection's thread ---

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """Hand one QoS 1 message to paho; False if it could not take it (no connection): try again later."""
        return self._client.publish(topic, payload, qos=QOS, retain=retain).rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack(self, message: Message) -> None:
        """Send the PUBACK of a message taken with ``manual_ack`` (QoS 0 needs none)."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    def drop(self, pause_s: float) -> None:
        """End the connection now and connect again after ``pause_s``: unacknowledged messages come again in
        the resumed session. For an owner that could not take what arrived (its store is down)."""
        self._client.disconnect()
        _turn(self._client, _DROP_S)
        self._open = False
        self._stop.wait(pause_s)

    # --- paho callbacks: all run in the connection's thread, inside a network turn ---

    def _on_connect(self, client: Client, userdata: Any, flags: ConnectFlags, reason_code: ReasonCode,
                    properties: Properties | None) -> None:
        if reason_code.is_failure:
            # A refused connection is not a connection (unlike Frigate's _on_connect).
            logger.error("broker %s:%s refused %s's connection: %s",
                         self._settings.host, self._settings.port, self._owner, reason_code)
            return
        logger.info("connected to broker %s:%s as %s (session present: %s)",
                    self._settings.host, self._settings.port, self._client_id, flags.session_present)
        self._pending_sub.clear()
        for topic in self._subscriptions:
            result, mid = client.subscribe(topic, qos=QOS)
            if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
                logger.error("could not send subscription for %s: %s", topic, result)
            self._pending_sub.add(mid)
        self._hooks.on_connected()
        self._connected.set()
        if not self._subscriptions:
            self._subscribed.set()

    def _on_subscribe(self, client: Client, userdata: Any, mid: int, reason_codes: list[ReasonCode],
                      properties: Properties | None) -> None:
        code = reason_codes[0]
        if code.is_failure:
            logger.error("broker refused subscription: %s", code)
            return
        if code.value < QOS:
            logger.warning("subscription granted only QoS %s", code.value)
        self._pending_sub.discard(mid)
        if not self._pending_sub:
            self._subscribed.set()

    def _on_disconnect(self, client: Client, userdata: Any, flags: DisconnectFlags, reason_code: ReasonCode,
                       properties: Properties | None) -> None:
        self._mark_down()
        if reason_code.is_failure:
            logger.warning("disconnected from broker %s:%s: %s; reconnecting",
                           self._settings.host, self._settings.port, reason_code)
        else:
            logger.info("disconnected from broker %s:%s", self._settings.host, self._settings.port)

    def _on_message(self, client: Client, userdata: Any, msg: MQTTMessage) -> None:
        self._hooks.on_message(Message(msg.topic, msg.payload, msg.qos, msg.mid))

    # --- the connection's thread ---

    def _mark_down(self) -> None:
        self._connected.clear()
        self._subscribed.clear()

    def _connect(self) -> bool:
        """Open the socket and send CONNECT; False when the broker cannot be reached (back off and retry)."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry_s
        if self._receive_maximum is not None:
            props.ReceiveMaximum = self._receive_maximum
        try:
            self._client.connect(self._settings.host, self._settings.port, keepalive=self._keepalive_s,
                                 clean_start=False, properties=props)
        except OSError as e:
            logger.debug("cannot reach broker %s:%s: %s", self._settings.host, self._settings.port, e)
            return False
        return True

    def _run(self) -> None:
        try:
            self._serve()
            if self._open:
                self._hooks.on_closing()
                self._client.disconnect()
                _turn(self._client, _CLOSE_S)
        finally:
            self._mark_down()
            self._open = False
            _close_socket(self._client)

    def _serve(self) -> None:
        backoff = BACKOFF_FIRST_S
        while not self._stop.is_set():
            if not self._open:
                self._open = self._connect()
                if not self._open:
                    self._hooks.on_offline()
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    continue
                backoff = BACKOFF_FIRST_S
            if not _turn(self._client, self._hooks.poll_s()):
                self._mark_down()
                self._open = False
                self._hooks.on_lost()
                continue
            self._hooks.on_turn()


def _new_client(settings: MqttSettings, client_id: str, *, manual_ack: bool = False) -> Client:
    """A paho MQTT v5 client, with mutual TLS when the settings give the files (a sealed key is unsealed
    into memory only: ``devicekeys.tls``)."""
    client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5,
                    manual_ack=manual_ack)
    if settings.ca_file is not None and settings.cert_file is not None and settings.key_file is not None:
        client.tls_set_context(client_context(settings.ca_file, settings.cert_file, settings.key_file))
    return client


def _turn(client: Client, timeout: float) -> bool:
    """One turn of paho's external loop, as ``Client.loop`` does it but without its socket pair: wait up to
    ``timeout`` for the socket, read, write, keep alive. False once the connection is gone."""
    sock = client.socket()
    if sock is None:
        return False
    # Bytes TLS has already decrypted are invisible to select: read them without waiting.
    buffered = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
    try:
        readable, writable, _ = select.select([sock], [sock] if client.want_write() else [], [],
                                              0.0 if buffered else timeout)
    except (OSError, ValueError):  # the socket was closed under us
        return False
    if (readable or buffered) and (client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None):
        return False
    if writable and (client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None):
        return False
    return client.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS


def _close_socket(client: Client) -> None:
    """Close a socket paho still holds once the thread is done (a DISCONNECT that could not be written in
    time, a socket select refused), through its public accessor, rather than leave it to the collector."""
    sock = client.socket()
    if sock is not None:
        sock.close()


def publish_once(settings: MqttSettings, topic: str, payload: bytes, *, client_id: str,
                 timeout_s: float = 10.0) -> bool:
    """Connect, publish one QoS 1 message, and return True only if the broker's PUBACK says it was accepted.

    For one-off commands that must not depend on a long-lived connection in the same process. The reason
    code is checked because paho reports success for a publish the ACL refused (docs/fleet.md). The calling
    thread drives the exchange, so nothing of it outlives the call.
    """
    client = _new_client(settings, client_id)
    connected = threading.Event()
    outcome: dict[str, bool] = {}

    def on_connect(c: Client, u: Any, f: ConnectFlags, rc: ReasonCode, p: Properties | None) -> None:
        if not rc.is_failure:
            connected.set()

    def on_publish(c: Client, u: Any, mid: int, rc: ReasonCode, p: Properties | None) -> None:
        outcome["ok"] = not rc.is_failure

    client.on_connect = on_connect
    client.on_publish = on_publish
    try:
        client.connect(settings.host, settings.port, keepalive=30)
    except OSError as e:  # paho holds no socket when connect raises
        logger.error("cannot reach broker %s:%s to publish on %s: %s", settings.host, settings.port, topic, e)
        return False
    try:
        if not _turn_until(client, connected.is_set, timeout_s):
            logger.error("broker %s:%s did not accept the connection", settings.host, settings.port)
            return False
        client.publish(topic, payload, qos=QOS)
        return _turn_until(client, lambda: "ok" in outcome, timeout_s) and outcome["ok"]
    finally:
        client.disconnect()
        _turn(client, _CLOSE_S)
        _close_socket(client)


def _turn_until(client: Client, done: Callable[[], bool], timeout_s: float) -> bool:
    """Run network turns until ``done()``; False when ``timeout_s`` passes or the connection is gone first."""
    deadline = time.monotonic() + timeout_s
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not _turn(client, min(remaining, POLL_S)):
            return done()
    return True
