"""The shared MQTT connection against a real Mosquitto: mutual TLS, reconnection after a broker restart, stop."""

from __future__ import annotations

import collections
import itertools
import os
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from core.topics import HEALTH_SUBSCRIPTION, health_topic
from provisioning.ca import CaLayout
from testbed.mosquitto import Broker
from testbed.ports import free_port
from tests.appliance.test_sync import wait_until
from tests.provisioning.fleet import TlsBroker, enrol
from transport.mqtt import ConnectionHooks, Message, MqttConnection, publish_once
from transport.settings import MqttSettings

_ids = itertools.count(1)


class Peer:
    """An ``MqttConnection`` used the way the desk and central use theirs: everything through its hooks."""

    def __init__(self, settings: MqttSettings, client_id: str, subscriptions: Sequence[str] = ()) -> None:
        self.thread_name = f"test-{client_id}"
        self.received: queue.Queue[Message] = queue.Queue()
        self.connections = 0
        self.offline_turns = 0
        self._outgoing: collections.deque[tuple[str, bytes]] = collections.deque()
        self.link = MqttConnection(settings, client_id=client_id, owner="the test", thread_name=self.thread_name,
                                   session_expiry_s=60, subscriptions=subscriptions,
                                   hooks=ConnectionHooks(on_message=self.received.put, on_connected=self._connected,
                                                         on_turn=self._send, on_offline=self._offline))

    def send(self, topic: str, payload: bytes) -> None:
        """Queue a message; the connection's thread publishes it (only that thread may)."""
        self._outgoing.append((topic, payload))

    def next_message(self, timeout: float = 10.0) -> Message:
        return self.received.get(timeout=timeout)

    def _connected(self) -> None:
        self.connections += 1

    def _offline(self) -> None:
        self.offline_turns += 1

    def _send(self) -> None:
        while self._outgoing and self.link.publish(*self._outgoing[0]):
            self._outgoing.popleft()


def _sockets() -> set[str]:
    """This process's open sockets, as the kernel names them (``socket:[inode]``)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed while listing
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def test_a_desk_and_central_reach_each_other_over_mutual_tls(fleet_broker: TlsBroker, tmp_path: Path) -> None:
    pki = enrol(fleet_broker.ca_dir, tmp_path / "desk", "desk-link")
    layout = CaLayout(fleet_broker.ca_dir)
    central = Peer(MqttSettings(host="127.0.0.1", port=fleet_broker.central.port, ca_file=layout.bundle,
                                cert_file=layout.central_cert, key_file=layout.central_key),
                   "central-transport", [HEALTH_SUBSCRIPTION])
    desk = Peer(MqttSettings(host="127.0.0.1", port=fleet_broker.devices.port, ca_file=pki.ca, cert_file=pki.cert,
                             key_file=pki.key), "desk-link")
    central.link.start()
    desk.link.start()
    try:
        assert central.link.wait_subscribed(10), fleet_broker.log[-2000:]
        assert desk.link.wait_connected(10), fleet_broker.log[-2000:]
        desk.send(health_topic("desk-link"), b"heartbeat")
        message = central.next_message()
        assert (message.topic, message.payload, message.qos) == (health_topic("desk-link"), b"heartbeat", 1)
    finally:
        desk.link.stop()
        central.link.stop()


def test_after_the_broker_restarts_it_reconnects_and_subscribes_again(tmp_path: Path) -> None:
    """The broker keeps no sessions across the restart (persistence off), so the second message arrives only
    because the connection subscribed again by itself."""
    workdir = tmp_path / "broker"
    workdir.mkdir()
    workdir.chmod(0o777)
    broker = Broker(host="127.0.0.1", port=free_port(), workdir=workdir)
    broker.start()
    settings = MqttSettings(host=broker.host, port=broker.port)
    listener = Peer(settings, "restart-listener", ["test/restart"])
    talker = Peer(settings, "restart-talker")
    listener.link.start()
    talker.link.start()
    try:
        assert listener.link.wait_subscribed(10) and talker.link.wait_connected(10)
        talker.send("test/restart", b"before")
        assert listener.next_message().payload == b"before"

        broker.stop()
        assert wait_until(lambda: not listener.link.connected and not talker.link.connected)
        broker.start()

        assert listener.link.wait_subscribed(15) and talker.link.wait_connected(15)
        assert listener.connections == 2
        talker.send("test/restart", b"after")
        assert listener.next_message().payload == b"after"
    finally:
        talker.link.stop()
        listener.link.stop()
        broker.stop()


def test_stop_disconnects_cleanly_and_leaves_no_thread_or_socket(mosquitto: Broker) -> None:
    client_id = f"transport-stop-{next(_ids)}"
    before = _sockets()
    peer = Peer(MqttSettings(host=mosquitto.host, port=mosquitto.port), client_id, ["test/stop"])
    peer.link.start()
    assert peer.link.wait_subscribed(10)
    assert _sockets() - before  # the connection is open

    peer.link.stop()

    assert not peer.link.connected and not peer.link.subscribed
    assert peer.thread_name not in {t.name for t in threading.enumerate()}
    assert _sockets() - before == set()
    # The broker saw a DISCONNECT, not a dropped socket.
    assert wait_until(lambda: f"Client {client_id} disconnected." in mosquitto.log, timeout=5), mosquitto.log[-2000:]


def test_while_the_broker_is_away_it_backs_off_and_still_stops_at_once() -> None:
    peer = Peer(MqttSettings(host="127.0.0.1", port=free_port()), f"transport-away-{next(_ids)}")
    peer.link.start()
    try:
        # Attempts at 0 s, 0.5 s and 1.5 s (the wait doubles); the next comes 2 s after the third.
        assert wait_until(lambda: peer.offline_turns >= 3, timeout=5)
        time.sleep(1.0)
        assert peer.offline_turns == 3
        assert not peer.link.connected
    finally:
        started = time.monotonic()
        peer.link.stop()
    assert time.monotonic() - started < 1.0
    assert peer.thread_name not in {t.name for t in threading.enumerate()}


def test_a_one_off_publish_is_confirmed_by_the_broker(mosquitto: Broker) -> None:
    before = _sockets()
    listener = Peer(MqttSettings(host=mosquitto.host, port=mosquitto.port), f"transport-once-{next(_ids)}",
                    ["test/once"])
    listener.link.start()
    try:
        assert listener.link.wait_subscribed(10)
        assert publish_once(MqttSettings(host=mosquitto.host, port=mosquitto.port), "test/once", b"command",
                            client_id=f"transport-command-{next(_ids)}")
        assert listener.next_message().payload == b"command"
    finally:
        listener.link.stop()
    assert _sockets() - before == set()
    assert not publish_once(MqttSettings(host="127.0.0.1", port=free_port()), "test/once", b"command",
                            client_id="transport-nobody")
