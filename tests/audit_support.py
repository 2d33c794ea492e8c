"""Helpers for audit tests: a pure chain writer standing in for a device, a persistent broker, a TCP proxy."""

from __future__ import annotations

import contextlib
import os
import pwd
import select
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.audit import chain
from core.audit.checkpoint import Checkpoint, public_key_hex
from core.events import AuditEvent
from tests.broker import MOSQUITTO, free_port, stop_process


@dataclass
class ChainWriter:
    """Builds a device's sealed events and signed checkpoints in memory (no appliance needed)."""

    device_id: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    seq: int = 0
    head: str = ""

    def __post_init__(self) -> None:
        self.head = chain.genesis_hash(self.device_id)

    @property
    def public_hex(self) -> str:
        return public_key_hex(self.key.public_key())

    def event(self, type: str = "search", actor: str = "pc1", outcome: str = "candidates_shown",
              **details: object) -> AuditEvent:
        self.seq += 1
        e = chain.seal(AuditEvent(device_id=self.device_id, seq=self.seq, type=type, actor=actor, outcome=outcome,
                                  details=dict(details)), self.head)
        assert e.hash is not None
        self.head = e.hash
        return e

    def checkpoint(self) -> Checkpoint:
        return Checkpoint.sign(self.key, self.device_id, self.seq, self.head)


def wait_for(condition, timeout: float = 15.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


@dataclass
class PersistentBroker:
    """Mosquitto with persistence on and autosave every second, so kill -9 loses at most ~1 s of state."""

    workdir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    autosave_s: int = 1
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\n"
            f"persistence true\npersistence_location {self.workdir}/\nautosave_interval {self.autosave_s}\n"
            "max_queued_messages 0\nmax_inflight_messages 0\n"
            f"log_dest file {self.workdir / 'mosquitto.log'}\nlog_type error\nlog_type warning\n")
        if os.getuid() == 0:
            try:
                entry = pwd.getpwnam("mosquitto")
                os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
            except KeyError:
                pass
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        if not wait_for(self._listening, 10):
            raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def _listening(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        """kill -9: no chance to save."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        stop_process(self.process)


class TcpProxy:
    """A TCP relay that can cut the network: while cut, bytes in flight are dropped and new
    connections hang, like a failed link; on restore, the dead connections are closed."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._conns: list[tuple[socket.socket, socket.socket | None]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            upstream = None
            if not self._cut.is_set():
                try:
                    upstream = socket.create_connection(self.upstream, timeout=2)
                except OSError:
                    client.close()
                    continue
            with self._lock:
                self._conns.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket | None) -> None:
        socks = [a] if b is None else [a, b]
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select(socks, [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if self._cut.is_set() or b is None:
                        continue  # dropped on the floor, as on a dead link
                    (b if s is a else a).sendall(data)
        except OSError:
            return
        finally:
            for s in socks:
                s.close()

    def cut(self) -> None:
        self._cut.set()

    def restore(self) -> None:
        """Bring the link back; connections that lived through the cut are broken, as after a real outage."""
        self._cut.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for a, b in conns:
            for s in (a, b):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._listener.close()
        self.restore()
