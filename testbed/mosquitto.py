"""A real Mosquitto broker for tests and benchmarks: own config, own port, own directory.

Started as root, mosquitto drops to the ``mosquitto`` user, so its directory
is handed to that user when it exists.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from testbed.ports import free_port
from testbed.processes import stop_process

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def wait_listening(process: subprocess.Popen[bytes], host: str, ports: list[int], log: Callable[[], str],
                   timeout: float = 10) -> None:
    """Return once mosquitto accepts connections on every port; raise with its log if it dies or stalls."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            if process.poll() is not None:
                err = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"mosquitto exited at start: {err}\n{log()}")
            try:
                with socket.create_connection((host, port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on {port}: {log()}") from None
                time.sleep(0.05)


def _log(workdir: Path) -> str:
    path = workdir / "mosquitto.log"
    return path.read_text() if path.exists() else ""


def _launch(workdir: Path, config: str, *, stderr: int) -> subprocess.Popen[bytes]:
    """Write ``config`` into ``workdir`` and start mosquitto on it. Run as root, the broker drops to the
    ``mosquitto`` user, so the folder (its log and persistence) is handed to that user when it exists."""
    conf = workdir / "mosquitto.conf"
    conf.write_text(config)
    if os.getuid() == 0:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam("mosquitto")
            os.chown(workdir, entry.pw_uid, entry.pw_gid)
    return subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=stderr)


@dataclass
class Broker:
    host: str
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    allow_anonymous: bool = True

    @property
    def log(self) -> str:
        return _log(self.workdir)

    def start(self) -> None:
        self.process = _launch(self.workdir, (
            f"listener {self.port} {self.host}\n"
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}\n"
            "persistence false\n"
            f"log_dest file {self.workdir / 'mosquitto.log'}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "max_packet_size 1048576\n"
        ), stderr=subprocess.PIPE)
        wait_listening(self.process, self.host, [self.port], lambda: self.log)

    def stop(self) -> None:
        stop_process(self.process)


@dataclass
class PersistentBroker:
    """Mosquitto with persistence on and autosave every second, so kill -9 loses at most ~1 s of state."""

    workdir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    autosave_s: int = 1
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        return _log(self.workdir)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = _launch(self.workdir, (
            f"listener {self.port} {self.host}\nallow_anonymous true\n"
            f"persistence true\npersistence_location {self.workdir}/\nautosave_interval {self.autosave_s}\n"
            "max_queued_messages 0\nmax_inflight_messages 0\n"
            f"log_dest file {self.workdir / 'mosquitto.log'}\nlog_type error\nlog_type warning\n"
        ), stderr=subprocess.DEVNULL)
        wait_listening(self.process, self.host, [self.port], lambda: self.log)

    def kill(self) -> None:
        """kill -9: no chance to save."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        stop_process(self.process)
