"""Helpers for audit tests: waiting for a condition, and a TCP proxy that can cut the link.

The chain writer standing in for a device and the persistent broker are in ``testbed``, which the
ingest benchmark uses as well.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

from testbed.ports import free_port


def wait_for(condition, timeout: float = 15.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def wait_until(condition, what: str, timeout_s: float = 60):  # type: ignore[no-untyped-def]
    """``condition()``'s first truthy value (the work runs in a background thread), or an AssertionError that
    names ``what`` was waited for."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


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
