"""A real Mosquitto broker for tests: own config, own port, own directory.

Started as root, mosquitto drops to the ``mosquitto`` user, so its directory
is handed to that user when it exists.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 10 s; close the stderr pipe the fixtures read start-up errors from."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process and process.stderr:
        process.stderr.close()


@dataclass
class Broker:
    host: str
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    allow_anonymous: bool = True

    @property
    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text() if path.exists() else ""

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}\n"
            "persistence false\n"
            f"log_dest file {self.workdir / 'mosquitto.log'}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "max_packet_size 1048576\n"
        )
        try:
            entry = pwd.getpwnam("mosquitto")
            if os.getuid() == 0:
                os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
        except KeyError:
            pass
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        wait_listening(self.process, self.host, [self.port], lambda: self.log)

    def stop(self) -> None:
        stop_process(self.process)
