"""Helpers for the provisioning tests: enrol a device through the library, start a TLS Mosquitto, probe it."""

from __future__ import annotations

import queue
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devicekeys.tls import client_context
from provisioning import broker, device, issue, tokens
from provisioning.ca import IssuingCa
from provisioning.ledger import Ledger
from testbed.mosquitto import MOSQUITTO, wait_listening
from testbed.ports import free_port
from testbed.processes import stop_process


def enrol(ca_dir: Path, data_dir: Path, device_id: str, tpm=None) -> device.DevicePki:
    """The whole enrolment, step by step as the commands do it."""
    ca = IssuingCa.load(ca_dir)
    with Ledger(ca.layout.ledger) as ledger:
        token = tokens.new_token(ledger, device_id)
        pki, _mode = device.keygen(data_dir, device_id, tpm)
        issued = issue.issue_device_certificate(ca, ledger, pki.csr.read_bytes(), token)
    bundle = issue.write_bundle(data_dir.parent / f"bundle-{device_id}", ca, issued, None)
    return device.install_bundle(data_dir, device_id, bundle)


@dataclass
class TlsBroker:
    """Mosquitto running the configuration ``broker-config`` generates, on two free ports."""

    ca_dir: Path
    workdir: Path
    devices: broker.Listener = field(default_factory=lambda: broker.Listener("127.0.0.1", free_port()))
    central: broker.Listener = field(default_factory=lambda: broker.Listener("127.0.0.1", free_port()))
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        path = self.workdir / "log" / "mosquitto.log"
        return path.read_text() if path.exists() else ""

    def start(self) -> None:
        conf = broker.write_broker_dir(self.ca_dir, self.workdir, self.devices, self.central, persistence=False)
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        wait_listening(self.process, "127.0.0.1", [self.devices.port, self.central.port], lambda: self.log)

    def stop(self) -> None:
        stop_process(self.process)

class Probe:
    """A raw MQTT v5 client over TLS that records what the broker tells it."""

    def __init__(self, port: int, context: ssl.SSLContext, client_id: str) -> None:
        self.port = port
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.tls_set_context(context)
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connect_code: object = None
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.pubacks: dict[int, int] = {}
        self._acked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.disconnected.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.client.on_publish = self._on_publish

    @classmethod
    def for_files(cls, port: int, ca: Path, cert: Path, key: Path, client_id: str) -> Probe:
        return cls(port, client_context(ca, cert, key), client_id)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connect_code = reason_code
        if not reason_code.is_failure:
            self.connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._acked:
            self.pubacks[mid] = reason_code.value
            self._acked.notify_all()

    def connect(self, timeout: float = 5.0) -> bool:
        """True when a CONNACK accepting us arrives; a TLS refusal may surface as an exception or silence."""
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=10)
        except (ssl.SSLError, OSError):
            return False
        self.client.loop_start()
        return self.connected.wait(timeout)

    def publish(self, topic: str, payload: bytes, timeout: float = 5.0) -> int:
        """The PUBACK reason code for a QoS 1 publish (0 success, 135 not authorized)."""
        info = self.client.publish(topic, payload, qos=1)
        with self._acked:
            assert self._acked.wait_for(lambda: info.mid in self.pubacks, timeout), "no PUBACK"
            return self.pubacks[info.mid]

    def subscribe(self, *topics: str) -> None:
        for topic in topics:
            self.client.subscribe(topic, qos=1)
        time.sleep(0.3)  # SUBACKs; a refused read shows only as nothing delivered

    def received(self, wait: float = 1.0) -> list[tuple[str, bytes]]:
        got = []
        deadline = time.monotonic() + wait
        while True:
            try:
                got.append(self.messages.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
